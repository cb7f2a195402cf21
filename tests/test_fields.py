"""Multi-component fields, several arrays and warm-started time series on real data."""
import os

import numpy as np
import pytest

import neuralvol as nv
from neuralvol.cli import main
from neuralvol.errors import FormatError, InputError
from neuralvol.metrics import psnr
from neuralvol.volume_io import read_volume, write_volume

from nvc_files import SHARED_DATA

FINGERS = sorted((SHARED_DATA / "vti").glob("viscous_fingers_run01_09*.vti"))
needs_fingers = pytest.mark.skipif(len(FINGERS) < 3, reason="viscous fingers series not in ../shared/data/vti")


@pytest.fixture(scope="module")
def gradient_field():
    """A real vector field: the gradient of a 16^3 crop of viscous fingers (shared data
    holds no measured vector field)."""
    if not FINGERS:
        pytest.skip("viscous fingers not found")
    s = read_volume(FINGERS[-1]).array[20:36, 20:36, 20:36].astype(np.float32)
    gz, gy, gx = np.gradient(s)
    return np.stack([gx, gy, gz], axis=-1).astype(np.float32)


@pytest.fixture(scope="module")
def vector_volume(gradient_field):
    return nv.compress(gradient_field, ratio=8, steps=120, record_timings=False, component_names=["gx", "gy", "gz"])


def test_vector_round_trip(vector_volume, gradient_field, tmp_path):
    path = tmp_path / "v.nvc"
    vector_volume.save(path)
    back = nv.open(path)
    assert nv.read_header(path)["version"] == 4
    assert back.config.n_outputs == 3 and back.n_components == 3
    assert back.component_names == ["gx", "gy", "gz"]
    decoded = back.decode()
    assert decoded.shape == gradient_field.shape and decoded.dtype == np.float32
    np.testing.assert_array_equal(decoded, vector_volume.decode())
    for c in range(3):
        assert psnr(gradient_field[..., c], decoded[..., c]) > 25.0
    mag = np.linalg.norm(gradient_field, axis=-1)
    assert psnr(mag, np.linalg.norm(decoded, axis=-1)) > 22.0
    # regions and other grids keep the component axis; sample returns (N, C)
    assert back.decode(region=(1, 3, 0, 15, 5, 5)).shape == (1, 16, 3, 3)
    np.testing.assert_allclose(back.decode(region=(1, 3, 0, 15, 5, 5)), decoded[5:6, :, 1:4], atol=1e-5)
    assert back.decode(dims=(8, 8, 8)).shape == (8, 8, 8, 3)
    pts = back.sample([[2.0, 3.0, 4.0], [99.0, 0.0, 0.0]])
    assert pts.shape == (2, 3) and np.isnan(pts[1]).all()
    np.testing.assert_allclose(pts[0], decoded[4, 3, 2], atol=1e-4)


def test_vector_decode_casts_like_the_whole_array(vector_volume):
    from test_codec import whole_array_decode
    region = (2, 9, 0, 15, 4, 6)
    for dtype in ("float32", "int16"):
        values, expected = whole_array_decode(vector_volume, region, dtype)
        out = vector_volume.decode(region=region, dtype=dtype)
        assert out.shape == (3, 16, 8, 3) and out.dtype == expected.dtype and np.array_equal(out, expected)
        assert np.array_equal(vector_volume.decode_values(region=region), values)


def test_scalar_files_unchanged_by_the_feature():
    """A scalar field is still written in the compact layout without the new keys: version 3,
    or 5 where the file kept a post filter."""
    a = np.load(SHARED_DATA / "volumes" / "head_mr_small.npy")[:16, :16, :16] if (
        SHARED_DATA / "volumes" / "head_mr_small.npy").exists() else pytest.skip("no data")
    vol = nv.compress(a, ratio=10, steps=5, record_timings=False)
    from neuralvol.bitstream import schema
    data = schema.to_bytes([vol])
    version = b"\x05\x00" if vol.post_filter is not None else b"\x03\x00"
    assert data[8:10] == version and vol.config.to_dict()["network"].get("outputs") is None


def test_component_constant_and_integer(tmp_path):
    rng = np.random.default_rng(0)
    a = np.zeros((8, 8, 8, 2), dtype=np.uint8)
    a[..., 0] = rng.integers(0, 200, (8, 8, 8))
    a[..., 1] = 7                                      # a constant component decodes exactly
    vol = nv.compress(a, ratio=2, steps=30, record_timings=False)
    vol.save(tmp_path / "c.nvc")
    d = nv.open(tmp_path / "c.nvc").decode()
    assert d.dtype == np.uint8 and d.shape == a.shape and (d[..., 1] == 7).all()


