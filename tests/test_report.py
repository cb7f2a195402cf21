"""neuralvol report (Python and CLI), SSIM, and the benchmark's rate-distortion plot."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import pytest

import neuralvol as nv
from neuralvol.cli import main
from neuralvol.metrics import max_abs_error, psnr

pytest.importorskip("matplotlib")
from neuralvol.report import make_report, ssim  # noqa: E402

REPO = Path(__file__).resolve().parents[1]


def _png(path: Path) -> np.ndarray:
    import matplotlib.image
    return matplotlib.image.imread(path)


def _assert_picture(path: Path, min_size=(400, 600)) -> np.ndarray:
    img = _png(path)
    assert img.shape[0] >= min_size[0] and img.shape[1] >= min_size[1]
    rgb = img[..., :3]
    assert rgb.std() > 0.05, "picture is (nearly) uniform"
    return rgb


def test_ssim_properties(headsq_crop):
    a = headsq_crop.astype(np.float64)
    assert ssim(a, a) == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    noisy = a + rng.normal(0, 0.05 * np.ptp(a), a.shape)
    noisier = a + rng.normal(0, 0.3 * np.ptp(a), a.shape)
    assert 1.0 > ssim(a, noisy) > ssim(a, noisier) > 0.0
    flat = np.full((4, 5, 6), 7.0)
    assert ssim(flat, flat) == 1.0


def test_make_report_numbers_and_picture(tmp_path, crop_file, crop_volume, headsq_crop):
    out = tmp_path / "sub" / "report.png"
    numbers = make_report(crop_file, headsq_crop, out)
    decoded = crop_volume.decode()
    assert numbers["psnr"] == pytest.approx(psnr(headsq_crop, decoded))
    assert numbers["max_error"] == max_abs_error(headsq_crop, decoded)
    assert numbers["bytes"] == os.path.getsize(crop_file)
    assert numbers["ratio"] == pytest.approx(headsq_crop.nbytes / os.path.getsize(crop_file))
    assert numbers["bits_per_voxel"] == pytest.approx(8 * os.path.getsize(crop_file) / headsq_crop.size)
    assert numbers["ssim"] == pytest.approx(ssim(headsq_crop, decoded)) and 0 < numbers["ssim"] < 1
    _assert_picture(out)


def test_report_cli_with_original_file(tmp_path, crop_file, headsq_crop, capsys):
    original = tmp_path / "crop.npy"
    np.save(original, headsq_crop)
    out = tmp_path / "r.png"
    assert main(["report", str(crop_file), "--original", str(original), "-o", str(out), "--json"]) == 0
    numbers = json.loads(capsys.readouterr().out)
    assert numbers["output"] == str(out) and math.isfinite(numbers["psnr"]) and "ssim" in numbers
    _assert_picture(out)


def test_report_without_original_draws_decoded_and_curve(tmp_path, crop_file, capsys):
    out = tmp_path / "decoded_only.png"
    assert main(["report", str(crop_file), "-o", str(out)]) == 0
    assert "n/a (no --original)" in capsys.readouterr().out
    _assert_picture(out, min_size=(400, 300))


def test_report_errors_are_one_line_exit_2(tmp_path, crop_file, headsq, capsys):
    wrong = tmp_path / "wrong.npy"
    np.save(wrong, headsq)                                  # a different shape than the .nvc
    assert main(["report", str(crop_file), "--original", str(wrong), "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "shape" in err
    assert main(["report", str(tmp_path / "missing.nvc"), "-o", str(tmp_path / "x.png")]) == 2
    assert not (tmp_path / "x.png").exists()


def test_fitting_curve_is_kept_in_the_file(crop_file):
    curve = nv.open(crop_file).training.curve
    assert 2 <= len(curve) <= 12
    seconds, steps, estimates = zip(*curve)
    assert list(steps) == sorted(steps) and all(s is not None and s >= 0 for s in seconds)
    assert all(math.isfinite(p) for p in estimates)


def test_rd_plot(tmp_path):
    spec = importlib.util.spec_from_file_location("rd", REPO / "benchmarks" / "rd.py")
    rd = importlib.util.module_from_spec(spec)
    sys.modules["rd_under_test"] = rd
    spec.loader.exec_module(rd)
    rows = [{"volume": "v", "ratio": 50.0, "nv_psnr": 30.0, "sz3_psnr": 35.0, "zfp_psnr": None},
            {"volume": "v", "ratio": 100.0, "nv_psnr": 28.0, "sz3_psnr": 31.0, "zfp_psnr": None},
            {"volume": "v", "ratio": 400.0, "nv_psnr": 25.0, "sz3_psnr": 24.0, "zfp_psnr": 20.0}]
    path = rd.write_rd_plot("v", rows, tmp_path / "rd_v.png", {"dims_xyz": [4, 4, 4], "dtype": "uint8"}, 3)
    rgb = _assert_picture(path, min_size=(300, 400))
    # three codecs: the blue, orange and green default line colours all appear
    for colour in ((0.12, 0.47, 0.71), (1.0, 0.50, 0.05), (0.17, 0.63, 0.17)):
        assert (np.abs(rgb - colour).max(axis=-1) < 0.08).sum() > 20, colour
