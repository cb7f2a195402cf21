"""Vector fields, several arrays and time series through the ParaView plugin (pvpython).

    pvpython tests/paraview/pv_fields.py PLUGIN OUTDIR

Prints one ``PASS name`` or ``FAIL name: why`` line per check and exits 0 when all pass.
"""
import os
import sys
import traceback

try:  # ParaView 5.11: PV_VENV + this import (plugin/shim/sitecustomize.py also does it)
    import paraview.web.venv  # noqa: F401
except ImportError:
    pass

import numpy as np
from paraview import servermanager as sm
from paraview.simple import GetAnimationScene, LoadPlugin, OpenDataFile, SaveData, TrivialProducer
from vtkmodules.util import numpy_support
from vtkmodules.vtkCommonDataModel import vtkImageData

import neuralvol as nv

plugin, outdir = sys.argv[1:3]
failures = 0


def check(fn):
    global failures
    try:
        fn()
        print(f"PASS {fn.__name__}", flush=True)
    except Exception as exc:  # report and go on with the other checks
        failures += 1
        traceback.print_exc()
        print(f"FAIL {fn.__name__}: {type(exc).__name__}: {exc}".replace("\n", " "), flush=True)
    return fn


LoadPlugin(plugin, ns=globals())
rng = np.random.default_rng(0)
base = np.cumsum(np.cumsum(rng.random((10, 10, 10)), 0), 2).astype(np.float32)
gz, gy, gx = np.gradient(base)
field = np.stack([gx, gy, gz], -1).astype(np.float32)


@check
def vector_file_is_a_three_component_array():
    path = os.path.join(outdir, "vec.nvc")
    nv.compress(field, ratio=4, steps=20, array_name="velocity", component_names=["u", "v", "w"]).save(path)
    r = OpenDataFile(path)
    r.UpdatePipeline()
    img = sm.Fetch(r)
    arr = img.GetPointData().GetArray("velocity")
    assert arr.GetNumberOfComponents() == 3, arr.GetNumberOfComponents()
    assert [arr.GetComponentName(c) for c in range(3)] == ["u", "v", "w"]
    assert np.array_equal(numpy_support.vtk_to_numpy(arr).reshape(field.shape), nv.open(path).decode(compute="auto"))
    info = r.PointData["velocity"]
    assert info.GetNumberOfComponents() == 3


@check
def writer_saves_several_arrays_and_vectors():
    img = vtkImageData()
    img.SetDimensions(10, 10, 10)
    for name, values in (("velocity", field.reshape(-1, 3)), ("density", base.ravel())):
        arr = numpy_support.numpy_to_vtk(np.ascontiguousarray(values), deep=1)
        arr.SetName(name)
        img.GetPointData().AddArray(arr)
    src = TrivialProducer()
    src.GetClientSideObject().SetOutput(img)
    out = os.path.join(outdir, "two.nvc")
    SaveData(out, proxy=src, Arrays=["velocity", "density"], TargetRatio=4, Steps=10, TimeBudget=0)
    vols = nv.open_all(out)
    assert [(v.array_name, v.n_components) for v in vols] == [("velocity", 3), ("density", 1)], vols
    r = OpenDataFile(out)
    assert sorted(r.PointArrayStatus if hasattr(r, "PointArrayStatus") else r.Fields) == ["density", "velocity"]
    r.Fields = ["density"]
    r.UpdatePipeline()
    pd = sm.Fetch(r).GetPointData()
    assert pd.GetNumberOfArrays() == 1 and pd.GetArrayName(0) == "density"


@check
def series_times_and_data_time_step():
    path = os.path.join(outdir, "series.nvc")
    times = [10.0, 12.5, 15.0]
    vols = nv.compress_series([base * (1 + 0.1 * i) for i in range(3)], times=times, ratio=4, steps=10)
    nv.save_models(path, vols)
    r = OpenDataFile(path)
    GetAnimationScene().UpdateAnimationUsingDataTimeSteps()
    assert list(r.TimestepValues) == times, list(r.TimestepValues)
    for t, vol in zip(times[::-1], vols[::-1]):
        r.UpdatePipeline(t)
        img = sm.Fetch(r)
        got = img.GetInformation().Get(img.DATA_TIME_STEP()) if img.GetInformation().Has(img.DATA_TIME_STEP()) \
            else r.GetDataInformation().DataInformation.GetTime()
        assert abs(got - t) < 1e-9, (got, t)
        nx, ny, nz = img.GetDimensions()
        values = numpy_support.vtk_to_numpy(img.GetPointData().GetScalars()).reshape(nz, ny, nx)
        assert np.array_equal(values, vol.decode(compute="auto"))


print(f"{failures} failed")
sys.exit(1 if failures else 0)
