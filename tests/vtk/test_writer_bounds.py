"""NeuralVolumeWriter's MaxError, ImportanceFileName, ROI and ROIWeight properties."""
import numpy as np
import pytest

pytest.importorskip("vtkmodules.vtkCommonDataModel")

import neuralvol as nv  # noqa: E402
from neuralvol.vtk_algorithms import NeuralVolumeWriter  # noqa: E402
from nvc_files import small_array  # noqa: E402
from vtk_images import image_from_array  # noqa: E402


def _writer(values, path, **props):
    w = NeuralVolumeWriter()
    w.SetInputDataObject(image_from_array(values, "density"))
    w.SetFileName(str(path))
    w.SetSteps(15)
    w.SetDevice("cpu")
    w.SetTargetRatio(10)
    for k, v in props.items():
        getattr(w, "Set" + k)(*v) if isinstance(v, tuple) else getattr(w, "Set" + k)(v)
    return w


def test_max_error_property_bounds_every_voxel(tmp_path):
    values = small_array()[:16, :16, :16]
    w = _writer(values, tmp_path / "b.nvc", MaxError=3.0)
    assert w.Write() == 1
    vol = nv.open(tmp_path / "b.nvc")
    assert vol.max_error == 3.0
    assert np.abs(vol.decode().astype(np.float64) - values).max() <= 3.0
    assert "max_error" not in _writer(values, tmp_path / "c.nvc").codec_options()  # default -1: off


def test_roi_and_importance_properties_reach_the_codec(tmp_path):
    values = small_array()[:16, :16, :16]
    w = _writer(values, tmp_path / "r.nvc", ROI=(0, 7, 0, 7, 0, 7), ROIWeight=5.0)
    assert w.codec_options()["roi"] == [[0, 7, 0, 7, 0, 7]] and w.codec_options()["roi_weight"] == 5.0
    assert w.Write() == 1
    np.save(tmp_path / "w.npy", np.ones((3, 3, 3)))
    bad = _writer(values, tmp_path / "bad.nvc", ImportanceFileName=str(tmp_path / "w.npy"))
    assert bad.Write() == 0 and "importance has shape" in bad.last_error
    assert not (tmp_path / "bad.nvc").exists()
