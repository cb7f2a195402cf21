"""ParaView-layer checks, run by tests/test_paraview.py under the real ``pvpython``.

    pvpython tests/paraview/pv_checks.py PLUGIN SMALL_NVC VTI OUTDIR SERIES_NVC

Prints one ``PASS name`` or ``FAIL name: why`` line per check and exits 0 when all pass.
"""
import sys
import traceback

try:  # ParaView 5.11: PV_VENV + this import (plugin/shim/sitecustomize.py also does it)
    import paraview.web.venv  # noqa: F401
except ImportError:
    pass

import numpy as np
from paraview import servermanager as sm
from paraview.simple import (ExtractSubset, GetAnimationScene, LoadPlugin, OpenDataFile,
                             SaveData, Slice, XMLImageDataReader)
from vtkmodules.util.numpy_support import vtk_to_numpy

import neuralvol as nv

plugin, small, vti, outdir, series = sys.argv[1:6]
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


def image_values(img):
    nx, ny, nz = img.GetDimensions()
    return vtk_to_numpy(img.GetPointData().GetScalars()).reshape(nz, ny, nx)


LoadPlugin(plugin, ns=globals())
vol = nv.open(small)


@check
def load_plugin():
    for name in ("NeuralVolumeReader", "NeuralVolumeWriter", "NeuralVolumeProbe"):
        assert name in globals(), f"{name} not defined by LoadPlugin"


@check
def open_data_file():
    r = OpenDataFile(small)
    assert r is not None and r.GetXMLName() == "NeuralVolumeReader", r
    r.UpdatePipeline()
    img = sm.Fetch(r)
    assert img.GetDimensions() == vol.dims
    assert np.allclose(img.GetSpacing(), vol.spacing) and np.allclose(img.GetOrigin(), vol.origin)
    assert img.GetPointData().GetScalars().GetName() == vol.array_name
    assert np.array_equal(image_values(img), vol.decode(compute="auto"))


@check
def extract_subset_decodes_only_the_subset():
    r = OpenDataFile(small)
    voi = [4, 20, 2, 17, 6, 25]
    sub = ExtractSubset(Input=r, VOI=voi)
    sub.UpdatePipeline()
    algo = r.GetClientSideObject()
    assert tuple(algo.GetLastDecodedExtent()) == tuple(voi), algo.GetLastDecodedExtent()
    n = (voi[1] - voi[0] + 1) * (voi[3] - voi[2] + 1) * (voi[5] - voi[4] + 1)
    assert algo.GetNumberOfDecodedPoints() == n
    assert np.array_equal(image_values(sm.Fetch(sub)), vol.decode(region=voi, compute="auto"))


@check
def resolution_scale():
    r = NeuralVolumeReader(FileName=small, ResolutionScale=2.0)  # noqa: F821
    r.UpdatePipeline()
    img = sm.Fetch(r)
    dims = tuple((n - 1) * 2 + 1 for n in vol.dims)
    assert img.GetDimensions() == dims
    assert np.allclose(img.GetSpacing(), vol.grid_spacing(dims))
    assert np.array_equal(image_values(img), vol.decode(dims=dims, compute="auto"))


@check
def compute_property():
    r = OpenDataFile(small)
    assert r.Compute == "auto", r.Compute  # the plugin's default: a view wants the fast decode
    for compute in ("float32", "bfloat16", "auto"):
        r.Compute = compute
        r.UpdatePipeline()
        assert np.array_equal(image_values(sm.Fetch(r)), vol.decode(compute=compute)), compute


@check
def bad_file_is_an_error_message():
    bad = f"{outdir}/bad.nvc"
    with open(bad, "wb") as f:
        f.write(b"this is not a neural volume" * 4)
    r = NeuralVolumeReader(FileName=bad)  # noqa: F821
    r.UpdatePipeline()
    err = r.GetClientSideObject().last_error
    assert err, "no error recorded"
    try:
        nv.open(bad)
    except nv.FormatError as exc:
        assert str(exc) == err, (str(exc), err)


@check
def probe_on_a_slice():
    r = OpenDataFile(small)
    sl = Slice(Input=r)
    sl.SliceType = "Plane"
    b = vol.bounds
    sl.SliceType.Origin = [(b[0] + b[1]) / 2, (b[2] + b[3]) / 2, (b[4] + b[5]) / 2]
    sl.SliceType.Normal = [0.3, 0.2, 1.0]
    p = NeuralVolumeProbe(Input=sl, FileName=small)  # noqa: F821
    p.UpdatePipeline()
    out = sm.Fetch(p)
    assert out.GetNumberOfPoints() > 100, out.GetNumberOfPoints()
    pts = vtk_to_numpy(out.GetPoints().GetData()).astype(np.float64)
    got = vtk_to_numpy(out.GetPointData().GetArray(vol.array_name))
    expected = vol.sample(pts)
    assert np.allclose(got, expected, equal_nan=True, rtol=1e-12, atol=1e-9)
    mask = vtk_to_numpy(out.GetPointData().GetArray("vtkValidPointMask"))
    assert np.array_equal(mask, (~np.isnan(expected)).astype(mask.dtype))


@check
def save_data_from_vti():
    src = XMLImageDataReader(FileName=[vti])
    src.UpdatePipeline()
    info = sm.Fetch(src)
    name = info.GetPointData().GetArrayName(0)
    out = f"{outdir}/from_vti.nvc"
    SaveData(out, proxy=src, ArrayName=name, Steps=15, TimeBudget=0, TargetRatio=50,
             Device="cpu")
    back = nv.open(out)
    assert back.array_name == name
    assert back.dims == info.GetDimensions()
    assert np.allclose(back.spacing, info.GetSpacing())
    assert np.allclose(back.origin, info.GetOrigin())
    assert back.training.steps == 15
    r = OpenDataFile(out)  # and the plugin reads it back
    r.UpdatePipeline()
    assert np.array_equal(image_values(sm.Fetch(r)), back.decode(compute="auto"))


@check
def save_data_with_error_bound_and_roi():
    src = XMLImageDataReader(FileName=[vti])
    src.UpdatePipeline()
    info = sm.Fetch(src)
    name = info.GetPointData().GetArrayName(0)
    original = vtk_to_numpy(info.GetPointData().GetArray(name)).astype(np.float64)
    bound = 0.01 * float(original.max() - original.min())
    out = f"{outdir}/bounded.nvc"
    SaveData(out, proxy=src, ArrayName=name, Steps=10, TimeBudget=0, TargetRatio=50, Device="cpu",
             MaxError=bound, ROI=[0, 7, 0, 7, 0, 7], ROIWeight=5.0, PostFilter=0)
    back = nv.open(out)
    assert back.max_error == bound and back.post_filter is None   # the Post Filter property reached compress
    r = OpenDataFile(out)  # the reader decodes the corrected values
    r.UpdatePipeline()
    assert np.abs(image_values(sm.Fetch(r)).astype(np.float64).reshape(-1) - original).max() <= bound


@check
def series_as_time_steps():
    vols = nv.open_all(series)
    r = OpenDataFile(series)
    scene = GetAnimationScene()
    scene.UpdateAnimationUsingDataTimeSteps()
    assert list(r.TimestepValues) == [v.time for v in vols], list(r.TimestepValues)
    for vol in vols[::-1]:
        r.UpdatePipeline(vol.time)
        assert np.array_equal(image_values(sm.Fetch(r)), vol.decode(compute="auto"))


print(f"{failures} failed")
sys.exit(1 if failures else 0)
