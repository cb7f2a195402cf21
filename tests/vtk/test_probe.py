"""NeuralVolumeProbe under plain Python + the pip vtk wheel."""
import numpy as np
import pytest

pytest.importorskip("vtkmodules.vtkCommonDataModel")

import neuralvol as nv  # noqa: E402
from neuralvol.vtk_algorithms import NeuralVolumeProbe  # noqa: E402
from nvc_files import small_nvc  # noqa: E402
from vtk_images import point_array  # noqa: E402
from vtkmodules.util import numpy_support  # noqa: E402
from vtkmodules.vtkCommonCore import vtkPoints  # noqa: E402
from vtkmodules.vtkCommonDataModel import vtkImageData, vtkPolyData  # noqa: E402
from vtkmodules.vtkFiltersSources import vtkPlaneSource  # noqa: E402


def probe(input_connection=None, data=None, path=None):
    p = NeuralVolumeProbe()
    p.SetFileName(path or small_nvc())
    if input_connection is not None:
        p.SetInputConnection(input_connection)
    else:
        p.SetInputDataObject(data)
    p.Update()
    return p, p.GetOutputDataObject(0)


def test_probe_on_a_plane_matches_sample():
    vol = nv.open(small_nvc())
    b = vol.bounds
    plane = vtkPlaneSource()  # an oblique plane through the volume
    plane.SetOrigin(b[0] + 5, b[2] + 3, b[4] + 4)
    plane.SetPoint1(b[1] - 7, b[2] + 9, b[4] + 10)
    plane.SetPoint2(b[0] + 11, b[3] - 12, b[5] - 20)
    plane.SetResolution(40, 30)
    p, out = probe(plane.GetOutputPort())
    assert out.IsA("vtkPolyData") and out.GetNumberOfPolys() == 40 * 30
    pts = numpy_support.vtk_to_numpy(out.GetPoints().GetData())
    got = point_array(out, "ct")
    np.testing.assert_allclose(got, vol.sample(pts), rtol=1e-12, atol=1e-9)
    assert not np.isnan(got).any()
    assert point_array(out, "vtkValidPointMask").min() == 1
    assert p.sampled_points == len(pts)


def test_probe_random_points_inside_and_outside():
    vol = nv.open(small_nvc())
    b = np.array(vol.bounds).reshape(3, 2)
    rng = np.random.default_rng(1)
    span = b[:, 1] - b[:, 0]
    pts = b[:, 0] - 0.2 * span + rng.random((500, 3)) * 1.4 * span
    vp = vtkPoints()
    vp.SetData(numpy_support.numpy_to_vtk(pts, deep=1))
    poly = vtkPolyData()
    poly.SetPoints(vp)
    _, out = probe(data=poly)
    got = point_array(out, "ct")
    expected = vol.sample(pts)
    inside = ~np.isnan(expected)
    assert 0 < inside.sum() < len(pts)
    np.testing.assert_array_equal(np.isnan(got), ~inside)
    np.testing.assert_allclose(got[inside], expected[inside], rtol=1e-12, atol=1e-9)
    np.testing.assert_array_equal(point_array(out, "vtkValidPointMask"), inside.astype(np.uint8))


def test_probe_an_image_of_another_resolution_and_bounds():
    vol = nv.open(small_nvc())
    img = vtkImageData()
    img.SetExtent(0, 14, 0, 9, 0, 6)
    img.SetOrigin(vol.origin[0] + 1.3, vol.origin[1] + 2.1, vol.origin[2] + 0.7)
    img.SetSpacing(7.1, 6.3, 5.9)
    _, out = probe(data=img)
    assert out.IsA("vtkImageData") and out.GetDimensions() == (15, 10, 7)
    pts = np.array([out.GetPoint(i) for i in range(out.GetNumberOfPoints())])
    np.testing.assert_allclose(point_array(out, "ct"), vol.sample(pts), rtol=1e-12, atol=1e-9,
                               equal_nan=True)


def test_probe_bad_file_is_a_vtk_error(tmp_path, capfd):
    bad = tmp_path / "bad.nvc"
    bad.write_bytes(b"garbage" * 20)
    p, _ = probe(data=vtkPolyData(), path=str(bad))
    text = "".join(capfd.readouterr())
    assert "Traceback" not in text and "ERROR" in text and p.last_error
