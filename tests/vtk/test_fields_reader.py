"""The VTK reader and writer on multi-component fields, arrays x time steps, and the decode cache."""
import numpy as np
import pytest

import neuralvol as nv
from neuralvol.vtk_algorithms import NeuralVolumeReader, NeuralVolumeWriter
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonExecutionModel import vtkStreamingDemandDrivenPipeline as SDDP

from vtk_images import image_from_array


@pytest.fixture(scope="module")
def field():
    rng = np.random.default_rng(3)
    base = np.cumsum(np.cumsum(rng.random((12, 12, 12)), 0), 1).astype(np.float32)
    gz, gy, gx = np.gradient(base)
    return np.stack([gx, gy, gz], -1).astype(np.float32)


@pytest.fixture(scope="module")
def vector_file(field, tmp_path_factory):
    path = tmp_path_factory.mktemp("f") / "vec.nvc"
    nv.compress(field, ratio=4, steps=60, record_timings=False, array_name="velocity",
                component_names=["vx", "vy", "vz"]).save(path)
    return path


def test_reader_vector_layout(vector_file, field):
    r = NeuralVolumeReader()
    r.SetFileName(str(vector_file))
    r.Update()
    arr = r.GetOutputDataObject(0).GetPointData().GetArray("velocity")
    assert arr.GetNumberOfComponents() == 3 and arr.GetNumberOfTuples() == 12 ** 3
    assert [arr.GetComponentName(c) for c in range(3)] == ["vx", "vy", "vz"]
    np.testing.assert_allclose(numpy_support.vtk_to_numpy(arr).reshape(field.shape),
                               nv.open(vector_file).decode(), atol=0)


def test_writer_vector_array(field, tmp_path):
    img = image_from_array(field[..., 0], "velocity")
    vec = numpy_support.numpy_to_vtk(field.reshape(-1, 3), deep=1)
    vec.SetName("velocity")
    vec.SetComponentName(0, "u")
    img.GetPointData().AddArray(vec)  # replaces the scalar of the same name
    w = NeuralVolumeWriter()
    w.SetInputDataObject(img)
    w.SetFileName(str(tmp_path / "w.nvc"))
    w.SetArrayName("velocity")
    w.SetSteps(20)
    w.SetTargetRatio(4)
    assert w.Write() == 1, w.last_error
    vol = nv.open(tmp_path / "w.nvc")
    assert vol.n_components == 3 and vol.component_names == ["u", "", ""]


def test_writer_several_arrays(field, tmp_path):
    img = image_from_array(field[..., 0], "a")
    b = numpy_support.numpy_to_vtk(np.ascontiguousarray(field[..., 1]).ravel(), deep=1)
    b.SetName("b")
    img.GetPointData().AddArray(b)
    w = NeuralVolumeWriter()
    w.SetInputDataObject(img)
    w.SetFileName(str(tmp_path / "ab.nvc"))
    w.SetArrayNames(["a", "b"])
    w.SetSteps(10)
    w.SetTargetRatio(2)
    assert w.Write() == 1, w.last_error
    assert [v.array_name for v in nv.open_all(tmp_path / "ab.nvc")] == ["a", "b"]


def _series_file(field, tmp_path):
    vols = []
    for t in (0.25, 0.75):
        for c, name in enumerate(("p", "q")):
            vols.append(nv.compress(field[..., c] * (1 + t), ratio=4, steps=5, time=t, array_name=name))
    nv.save_models(tmp_path / "tq.nvc", vols)
    return tmp_path / "tq.nvc"


