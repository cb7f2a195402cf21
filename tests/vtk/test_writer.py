"""NeuralVolumeWriter under plain Python + the pip vtk wheel."""
import numpy as np
import pytest

pytest.importorskip("vtkmodules.vtkCommonDataModel")

import neuralvol as nv  # noqa: E402
from neuralvol.vtk_algorithms import NeuralVolumeReader, NeuralVolumeWriter  # noqa: E402
from nvc_files import series_nvc, small_array  # noqa: E402
from vtk_images import image_from_array, image_values  # noqa: E402


def write(image, path, **props):
    w = NeuralVolumeWriter()
    w.SetInputDataObject(image)
    w.SetFileName(str(path))
    w.SetSteps(props.pop("Steps", 20))
    w.SetDevice("cpu")
    for k, v in props.items():
        getattr(w, "Set" + k)(v)
    return w, w.Write()


def test_writer_reader_round_trip_keeps_grid_and_name(tmp_path):
    values = small_array()[:20, :24, :28]
    img = image_from_array(values, "density", spacing=(0.5, 0.75, 2.0), origin=(-3, 4, 7))
    # a decoy array: the writer must pick the one named
    img.GetPointData().AddArray(image_from_array(values * 0, "zeros").GetPointData().GetArray(0))
    path = tmp_path / "out.nvc"
    progress = []
    w = NeuralVolumeWriter()
    w.AddObserver("ProgressEvent", lambda obj, ev: progress.append(obj.GetProgress()))
    w.SetInputDataObject(img)
    w.SetFileName(str(path))
    w.SetArrayName("density")
    w.SetSteps(20)
    w.SetTargetRatio(3)  # a file over 8 KiB records its fitting steps
    assert w.Write() == 1
    assert progress and progress[-1] == 1.0
    vol = nv.open(path)
    assert vol.array_name == "density"
    assert vol.dims == (28, 24, 20)
    assert vol.spacing == pytest.approx((0.5, 0.75, 2.0))
    assert vol.origin == pytest.approx((-3, 4, 7))
    assert vol.dtype == values.dtype
    assert vol.training.steps == 20

    r = NeuralVolumeReader()
    r.SetFileName(str(path))
    r.Update()
    out = r.GetOutputDataObject(0)
    assert out.GetSpacing() == pytest.approx((0.5, 0.75, 2.0))
    assert out.GetOrigin() == pytest.approx((-3, 4, 7))
    assert out.GetPointData().GetScalars().GetName() == "density"
    np.testing.assert_array_equal(image_values(out), vol.decode())


def test_post_filter_property_reaches_the_codec(tmp_path):
    w = NeuralVolumeWriter()
    assert w.GetPostFilter() is True and w.codec_options()["post_filter"] is True
    img = image_from_array(small_array()[:16, :16, :16], "density")
    w, ok = write(img, tmp_path / "plain.nvc", TargetRatio=10, PostFilter=0)
    assert ok == 1 and w.codec_options()["post_filter"] is False
    assert nv.open(tmp_path / "plain.nvc").post_filter is None
    assert nv.read_header(tmp_path / "plain.nvc")["version"] == 3


def test_size_target_precedence():
    w = NeuralVolumeWriter()
    assert "ratio" not in w.codec_options() and "size" not in w.codec_options()
    w.SetTargetRatio(50)
    assert w.codec_options()["ratio"] == 50
    w.SetBitsPerVoxel(0.5)
    assert w.codec_options()["bpv"] == 0.5 and "ratio" not in w.codec_options()
    w.SetTargetSize(4096)
    opts = w.codec_options()
    assert opts["size"] == 4096 and "bpv" not in opts and "ratio" not in opts
    w.SetTargetPSNR(40)
    w.SetTimeBudget(3)
    w.SetSteps(7)
    opts = w.codec_options()
    assert (opts["psnr"], opts["time_budget"], opts["steps"]) == (40, 3, 7)


def test_extent_offset_moves_origin(tmp_path):
    values = np.random.default_rng(0).random((16, 18, 20)).astype(np.float32)
    img = image_from_array(values, "v", spacing=(2, 2, 2), origin=(1, 1, 1),
                           extent_start=(3, 0, 5))
    w, ok = write(img, tmp_path / "o.nvc", Steps=5, TargetRatio=2)
    assert ok == 1
    vol = nv.open(tmp_path / "o.nvc")
    assert vol.origin == pytest.approx((7, 1, 11))
    assert vol.dims == (20, 18, 16)


def test_bad_array_name_and_device_are_vtk_errors(tmp_path, capfd):
    img = image_from_array(small_array()[:8, :8, :8], "ct")
    w, ok = write(img, tmp_path / "x.nvc", ArrayName="nope")
    assert ok == 0 and "no point-data array 'nope'" in w.last_error
    # (vector arrays are compressed now: tests/vtk/test_fields_reader.py)
    w, ok = write(img, tmp_path / "x.nvc", Device="quantum")
    assert ok == 0 and "quantum" in w.last_error
    text = "".join(capfd.readouterr())
    assert "Traceback" not in text and "ERROR" in text
    assert not (tmp_path / "x.nvc").exists()


def test_abort_cancels_the_fit_and_writes_nothing(tmp_path, capfd):
    img = image_from_array(small_array()[:16, :16, :16], "ct")
    path = tmp_path / "cancel.nvc"
    w = NeuralVolumeWriter()
    w.SetInputDataObject(img)
    w.SetFileName(str(path))
    w.SetSteps(100000)  # would take minutes: must be cut short by the abort
    calls = []

    def on_progress(obj, ev):
        calls.append(obj.GetProgress())
        if len(calls) == 3:
            obj.SetAbortExecute(1)
    w.AddObserver("ProgressEvent", on_progress)
    assert w.Write() == 0
    assert not path.exists()
    assert "cancel" in w.last_error.lower()
    assert "Traceback" not in "".join(capfd.readouterr())


def test_write_all_time_steps_makes_a_series(tmp_path):
    src = NeuralVolumeReader()
    src.SetFileName(series_nvc())
    w = NeuralVolumeWriter()
    w.SetInputConnection(src.GetOutputPort())
    w.SetFileName(str(tmp_path / "series.nvc"))
    w.SetWriteAllTimeSteps(True)
    w.SetSteps(5)
    w.SetTargetRatio(4)
    assert w.Write() == 1
    vols = nv.open_all(tmp_path / "series.nvc")
    assert [v.time for v in vols] == [0.5, 1.5]
    assert len({round(float(v.value_range[1]), 3) for v in vols}) == 2  # two different fields


def test_precision_property_picks_the_storage(tmp_path):
    img = image_from_array(small_array()[:16, :16, :16], "density")
    for precision, version in (("quantised", 3), ("float16", 1)):
        path = tmp_path / f"{precision}.nvc"
        w, ok = write(img, path, TargetRatio=10, Precision=precision)
        assert ok == 1 and w.GetPrecision() == precision
        if nv.open(path).post_filter is not None:   # a quantised file with a post filter: version 5
            version = 5
        assert nv.read_header(path)["version"] == version
    w, ok = write(img, tmp_path / "bad.nvc", Precision="int3")
    assert ok == 0 and not (tmp_path / "bad.nvc").exists()
