"""pyvista integration: pv.read / pv.get_reader of .nvc through the reader registry, and the helpers."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import neuralvol as nv

pv = pytest.importorskip("pyvista")
pvs = pytest.importorskip("neuralvol.pyvista_support")


def test_import_neuralvol_does_not_import_pyvista_or_vtk():
    code = ("import sys, neuralvol, neuralvol.cli, neuralvol.report; "
            "bad = [m for m in ('pyvista', 'vtk', 'vtkmodules', 'matplotlib') if m in sys.modules]; "
            "print(','.join(bad))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == ""


def test_registered_through_the_entry_point():
    regs = {r.extension: r for r in pv.registered_readers()}
    assert ".nvc" in regs, "install neuralvol (pip install -e .) so its pyvista.readers entry point exists"
    assert regs[".nvc"].handler is pvs.NVCReader
    assert regs[".nvc"].reader_class


def test_register_by_hand_without_the_entry_point(crop_file):
    # A fresh Python in which pyvista finds no neuralvol entry point (as when neuralvol is
    # only on sys.path, not installed): register() makes pv.read and pv.get_reader work,
    # as a plain (not override) registration, and a second call warns nothing.
    code = (
        "import sys, warnings, importlib.metadata as md\n"
        "real = md.entry_points\n"
        "def without_nvc(**kw):\n"
        "    eps = real(**kw)\n"
        "    if kw.get('group') != 'pyvista.readers':\n"
        "        return eps\n"
        "    return md.EntryPoints(ep for ep in eps if ep.name != '.nvc')\n"
        "md.entry_points = without_nvc\n"
        "import numpy as np, pyvista as pv, neuralvol as nv, neuralvol.pyvista_support as pvs\n"
        "print('BEFORE', [r.extension for r in pv.registered_readers() if r.extension == '.nvc'])\n"
        "warnings.simplefilter('error')\n"
        "pvs.register(); pvs.register()\n"
        "reg = [r for r in pv.registered_readers() if r.extension == '.nvc']\n"
        "print('AFTER', len(reg), reg[0].handler is pvs.NVCReader, reg[0].reader_class, reg[0].override)\n"
        "image = pv.read(sys.argv[1])\n"
        "same = np.array_equal(image.point_data['density'].reshape(image.dimensions[::-1]), nv.open(sys.argv[1]).decode())\n"
        "print('READ', type(pv.get_reader(sys.argv[1])).__name__, image.dimensions, same)\n")
    proc = subprocess.run([sys.executable, "-c", code, str(crop_file)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["BEFORE []", "AFTER 1 True True False",
                                        "READ NVCReader (40, 36, 30) True"]


def test_pv_read_matches_decode(crop_file, crop_volume):
    image = pv.read(crop_file)
    assert isinstance(image, pv.ImageData)
    assert image.dimensions == crop_volume.dims == (40, 36, 30)
    assert image.spacing == pytest.approx((3.2, 3.2, 1.5))
    assert image.origin == pytest.approx((10.0, -5.0, 2.5))
    assert image.array_names == ["density"]
    assert image.point_data.active_scalars_name == "density"
    values = image.point_data["density"]
    assert values.dtype == np.int16
    np.testing.assert_array_equal(values.reshape(30, 36, 40), crop_volume.decode())
    assert image.bounds == pytest.approx(crop_volume.bounds)


def test_pv_read_options_resolution_and_region(crop_file, crop_volume):
    dims, region = (20, 18, 45), (2, 9, 0, 17, 10, 30)
    image = pv.read(crop_file, dims=dims, region=region, dtype="float32")
    assert image.dimensions == (8, 18, 21)
    expected = crop_volume.decode(dims=dims, region=region, dtype=np.float32)
    np.testing.assert_array_equal(image["density"].reshape(expected.shape), expected)
    spacing = crop_volume.grid_spacing(dims)
    assert image.spacing == pytest.approx(spacing)
    assert image.origin == pytest.approx((10.0 + 2 * spacing[0], -5.0, 2.5 + 10 * spacing[2]))
    # the region's points are where the full resampled grid has them
    full = pv.read(crop_file, dims=dims)
    assert full.dimensions == dims
    assert image.bounds[0] == pytest.approx(full.x[2]) and image.bounds[4] == pytest.approx(full.z[10 * 20 * 18])

    half = pv.read(crop_file, scale=0.5)  # (n - 1) * 0.5 + 1 nodes: node-aligned with the original grid
    assert half.dimensions == (21, 19, 16)
    np.testing.assert_array_equal(half["density"].reshape(16, 19, 21), crop_volume.decode(dims=(21, 19, 16)))


def test_get_reader_attributes(crop_file, crop_volume):
    reader = pv.get_reader(crop_file)
    assert isinstance(reader, pvs.NVCReader)
    assert reader.original_dims == (40, 36, 30) and reader.array_name == "density"
    assert reader.number_time_points == 1 and reader.time_values == [0.0]
    reader.region = (0, 3, 0, 3, 0, 3)
    image = reader.read()
    np.testing.assert_array_equal(image["density"].reshape(4, 4, 4), crop_volume.decode(region=(0, 3, 0, 3, 0, 3)))
    with pytest.raises(AttributeError):
        pv.read(crop_file, resolution=3)            # unknown options are not silently ignored
    with pytest.raises(nv.InputError, match="region"):
        pv.read(crop_file, region=(0, 99, 0, 3, 0, 3))
    with pytest.raises(nv.InputError, match="not both"):
        pv.read(crop_file, dims=(4, 4, 4), scale=2)


def test_multi_model_file_is_a_time_series(tmp_path, headsq_crop):
    a = nv.compress(headsq_crop, ratio=20, steps=5, time=0.5, array_name="density")
    b = nv.compress(headsq_crop[::-1].copy(), ratio=20, steps=5, time=1.5, array_name="density")
    path = tmp_path / "series.nvc"
    nv.save_models(path, [a, b])
    reader = pv.get_reader(path)
    assert reader.number_time_points == 2 and reader.time_values == [0.5, 1.5]
    reader.set_active_time_value(1.5)
    np.testing.assert_array_equal(reader.read()["density"].reshape(headsq_crop.shape), b.decode())
    np.testing.assert_array_equal(pv.read(path, model=0)["density"].reshape(headsq_crop.shape), a.decode())


def test_bad_file_gives_format_error(tmp_path):
    bad = tmp_path / "bad.nvc"
    bad.write_bytes(b"not an nvc file at all")
    with pytest.raises(nv.FormatError):
        pv.read(bad)


def test_compress_image_round_trip(tmp_path, headsq_crop):
    nz, ny, nx = headsq_crop.shape
    image = pv.ImageData(dimensions=(nx, ny, nz), spacing=(3.2, 3.2, 1.5), origin=(1.0, 2.0, 3.0))
    image.point_data["density"] = headsq_crop.ravel()
    image.point_data["other"] = np.zeros(headsq_crop.size, dtype=np.float32)
    vol = pvs.compress_image(image, scalars="density", ratio=20, steps=10, seed=1)
    assert vol.dims == (nx, ny, nz) and vol.spacing == (3.2, 3.2, 1.5) and vol.origin == (1.0, 2.0, 3.0)
    assert vol.array_name == "density" and vol.dtype == np.int16
    same = nv.compress(headsq_crop, spacing=(3.2, 3.2, 1.5), origin=(1, 2, 3), array_name="density",
                       ratio=20, steps=10, seed=1)
    np.testing.assert_array_equal(vol.decode(), same.decode())   # the right array, in the right order
    path = tmp_path / "img.nvc"
    vol.save(path)
    back = pvs.to_image(path)
    assert back.dimensions == image.dimensions and back.spacing == pytest.approx(image.spacing)
    assert back.origin == pytest.approx(image.origin)
    np.testing.assert_array_equal(back["density"], vol.decode().ravel())
    fine = pvs.to_image(vol, dims=(2 * nx, 2 * ny, 2 * nz), region=(0, 9, 0, 9, 0, 9))
    np.testing.assert_array_equal(fine["density"].reshape(10, 10, 10),
                                  vol.decode(dims=(2 * nx, 2 * ny, 2 * nz), region=(0, 9, 0, 9, 0, 9)))
    with pytest.raises(nv.InputError, match="scalars=NAME"):
        image.point_data.active_scalars_name = None
        pvs.compress_image(image, ratio=20, steps=1)
    with pytest.raises(nv.InputError, match="no point-data array 'nope'"):
        pvs.compress_image(image, scalars="nope", ratio=20, steps=1)


def test_compress_image_offset_extent_and_rotation(headsq_crop):
    nz, ny, nx = headsq_crop.shape
    image = pv.ImageData(dimensions=(nx, ny, nz), spacing=(2.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    image.offset = (5, 0, 0)                  # extent starts at i = 5: the first voxel sits at x = 10
    image.point_data["v"] = headsq_crop.ravel()
    vol = pvs.compress_image(image, ratio=20, steps=1)
    assert vol.origin == (10.0, 0.0, 0.0) and vol.array_name == "v"
    assert pvs.to_image(vol).bounds == pytest.approx(image.bounds)
    image.direction_matrix = [[0, -1, 0], [1, 0, 0], [0, 0, 1]]
    with pytest.raises(nv.InputError, match="direction_matrix"):
        pvs.compress_image(image, ratio=20, steps=1)


def test_venv_python_one_liner(crop_file):
    code = f"import pyvista as pv; m = pv.read({str(crop_file)!r}); print(type(m).__name__, m.dimensions)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "ImageData (40, 36, 30)"