def test_bad_multicomponent_input():
    with pytest.raises(InputError, match="component axis last"):
        nv.compress(np.zeros((4, 4, 4, 100), np.float32), steps=1)
    with pytest.raises(InputError, match="2 component names for an array of 3"):
        nv.compress(np.zeros((4, 4, 4, 3), np.float32), steps=1, component_names=["a", "b"])
    with pytest.raises(InputError, match="cannot start from it"):
        nv.compress(np.random.rand(8, 8, 8, 3).astype(np.float32), steps=1, init="data/inits/simulation.nvinit")


def test_corrupt_components_header(vector_volume, tmp_path):
    from neuralvol.bitstream import container, schema
    header, arrays = container.decode(schema.to_bytes([vector_volume]))
    header["models"][0]["components"] = header["models"][0]["components"][:2]
    sections = [container.Section(k, v, coded=True) for k, v in arrays.items()]
    with pytest.raises(FormatError, match="2 component\\(s\\) but a network of 3 output"):
        schema.volumes_from_bytes(container.encode({k: v for k, v in header.items() if k != "sections"}, sections))


def test_vtk_vector_array_cli_round_trip(gradient_field, tmp_path):
    pytest.importorskip("vtk")
    src = tmp_path / "grad.vti"
    write_volume(src, gradient_field, spacing=(0.5, 0.5, 0.5), array_name="grad")
    assert main(["compress", str(src), str(tmp_path / "g.nvc"), "--ratio", "8", "--steps", "40", "-q"]) == 0
    assert main(["decompress", str(tmp_path / "g.nvc"), str(tmp_path / "back.vti"), "-q"]) == 0
    back = read_volume(tmp_path / "back.vti")
    assert back.array.shape == gradient_field.shape and back.array_name == "grad" and back.spacing == (0.5,) * 3


@needs_fingers
def test_series_cli_pvd_times_and_warm_start(tmp_path):
    pytest.importorskip("vtk")
    entries = []
    for i, f in enumerate(FINGERS[:3]):
        vf = read_volume(f)
        write_volume(tmp_path / f"s{i}.vti", vf.array[:16, :16, :16].copy(), array_name="ImageFile")
        entries.append(f'<DataSet timestep="{2.5 * i + 1}" file="s{i}.vti"/>')
    (tmp_path / "s.pvd").write_text('<VTKFile type="Collection"><Collection>' + "".join(entries)
                                     + "</Collection></VTKFile>")
    out = tmp_path / "series.nvc"
    assert main(["compress", str(tmp_path / "s.pvd"), str(out), "--ratio", "10", "--steps", "30", "-q",
                 "--reproducible"]) == 0
    vols = nv.open_all(out)
    assert [v.time for v in vols] == [1.0, 3.5, 6.0]
    # warm start: later steps start from the previous weights, so they end higher at equal steps
    assert vols[1].training.psnr > vols[0].training.psnr
    # a glob: times are the step index (the files carry no TimeValue)
    assert main(["compress", str(tmp_path / "s*.vti"), str(tmp_path / "g.nvc"), "--ratio", "10", "--steps", "5",
                 "-q"]) == 0
    assert [v.time for v in nv.open_all(tmp_path / "g.nvc")] == [0.0, 1.0, 2.0]


def test_series_api_errors_and_warm_start_checks():
    a = np.random.default_rng(1).random((8, 8, 8)).astype(np.float32)
    with pytest.raises(InputError, match="same shape"):
        nv.compress_series([a, a[:4]], steps=1)
    with pytest.raises(InputError, match="2 time values for 1 steps"):
        nv.compress_series([a], times=[0, 1], steps=1)
    first = nv.compress(a, steps=2, ratio=4)
    with pytest.raises(InputError, match="same grid"):
        nv.compress(a[:4], steps=1, ratio=4, warm_start=first)
    vols = nv.compress_series([a, a * 2], times=[0.5, 1.5], steps=3, ratio=4)
    assert [v.time for v in vols] == [0.5, 1.5] and vols[1].config == vols[0].config


