"""examples/notebooks/quickstart.ipynb runs end to end (nbclient) and its renders are real pictures."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pv = pytest.importorskip("pyvista")

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebooks" / "quickstart.ipynb"


def _blank_render(window_size) -> np.ndarray:
    os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
    p = pv.Plotter(off_screen=True, window_size=window_size)
    img = p.screenshot(return_img=True)
    p.close()
    return img[..., :3].astype(np.float64)


def _load_rgb(path: Path) -> np.ndarray:
    import matplotlib.image
    img = matplotlib.image.imread(path)
    return img[..., :3].astype(np.float64) * (255.0 if img.dtype != np.uint8 else 1.0)


def _assert_rendered(rgb: np.ndarray, blank: np.ndarray, what: str) -> None:
    assert rgb.std() > 5, f"{what}: uniform image"
    differs = np.abs(rgb - blank).max(axis=-1) > 30
    assert differs.mean() > 0.03, f"{what}: only {differs.mean():.1%} of pixels differ from a blank render"


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    out = tmp_path_factory.mktemp("notebook")
    env = {"NEURALVOL_NB_VOLUME": "head_mr_small", "NEURALVOL_NB_TIME_BUDGET": "2", "NEURALVOL_NB_RATIOS": "20,50",
           "NEURALVOL_NB_OUT": str(out), "VTK_DEFAULT_OPENGL_WINDOW": "vtkEGLRenderWindow",
           # one torch/OpenMP thread in the kernel, like conftest.py: on a shared 2-core machine a
           # descheduled second thread stalls every parallel op
           "OMP_NUM_THREADS": os.environ.get("NEURALVOL_TEST_THREADS", "1")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)                  # the kernel inherits the environment
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return nb, out


def test_notebook_runs_and_prints_the_numbers(executed):
    nb, out = executed
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "PSNR dB" in text and "region (" in text and "'ssim'" in text
    assert sorted(p.name for p in out.glob("*.nvc")) == ["head_mr_small_20.nvc", "head_mr_small_50.nvc"]
    images = [o for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 4                 # volume render, error slice, region, report shown inline


def test_volume_render_side_by_side_is_real(executed):
    _, out = executed
    rgb = _load_rgb(out / "volume_render.png")
    h, w, _ = rgb.shape
    blank = _blank_render((w, h))
    assert blank.shape == rgb.shape
    _assert_rendered(rgb, blank, "volume_render.png")
    for i, name in enumerate(["original", "decoded 20:1", "decoded 50:1"]):   # each panel holds a volume
        cols = slice(i * w // 3, (i + 1) * w // 3)
        _assert_rendered(rgb[40:, cols], blank[40:, cols], f"volume_render.png panel {name}")


def test_region_render_and_plots_are_real(executed):
    _, out = executed
    rgb = _load_rgb(out / "region_hires.png")
    h, w, _ = rgb.shape
    _assert_rendered(rgb, _blank_render((w, h)), "region_hires.png")
    for name in ("error_slice.png", "report.png"):
        assert _load_rgb(out / name).std() > 20, name
