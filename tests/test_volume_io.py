"""Volume files through VTK's own readers: every format the CLI accepts, and its errors."""
import sys

import numpy as np
import pytest

import neuralvol as nv
from neuralvol.cli import main
from neuralvol.volume_io import read_volume, write_volume

from conftest import DATA

vtk_np = pytest.importorskip("vtkmodules.util.numpy_support")


def _image(array, spacing=(0.5, 0.75, 2.0), origin=(1.0, -2.0, 3.0), name="mr", components=1):
    from vtkmodules.vtkCommonDataModel import vtkImageData
    nz, ny, nx = array.shape[:3]
    image = vtkImageData()
    image.SetDimensions(nx, ny, nz)
    image.SetSpacing(*spacing)
    image.SetOrigin(*origin)
    flat = array.reshape(nx * ny * nz, components) if components > 1 else array.reshape(-1)
    vtk_array = vtk_np.numpy_to_vtk(np.ascontiguousarray(flat), deep=True)
    vtk_array.SetName(name)
    image.GetPointData().SetScalars(vtk_array)
    return image


@pytest.fixture(scope="module")
def mr():
    return np.load(DATA / "head_mr_small.npy")[5:25, 10:40, 8:40].copy()


@pytest.mark.parametrize("suffix, writer_name", [(".mha", "vtkMetaImageWriter"), (".mhd", "vtkMetaImageWriter"),
                                                  (".nii", "vtkNIFTIImageWriter"), (".nii.gz", "vtkNIFTIImageWriter"),
                                                  (".vti", "vtkXMLImageDataWriter")])
def test_vtk_formats_read_with_placement(mr, tmp_path, suffix, writer_name):
    from vtkmodules import vtkIOImage, vtkIOXML
    writer = (getattr(vtkIOImage, writer_name, None) or getattr(vtkIOXML, writer_name))()
    path = tmp_path / f"mr{suffix}"
    writer.SetFileName(str(path))
    writer.SetInputData(_image(mr))
    writer.Write()
    vf = read_volume(path)
    assert np.array_equal(vf.array, mr)
    assert vf.spacing == pytest.approx((0.5, 0.75, 2.0))
    if suffix != ".nii" and suffix != ".nii.gz":  # NIfTI keeps placement in its own qform/sform
        assert vf.origin == pytest.approx((1.0, -2.0, 3.0))


def test_nrrd_detached_header(mr, tmp_path):
    (tmp_path / "mr.raw").write_bytes(mr.tobytes())
    (tmp_path / "mr.nhdr").write_text(
        "NRRD0004\ntype: uint8\ndimension: 3\nsizes: 32 30 20\nspacings: 0.5 0.75 2\n"
        "encoding: raw\ndata file: mr.raw\n\n")
    vf = read_volume(tmp_path / "mr.nhdr")
    assert np.array_equal(vf.array, mr) and vf.spacing == pytest.approx((0.5, 0.75, 2.0))


def test_array_choice_and_multicomponent_reading(mr, tmp_path):
    from vtkmodules.vtkIOXML import vtkXMLImageDataWriter
    image = _image(np.repeat(mr[..., None], 3, axis=-1), name="rgb", components=3)
    extra = vtk_np.numpy_to_vtk(mr.reshape(-1).astype(np.float32), deep=True)
    extra.SetName("density")
    image.GetPointData().AddArray(extra)
    path = tmp_path / "two.vti"
    writer = vtkXMLImageDataWriter()
    writer.SetFileName(str(path))
    writer.SetInputData(image)
    writer.Write()
    rgb = read_volume(path)  # multi-component arrays are read as [z, y, x, C] (issue 15)
    assert rgb.array.shape == mr.shape + (3,) and np.array_equal(rgb.array[..., 2], mr)
    vf = read_volume(path, array_name="density")
    assert vf.array_name == "density" and vf.array.dtype == np.float32
    with pytest.raises(nv.InputError, match="no point-data array 'nope'; arrays: rgb, density"):
        read_volume(path, array_name="nope")


def test_written_vti_round_trips_exactly(mr, tmp_path):
    write_volume(tmp_path / "w.vti", mr, spacing=(2, 3, 4), origin=(5, 6, 7), array_name="x")
    vf = read_volume(tmp_path / "w.vti")
    assert np.array_equal(vf.array, mr) and vf.spacing == (2, 3, 4) and vf.origin == (5, 6, 7)
    assert vf.array_name == "x"


def test_missing_vtk_is_named(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "vtkmodules", None)
    monkeypatch.setitem(sys.modules, "vtkmodules.util", None)
    with pytest.raises(nv.InputError, match=r"needs the 'vtk' package \(pip install vtk\)"):
        read_volume(DATA / "hydrogen.vti")


def test_internal_errors_exit_1(monkeypatch, capsys):
    import neuralvol.cli as cli

    def boom(args):
        raise RuntimeError("simulated bug")
    monkeypatch.setattr(cli, "cmd_info", boom)
    parser = cli.build_parser()
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    for action in parser._subparsers._group_actions[0].choices.values():
        if action.prog.endswith("info"):
            action.set_defaults(func=boom)
    assert main(["info", "x.nvc"]) == 1
    assert "internal error: RuntimeError: simulated bug" in capsys.readouterr().err