def test_reader_arrays_by_time_and_cache(field, tmp_path):
    path = _series_file(field, tmp_path)
    r = NeuralVolumeReader()
    r.SetFileName(str(path))
    r.UpdateInformation()
    info = r.GetOutputInformation(0)
    assert list(info.Get(SDDP.TIME_STEPS())) == [0.25, 0.75]
    sel = r.GetArraySelection()
    assert [sel.GetArrayName(i) for i in range(sel.GetNumberOfArrays())] == ["p", "q"]
    r.UpdateTimeStep(0.75)
    out = r.GetOutputDataObject(0)
    assert out.GetInformation().Get(out.DATA_TIME_STEP()) == 0.75
    assert {out.GetPointData().GetArrayName(i) for i in range(2)} == {"p", "q"}
    decodes = len(r.decode_log)
    # the same request again (re-execution after Modified, a second Update): no decode
    r.Modified()
    r.UpdateTimeStep(0.75)
    assert len(r.decode_log) == decodes
    # another step decodes; coming back to the first does not
    r.UpdateTimeStep(0.25)
    after = len(r.decode_log)
    assert after > decodes
    r.UpdateTimeStep(0.75)
    assert len(r.decode_log) == after and r.decode_cache.hits >= 4
    # deselecting an array drops it; another extent is a new key
    sel.DisableArray("q")
    r.UpdateTimeStep(0.75)
    assert r.GetOutputDataObject(0).GetPointData().GetNumberOfArrays() == 1
    r.SetRegionOfInterest(0, 3, 0, 3, 0, 3)
    r.UpdateTimeStep(0.75)
    assert len(r.decode_log) == after + 1


def test_probe_samples_all_components(vector_file):
    from neuralvol.vtk_algorithms import NeuralVolumeProbe
    from vtkmodules.vtkCommonCore import vtkPoints
    from vtkmodules.vtkCommonDataModel import vtkPolyData
    pts = vtkPoints()
    for p in ((1.0, 2.0, 3.0), (50.0, 0.0, 0.0)):
        pts.InsertNextPoint(*p)
    poly = vtkPolyData()
    poly.SetPoints(pts)
    probe = NeuralVolumeProbe()
    probe.SetInputDataObject(poly)
    probe.SetFileName(str(vector_file))
    probe.Update()
    arr = probe.GetOutputDataObject(0).GetPointData().GetArray("velocity")
    values = numpy_support.vtk_to_numpy(arr)
    assert values.shape == (2, 3) and np.isnan(values[1]).all()
    np.testing.assert_allclose(values[0], nv.open(vector_file).decode()[3, 2, 1], atol=1e-4)
    mask = numpy_support.vtk_to_numpy(probe.GetOutputDataObject(0).GetPointData().GetArray("vtkValidPointMask"))
    assert list(mask) == [1, 0]


def test_write_all_time_steps_warm_starts(tmp_path):
    from nvc_files import SHARED_DATA
    from neuralvol.volume_io import read_volume
    files = sorted((SHARED_DATA / "vti").glob("viscous_fingers_run01_09*.vti"))[:2]
    if len(files) < 2:
        pytest.skip("viscous fingers series not found")
    arrays = [read_volume(f).array[:16, :16, :16].copy() for f in files]
    nv.save_models(tmp_path / "in.nvc", [nv.compress(a, ratio=2, steps=40, time=t, array_name="f")
                                        for t, a in zip((3.0, 4.0), arrays)])
    src = NeuralVolumeReader()
    src.SetFileName(str(tmp_path / "in.nvc"))
    src.SetFloatOutput(True)
    w = NeuralVolumeWriter()
    w.SetInputConnection(src.GetOutputPort())
    w.SetFileName(str(tmp_path / "series.nvc"))
    w.SetWriteAllTimeSteps(True)
    w.SetSteps(30)
    w.SetTargetRatio(8)
    assert w.Write() == 1, w.last_error
    vols = nv.open_all(tmp_path / "series.nvc")
    assert [v.time for v in vols] == [3.0, 4.0] and vols[0].config == vols[1].config
    second = nv.open(tmp_path / "in.nvc", model=1).decode(dtype=np.float32)
    scratch = nv.compress(second, ratio=8, steps=30)
    assert vols[1].training.psnr > scratch.training.psnr + 1.0   # started from step 3.0's weights
