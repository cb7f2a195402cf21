"""Small `.nvc` files fitted once per run, shared by the VTK-layer tests (tests/vtk/) and the
ParaView tests (tests/test_paraview.py)."""
from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
_TMP = Path(tempfile.mkdtemp(prefix="nv-vtk-tests-"))

SPACING = (3.2, 3.2, 1.5)
ORIGIN = (10.0, -5.0, 2.5)


def small_array() -> np.ndarray:
    """A 48 x 32 x 40 (x, y, z) int16 crop of the CT head, [z, y, x]."""
    path = SHARED_DATA / "volumes" / "headsq_quarter.npy"
    if path.exists():
        return np.ascontiguousarray(np.load(path)[30:70, 16:48, 8:56])
    z, y, x = np.mgrid[0:40, 0:32, 0:48].astype(np.float32)
    return (1000 * np.sin(x / 7) * np.cos(y / 5) + 30 * z).astype(np.int16)


@functools.lru_cache(maxsize=None)
def small_nvc() -> str:
    """Path of a single-model file ("ct", int16, spacing/origin set)."""
    import neuralvol as nv
    vol = nv.compress(small_array(), spacing=SPACING, origin=ORIGIN, array_name="ct",
                      steps=30, seed=0, device="cpu")
    path = _TMP / "small.nvc"
    vol.save(path)
    return str(path)


@functools.lru_cache(maxsize=None)
def series_nvc(as_arrays: bool = False) -> str:
    """Two models: time steps 0.5 and 1.5 (or, with ``as_arrays``, two named fields)."""
    import neuralvol as nv
    a = small_array()[:16, :16, :20]
    b = (a.astype(np.float32) * -0.5 + 100).astype(np.float32)
    if as_arrays:
        vols = [nv.compress(a, array_name="first", steps=10, ratio=4, device="cpu"),
                nv.compress(b, array_name="second", steps=10, ratio=4, device="cpu")]
        path = _TMP / "fields.nvc"
    else:
        vols = [nv.compress(a, array_name="v", steps=10, time=0.5, ratio=4, device="cpu"),
                nv.compress(b, array_name="v", steps=10, time=1.5, ratio=4, device="cpu")]
        path = _TMP / "series.nvc"
    nv.save_models(path, vols)
    return str(path)