def test_several_arrays_cli(tmp_path):
    pytest.importorskip("vtk")
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkIOXML import vtkXMLImageDataWriter
    hydrogen = read_volume("data/hydrogen.vti").array[:16, :16, :16].astype(np.float32)
    img = vtkImageData()
    img.SetDimensions(16, 16, 16)
    for name, values in (("a", hydrogen), ("b", hydrogen[::-1].copy())):
        arr = numpy_support.numpy_to_vtk(values.ravel(), deep=1)
        arr.SetName(name)
        img.GetPointData().AddArray(arr)
    w = vtkXMLImageDataWriter()
    w.SetFileName(str(tmp_path / "two.vti"))
    w.SetInputData(img)
    w.Write()
    out = tmp_path / "two.nvc"
    assert main(["compress", str(tmp_path / "two.vti"), str(out), "--array", "a", "--array", "b",
                 "--ratio", "10", "--steps", "30", "-q"]) == 0
    vols = nv.open_all(out)
    assert [v.array_name for v in vols] == ["a", "b"] and all(v.time is None for v in vols)
    assert psnr(hydrogen[::-1], vols[1].decode()) > 25.0
    assert main(["compress", str(tmp_path / "two.vti"), str(out), "--array", "a", "--array", "zz", "-q"]) == 2


def test_cli_reports_components_and_info(gradient_field, tmp_path, capsys):
    np.save(tmp_path / "g.npy", gradient_field)
    assert main(["compress", str(tmp_path / "g.npy"), str(tmp_path / "g.nvc"), "--ratio", "8", "--steps", "20"]) == 0
    out = capsys.readouterr().out
    assert "PSNR per component (dB): 0 " in out and "magnitude" in out
    assert main(["info", str(tmp_path / "g.nvc")]) == 0
    out = capsys.readouterr().out
    assert "format v4" in out and "3 components" in out
    assert main(["report", str(tmp_path / "g.nvc"), "-o", str(tmp_path / "r.png")]) == 2
    assert "report draws scalar fields" in capsys.readouterr().err
    assert main(["decompress", str(tmp_path / "g.nvc"), str(tmp_path / "g2.npy")]) == 0
    assert "16x16x16 x 3 components float32" in capsys.readouterr().out
    assert np.load(tmp_path / "g2.npy").shape == gradient_field.shape
    from neuralvol.fields import component_errors
    e = component_errors(gradient_field, nv.open(tmp_path / "g.nvc").decode())
    assert len(e["psnr"]) == 3 and e["magnitude_max_error"] >= e["magnitude_rms_error"] > 0


def test_pyvista_vector_round_trip(vector_volume, gradient_field, tmp_path):
    pv = pytest.importorskip("pyvista")
    from neuralvol.pyvista_support import compress_image, to_image
    image = to_image(vector_volume)
    assert image.point_data["values"].shape == (16 ** 3, 3)
    assert image.point_data.GetArray("values").GetComponentName(1) == "gy"
    np.testing.assert_array_equal(np.asarray(image.point_data["values"]).reshape(gradient_field.shape),
                                  vector_volume.decode())
    img = pv.ImageData(dimensions=(16, 16, 16))
    img.point_data["vel"] = gradient_field.reshape(-1, 3)
    vol = compress_image(img, ratio=8, steps=10)
    assert vol.n_components == 3 and vol.decode().shape == gradient_field.shape


def test_series_times_from_vtk_time_value(tmp_path):
    pytest.importorskip("vtk")
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonCore import vtkDoubleArray
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkIOXML import vtkXMLImageDataWriter
    base = read_volume("data/hydrogen.vti").array[:8, :8, :8].astype(np.float32)
    for i, t in enumerate((0.125, 7.5)):
        img = vtkImageData()
        img.SetDimensions(8, 8, 8)
        arr = numpy_support.numpy_to_vtk((base * (i + 1)).ravel(), deep=1)
        arr.SetName("rho")
        img.GetPointData().SetScalars(arr)
        tv = vtkDoubleArray()
        tv.SetName("TimeValue")
        tv.InsertNextValue(t)
        img.GetFieldData().AddArray(tv)
        w = vtkXMLImageDataWriter()
        w.SetFileName(str(tmp_path / f"t{i}.vti"))
        w.SetInputData(img)
        w.Write()
    assert main(["compress", str(tmp_path / "t0.vti"), str(tmp_path / "t1.vti"), str(tmp_path / "s.nvc"),
                 "--ratio", "4", "--steps", "5", "-q"]) == 0
    assert [v.time for v in nv.open_all(tmp_path / "s.nvc")] == [0.125, 7.5]


def test_vector_file_is_deterministic(gradient_field):
    from neuralvol.bitstream import schema
    small = gradient_field[:8, :8, :8]
    a, b = (schema.to_bytes([nv.compress(small, ratio=4, steps=10, record_timings=False, seed=3)]) for _ in range(2))
    assert a == b
