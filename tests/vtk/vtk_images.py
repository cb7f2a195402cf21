"""numpy <-> vtkImageData helpers for the VTK-layer tests."""
from __future__ import annotations

import numpy as np


def image_from_array(values: np.ndarray, name="values", spacing=(1, 1, 1), origin=(0, 0, 0),
                     extent_start=(0, 0, 0)):
    """A vtkImageData holding ``values`` ([z, y, x]) as point data ``name``."""
    from vtkmodules.util import numpy_support
    from vtkmodules.vtkCommonDataModel import vtkImageData
    nz, ny, nx = values.shape
    img = vtkImageData()
    x0, y0, z0 = extent_start
    img.SetExtent(x0, x0 + nx - 1, y0, y0 + ny - 1, z0, z0 + nz - 1)
    img.SetSpacing(*spacing)
    img.SetOrigin(*origin)
    arr = numpy_support.numpy_to_vtk(np.ascontiguousarray(values).ravel(), deep=1)
    arr.SetName(name)
    img.GetPointData().AddArray(arr)
    img.GetPointData().SetActiveScalars(name)
    return img


def point_array(dataset, name) -> np.ndarray:
    from vtkmodules.util import numpy_support
    arr = dataset.GetPointData().GetArray(name)
    assert arr is not None, f"no point array {name!r}"
    return numpy_support.vtk_to_numpy(arr)


def image_values(image, name=None) -> np.ndarray:
    """Point array of a vtkImageData reshaped to [z, y, x]."""
    nx, ny, nz = image.GetDimensions()
    name = name or image.GetPointData().GetScalars().GetName()
    return point_array(image, name).reshape(nz, ny, nx)
