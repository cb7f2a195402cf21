"""What a brick task reads from: lazy arrays travel to Dask workers by reference.

Any ``[z, y, x]`` object with ``shape``, ``dtype``, ``__getitem__(tuple of slices)``
returning numpy, and that pickles without its data, can be bricked: the lazy arrays of
:mod:`neuralvol.lazy_arrays` (``.raw``/``.npy`` memory maps, zarr, HDF5) are. ``np.memmap``
pickles by value (the whole array), so :func:`as_brick_source` swaps a memmap of a
``.npy``/``.raw`` file for a :class:`~neuralvol.lazy_arrays.MemmapArray` that reopens the
file on the worker.
"""
from __future__ import annotations

import numpy as np

from ..lazy_arrays import MemmapArray


def is_lazy(array) -> bool:
    return not isinstance(array, np.ndarray) and all(hasattr(array, a) for a in ("shape", "dtype", "__getitem__"))


def as_brick_source(array):
    """``array`` as something a worker can slice: a memmap of a whole C-order file becomes a
    :class:`MemmapArray`; anything else is returned as it is (numpy arrays travel by brick)."""
    if not (isinstance(array, np.memmap) and getattr(array, "filename", None) and array.ndim == 3):
        return array
    base = array.base if isinstance(array.base, np.memmap) else array
    if not (base is array or base.shape == array.shape) or not array.flags.c_contiguous:
        return array
    try:   # a .npy whose header describes exactly this array
        npy = np.load(array.filename, mmap_mode="r", allow_pickle=False)
        if npy.shape == array.shape and npy.dtype == array.dtype and npy.offset == array.offset:
            return MemmapArray(array.filename)
    except (ValueError, EOFError):   # not a .npy: a raw file
        pass
    nz, ny, nx = array.shape
    return MemmapArray(array.filename, dims=(nx, ny, nz), dtype=array.dtype, offset=array.offset)
