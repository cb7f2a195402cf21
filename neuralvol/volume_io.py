"""Reading and writing plain volume files (.npy, .raw, zarr, HDF5, and VTK's formats through VTK).

VTK, zarr and h5py are imported only when such a format is used, so the core stays numpy + torch.
``.raw``, ``.npy``, zarr and HDF5 are read through :mod:`neuralvol.lazy_arrays`, which can
also hand the array back unread (``lazy=True``).
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bitstream.atomic_io import atomic_path, write_atomic
from .errors import InputError

VTK_SUFFIXES = {".vti": "vtkXMLImageDataReader", ".mha": "vtkMetaImageReader", ".mhd": "vtkMetaImageReader",
                ".nrrd": "vtkNrrdReader", ".nhdr": "vtkNrrdReader", ".nii": "vtkNIFTIImageReader",
                ".nii.gz": "vtkNIFTIImageReader"}
READ_SUFFIXES = (".npy", ".raw", ".zarr", ".h5", ".hdf5") + tuple(VTK_SUFFIXES)
WRITE_SUFFIXES = (".npy", ".raw", ".vti")


@dataclass
class VolumeFile:
    """A volume as read from disk: the [z, y, x] (or [z, y, x, C]) array (a numpy array, or a
    :class:`neuralvol.lazy_arrays.LazyArray` when read with ``lazy=True``) plus its placement."""

    array: np.ndarray
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    array_name: str = "values"
    component_names: list[str] | None = None   # VTK's names of a multi-component array
    time: float | None = None                   # VTK's TimeValue field data, if any


def suffix_of(path: str | os.PathLike) -> str:
    name = Path(path).name.lower()
    return ".nii.gz" if name.endswith(".nii.gz") else Path(name).suffix


def _import_vtk(what: str):
    try:
        from vtkmodules.util import numpy_support
        import vtkmodules.vtkIOImage  # noqa: F401  (registers the readers)
        import vtkmodules.vtkIOXML  # noqa: F401
        return numpy_support
    except ImportError:
        raise InputError(f"{what} needs the 'vtk' package (pip install vtk), or convert the volume to .npy") from None


def read_volume(path: str | os.PathLike, array_name: str | None = None, dims=None, dtype=None,
                lazy: bool = False) -> VolumeFile:
    """Read a volume file. ``.raw`` needs ``dims`` (x, y, z) and ``dtype``.

    ``path`` may name an array inside a container: ``store.zarr:group/array`` or
    ``file.h5:/group/dataset`` (see :func:`neuralvol.lazy_arrays.open_lazy`). With
    ``lazy=True``, ``.raw``, ``.npy``, zarr and HDF5 sources come back unread as a
    :class:`~neuralvol.lazy_arrays.LazyArray`; VTK formats are always read whole.
    """
    from .lazy_arrays import open_lazy, source_kind
    if source_kind(path) is not None:
        arr = open_lazy(path, dims=dims, dtype=dtype, array_name=array_name)
        values = arr if lazy else arr.read()
        if not lazy:
            arr.close()
        return VolumeFile(values, arr.spacing, arr.origin, arr.array_name)
    suffix = suffix_of(path)
    if not Path(path).exists():
        raise InputError(f"no such file: {os.fspath(path)!r}")
    if suffix in VTK_SUFFIXES:
        return _read_vtk(path, suffix, array_name)
    raise InputError(f"cannot read {os.fspath(path)!r}: unknown suffix {suffix!r}; "
                     f"supported: {', '.join(READ_SUFFIXES)}")


def _read_vtk(path, suffix: str, array_name: str | None) -> VolumeFile:
    numpy_support = _import_vtk(f"reading {suffix}")
    from vtkmodules import vtkIOImage, vtkIOXML
    cls = getattr(vtkIOXML, VTK_SUFFIXES[suffix], None) or getattr(vtkIOImage, VTK_SUFFIXES[suffix])
    reader = cls()
    reader.SetFileName(os.fspath(path))
    reader.Update()
    image = reader.GetOutput()
    if image is None or image.GetNumberOfPoints() == 0:
        raise InputError(f"VTK could not read an image from {os.fspath(path)!r}")
    pd = image.GetPointData()
    names = [pd.GetArrayName(i) for i in range(pd.GetNumberOfArrays())]
    if array_name is None:
        scalars = pd.GetScalars()
        arr = scalars if scalars is not None else (pd.GetArray(0) if names else None)
    else:
        arr = pd.GetArray(array_name)
        if arr is None:
            raise InputError(f"{os.fspath(path)!r} has no point-data array {array_name!r}; arrays: {', '.join(map(str, names))}")
    if arr is None:
        raise InputError(f"{os.fspath(path)!r} has no point-data arrays")
    n_comp = arr.GetNumberOfComponents()
    nx, ny, nz = image.GetDimensions()
    shape = (nz, ny, nx) if n_comp == 1 else (nz, ny, nx, n_comp)
    values = numpy_support.vtk_to_numpy(arr).reshape(shape).copy()
    name = arr.GetName() or "values"
    comp_names = None
    if n_comp > 1 and any(arr.GetComponentName(c) for c in range(n_comp)):
        comp_names = [arr.GetComponentName(c) or "" for c in range(n_comp)]
    time_value = None
    tv = image.GetFieldData().GetArray("TimeValue")
    if tv is not None and tv.GetNumberOfTuples() >= 1:
        time_value = float(tv.GetTuple1(0))
    return VolumeFile(values, tuple(image.GetSpacing()), tuple(image.GetOrigin()), name, comp_names, time_value)


def write_volume(path: str | os.PathLike, array: np.ndarray, spacing=(1.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0),
                 array_name: str = "values") -> None:
    """Write a [z, y, x] array atomically as .npy, .raw (bytes only) or .vti."""
    suffix = suffix_of(path)
    if suffix == ".npy":
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        write_atomic(path, buf.getvalue())
    elif suffix == ".raw":
        write_atomic(path, np.ascontiguousarray(array).tobytes())
    elif suffix == ".vti":
        _write_vti(path, array, spacing, origin, array_name)
    else:
        raise InputError(f"cannot write {os.fspath(path)!r}: unknown suffix {suffix!r}; supported: {', '.join(WRITE_SUFFIXES)}")


def _write_vti(path, array, spacing, origin, array_name) -> None:
    numpy_support = _import_vtk("writing .vti")
    from vtkmodules.vtkCommonDataModel import vtkImageData
    from vtkmodules.vtkIOXML import vtkXMLImageDataWriter
    nz, ny, nx = array.shape[:3]
    image = vtkImageData()
    image.SetDimensions(nx, ny, nz)
    image.SetSpacing(*spacing)
    image.SetOrigin(*origin)
    flat = np.ascontiguousarray(array).reshape((-1,) if array.ndim == 3 else (-1, array.shape[3]))
    vtk_array = numpy_support.numpy_to_vtk(flat, deep=True)
    vtk_array.SetName(array_name)
    image.GetPointData().SetScalars(vtk_array)
    with atomic_path(path) as tmp:
        writer = vtkXMLImageDataWriter()
        writer.SetFileName(tmp)
        writer.SetInputData(image)
        if writer.Write() != 1:
            raise InputError(f"VTK failed to write {os.fspath(path)!r}")
