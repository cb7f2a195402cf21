"""NeuralVolumeReader under plain Python + the pip vtk wheel."""
import gc
import weakref

import numpy as np
import pytest

pytest.importorskip("vtkmodules.vtkCommonDataModel")

import neuralvol as nv  # noqa: E402
from neuralvol.vtk_algorithms import NeuralVolumeReader, reader as reader_module  # noqa: E402
from nvc_files import ORIGIN, SPACING, series_nvc, small_nvc  # noqa: E402
from vtk_images import image_values  # noqa: E402
from vtkmodules.vtkImagingCore import vtkExtractVOI  # noqa: E402
from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline as SDDP  # noqa: E402


def make_reader(path=None, **props):
    r = NeuralVolumeReader()
    r.SetFileName(path or small_nvc())
    for k, v in props.items():
        getattr(r, "Set" + k)(*v) if isinstance(v, tuple) else getattr(r, "Set" + k)(v)
    return r


def test_whole_extent_equals_core_decode():
    r = make_reader()
    progress = []
    r.AddObserver("ProgressEvent", lambda obj, ev: progress.append(obj.GetProgress()))
    r.Update()
    assert progress and progress[-1] == 1.0
    out = r.GetOutputDataObject(0)
    vol = nv.open(small_nvc())
    assert out.GetDimensions() == vol.dims
    assert out.GetSpacing() == pytest.approx(SPACING)
    assert out.GetOrigin() == pytest.approx(ORIGIN)
    assert out.GetPointData().GetScalars().GetName() == "ct"
    got = image_values(out)
    assert got.dtype == np.int16
    np.testing.assert_array_equal(got, vol.decode())
    assert r.GetNumberOfDecodedPoints() == int(np.prod(vol.dims))


def test_information_pass_publishes_streaming_keys():
    r = make_reader()
    r.UpdateInformation()
    info = r.GetOutputInformation(0)
    assert info.Get(SDDP.WHOLE_EXTENT()) == (0, 47, 0, 31, 0, 39)
    from vtkmodules.vtkCommonExecutionModel import vtkAlgorithm
    assert info.Get(vtkAlgorithm.CAN_PRODUCE_SUB_EXTENT()) == 1
    assert info.Get(vtkAlgorithm.CAN_HANDLE_PIECE_REQUEST()) == 1
    assert r.GetNumberOfDecodedPoints() == 0  # information alone decodes nothing


def test_extract_voi_decodes_only_the_sub_extent():
    voi = (5, 20, 3, 9, 10, 30)
    r = make_reader()
    e = vtkExtractVOI()
    e.SetInputConnection(r.GetOutputPort())
    e.SetVOI(*voi)
    e.Update()
    assert r.GetLastDecodedExtent() == voi
    n = (voi[1] - voi[0] + 1) * (voi[3] - voi[2] + 1) * (voi[5] - voi[4] + 1)
    assert r.GetNumberOfDecodedPoints() == n
    assert all(region[:4] == voi[:4] and voi[4] <= region[4] <= region[5] <= voi[5]
               for _, _, region in r.decode_log)
    expected = nv.open(small_nvc()).decode(region=voi)
    np.testing.assert_array_equal(image_values(e.GetOutput()), expected)


def test_resampled_whole_and_sub_extent():
    vol = nv.open(small_nvc())
    r = make_reader(ResolutionScale=2.0)
    r.Update()
    out = r.GetOutputDataObject(0)
    dims = (95, 63, 79)  # (n - 1) * 2 + 1
    assert out.GetDimensions() == dims
    assert out.GetSpacing() == pytest.approx(vol.grid_spacing(dims))
    assert out.GetOrigin() == pytest.approx(ORIGIN)
    np.testing.assert_array_equal(image_values(out), vol.decode(dims=dims))

    r2 = make_reader(OutputDimensions=(30, 20, 25))
    voi = (3, 17, 0, 19, 5, 9)
    e = vtkExtractVOI()
    e.SetInputConnection(r2.GetOutputPort())
    e.SetVOI(*voi)
    e.Update()
    assert r2.GetLastDecodedExtent() == voi
    np.testing.assert_array_equal(image_values(e.GetOutput()),
                                  vol.decode(dims=(30, 20, 25), region=voi))


def test_region_of_interest_and_float_output():
    vol = nv.open(small_nvc())
    roi = (10, 30, 5, 25, 0, 19)
    r = make_reader(RegionOfInterest=roi, FloatOutput=True)
    r.Update()
    out = r.GetOutputDataObject(0)
    assert out.GetExtent() == roi
    assert out.GetOrigin() == pytest.approx(ORIGIN)  # extent keeps points in place
    got = image_values(out)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, vol.decode(region=roi, dtype=np.float32))
    assert r.GetNumberOfDecodedPoints() == got.size


