"""Lazy arrays that travel to Dask workers by reference: a worker reads only its brick.

Any ``[z, y, x]`` object with ``shape``, ``dtype``, ``__getitem__(tuple of slices)``
returning numpy, and that pickles without its data, can be bricked. ``np.memmap``
pickles by value (the whole array), so :func:`as_brick_source` swaps a memmap of a
``.npy``/``.raw`` file for a :class:`MemmapArray` that reopens the file on the worker.
"""
from __future__ import annotations

import numpy as np


class MemmapArray:
    """A read-only memory map of ``shape``/``dtype`` at ``offset`` in ``path``, pickled as its path."""

    def __init__(self, path, dtype, shape, offset: int = 0, order: str = "C"):
        self.path, self.dtype, self.shape = str(path), np.dtype(dtype), tuple(int(n) for n in shape)
        self.offset, self.order = int(offset), order
        self._map = None

    @classmethod
    def from_npy(cls, path) -> "MemmapArray":
        m = np.load(path, mmap_mode="r")
        return cls(path, m.dtype, m.shape, m.offset, "F" if m.flags.f_contiguous and not m.flags.c_contiguous else "C")

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def _array(self) -> np.memmap:
        if self._map is None:
            self._map = np.memmap(self.path, self.dtype, "r", self.offset, self.shape, self.order)
        return self._map

    def __getitem__(self, key) -> np.ndarray:
        return np.array(self._array()[key])

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_map"] = None
        return state

    def __repr__(self) -> str:
        return f"MemmapArray({self.path!r}, {self.dtype}, {self.shape})"


def is_lazy(array) -> bool:
    return not isinstance(array, np.ndarray) and all(hasattr(array, a) for a in ("shape", "dtype", "__getitem__"))


def as_brick_source(array):
    """``array`` as something a worker can slice: memmaps become :class:`MemmapArray`."""
    if isinstance(array, np.memmap) and getattr(array, "filename", None) and array.ndim == 3:
        base = array.base if isinstance(array.base, np.memmap) else array
        if base is array or base.shape == array.shape:
            order = "F" if array.flags.f_contiguous and not array.flags.c_contiguous else "C"
            return MemmapArray(array.filename, array.dtype, array.shape, array.offset, order)
    return array