def test_compute_property_chooses_the_mlp_arithmetic_and_keys_the_cache():
    vol = nv.open(small_nvc())
    r = make_reader(FloatOutput=True)
    assert r.GetCompute() == "float32"  # the VTK layer decodes the values the encoder measured
    outputs = {}
    for compute in ("float32", "bfloat16", "auto", "float32"):
        decodes = len(r.decode_log)
        r.SetCompute(compute)
        r.Update()
        got = image_values(r.GetOutputDataObject(0)).copy()
        np.testing.assert_array_equal(got, vol.decode(dtype=np.float32, compute=compute))
        # the first visit of each arithmetic decodes, the second float32 comes from the cache
        assert (len(r.decode_log) > decodes) == (compute not in outputs), compute
        outputs[compute] = got
    if vol.mlp_dtype("bfloat16") != vol.mlp_dtype("float32"):
        assert not np.array_equal(outputs["bfloat16"], outputs["float32"])
    with pytest.raises(ValueError, match="Compute must be one of float32, auto, bfloat16; got 'fp16'"):
        r.SetCompute("fp16")
    assert r.GetCompute() == "float32"


def test_pieces_decode_only_their_piece_with_ghosts():
    vol = nv.open(small_nvc())
    full = vol.decode()
    seen = np.zeros(full.shape, dtype=int)
    for piece in range(2):
        r = make_reader()
        r.UpdatePiece(piece, 2, 1)
        out = r.GetOutputDataObject(0)
        ext = out.GetExtent()
        assert r.GetLastDecodedExtent() == ext
        assert r.GetNumberOfDecodedPoints() < full.size * 0.6
        vals = image_values(out)
        sl = (slice(ext[4], ext[5] + 1), slice(ext[2], ext[3] + 1), slice(ext[0], ext[1] + 1))
        np.testing.assert_array_equal(vals, full[sl])
        seen[sl] += 1
        assert out.GetPointData().GetArray("vtkGhostType") is not None
    assert seen.min() >= 1  # the two pieces cover the volume (overlap = ghost layers)


def test_series_as_time_steps():
    path = series_nvc()
    vols = nv.open_all(path)
    r = make_reader(path)
    r.UpdateInformation()
    info = r.GetOutputInformation(0)
    assert info.Get(SDDP.TIME_STEPS()) == (0.5, 1.5)
    assert r.GetTimestepValues() == [0.5, 1.5]
    for t, vol in ((0.5, vols[0]), (1.5, vols[1]), (1.0, vols[0])):
        r.UpdateTimeStep(t)
        out = r.GetOutputDataObject(0)
        np.testing.assert_array_equal(image_values(out), vol.decode())


def test_fields_as_arrays():
    path = series_nvc(as_arrays=True)
    vols = nv.open_all(path)
    r = make_reader(path)
    r.Update()
    out = r.GetOutputDataObject(0)
    for vol in vols:
        np.testing.assert_array_equal(image_values(out, vol.array_name), vol.decode())
    r.GetArraySelection().DisableArray("first")
    r.Update()
    out = r.GetOutputDataObject(0)
    assert out.GetPointData().GetArray("first") is None
    assert out.GetPointData().GetArray("second") is not None


def test_reader_is_freed_when_dropped():
    """The array selection's observer holds the reader weakly, so no reference cycle keeps
    it alive: ``del`` frees it with the garbage collector off (a lambda capturing ``self``
    kept it until ``gc.collect()`` on VTK 9.7)."""
    r = make_reader(series_nvc(as_arrays=True))
    r.Update()
    r.GetArraySelection().DisableArray("first")  # the observer still re-executes it
    r.Update()
    assert r.GetOutputDataObject(0).GetPointData().GetArray("first") is None
    ref = weakref.ref(r)
    gc.disable()
    try:
        del r
        assert ref() is None
    finally:
        gc.enable()


def test_decode_log_keeps_only_the_latest_calls(monkeypatch):
    monkeypatch.setattr(reader_module, "DECODE_LOG_LENGTH", 5)
    monkeypatch.setattr(reader_module, "DECODE_CHUNK_POINTS", 48 * 32)  # one z-slice a call
    r = make_reader()
    r.Update()
    assert r.GetNumberOfDecodedPoints() == 48 * 32 * 40  # 40 decode calls
    assert [region[4:] for _, _, region in r.decode_log] == [(z, z) for z in range(35, 40)]


@pytest.mark.parametrize("content", [b"", b"not a neural volume at all" * 10, "truncate"])
def test_bad_file_is_a_vtk_error_not_a_traceback(tmp_path, capfd, content):
    bad = tmp_path / "bad.nvc"
    if content == "truncate":
        data = open(small_nvc(), "rb").read()
        content = data[: len(data) // 2]
    bad.write_bytes(content)
    with pytest.raises(nv.FormatError) as err:
        nv.open(bad)
    r = make_reader(str(bad))
    r.Update()
    captured = capfd.readouterr()
    text = captured.out + captured.err
    assert "Traceback" not in text
    assert "ERROR" in text and str(err.value) in text
    assert r.last_error == str(err.value)


def test_missing_file_is_a_vtk_error(tmp_path, capfd):
    r = make_reader(str(tmp_path / "nope.nvc"))
    r.Update()
    text = "".join(capfd.readouterr())
    assert "Traceback" not in text and "cannot open" in text
