"""Volumes read without loading them whole: ``.raw`` and ``.npy`` by memory map, zarr
arrays and HDF5 datasets through zarr and h5py.

Every reader returns a :class:`LazyArray`: a ``[z, y, x]`` array-like with ``shape``,
``dtype``, ``ndim``, ``nbytes``, ``__getitem__`` (slices in, a numpy array out) and
``__array__`` (the whole volume, read when asked for). A lazy array pickles as its source
(path, dataset name, shape, dtype), never its data: unpickling reopens the file, so a
Dask worker that receives one reads only the slices it asks for. ``spacing``, ``origin``
and ``array_name`` come from the file where it says so:

* zarr arrays and HDF5 datasets: attributes ``spacing`` and ``origin`` (three numbers
  each, x, y, z order like everywhere in neuralvol) and ``array_name`` (a string; default
  the last component of the array's path). :func:`neuralvol.zarr_output.decode_to_zarr`
  writes the same attributes.
* ``.raw`` and ``.npy``: no placement in the file (spacing 1, origin 0, the file's stem).

Sources are named like this (see :func:`split_source`)::

    volume.raw                  (needs dims=(x, y, z) and dtype=)
    volume.npy
    store.zarr                  (an array, or a group holding exactly one 3D array)
    store.zarr:group/array
    file.h5:/group/dataset      (.h5, .hdf5, .hdf, .he5; a file with one 3D dataset needs no name)

zarr and h5py are optional (``pip install neuralvol[large]``) and imported only here,
when such a source is opened.
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np

from .errors import InputError

ZARR_SUFFIXES = (".zarr",)
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")
LAZY_SUFFIXES = (".raw", ".npy") + ZARR_SUFFIXES + HDF5_SUFFIXES
# The attribute names read from (and written to) zarr arrays and HDF5 datasets.
SPACING_ATTR, ORIGIN_ATTR, NAME_ATTR = "spacing", "origin", "array_name"
INSTALL_HINT = "pip install neuralvol[large]"

_CONTAINER = re.compile(r"^(?P<file>.*?(?:" + "|".join(re.escape(s) for s in ZARR_SUFFIXES + HDF5_SUFFIXES)
                        + r"))/?(?::(?P<inner>.*))?$", re.IGNORECASE)


def split_source(source: str | os.PathLike) -> tuple[str, str | None]:
    """``"file.h5:/a/b"`` -> ``("file.h5", "/a/b")``; ``"vol.zarr"`` -> ``("vol.zarr", None)``.

    The split is at the first ``.zarr``/``.h5``/``.hdf5``/``.hdf``/``.he5`` followed by a
    colon or the end, so folders with colons in their names and Windows drive letters
    stay in the file part. Other sources come back whole, with ``None``.
    """
    text = os.fspath(source)
    match = _CONTAINER.match(text)
    if match is None:
        return text, None
    inner = match.group("inner")
    return match.group("file"), (inner if inner not in ("", None) else None)


def source_kind(source: str | os.PathLike) -> str | None:
    """"raw", "npy", "zarr", "hdf5", or None for sources the lazy readers do not handle."""
    file, _ = split_source(source)
    name = file.lower().rstrip("/")
    if name.endswith(ZARR_SUFFIXES):
        return "zarr"
    if name.endswith(HDF5_SUFFIXES):
        return "hdf5"
    if name.endswith(".raw"):
        return "raw"
    if name.endswith(".npy"):
        return "npy"
    return None


def _check_volume(shape, dtype, what: str) -> None:
    from .bitstream.schema import VALUE_DTYPES
    # [z, y, x], or [z, y, x, C] for a field of C components (compress() checks C)
    if len(shape) not in (3, 4):
        raise InputError(f"{what} has {len(shape)} dimensions (shape {tuple(shape)}); a [z, y, x] volume needs 3 "
                         f"([z, y, x, C] for C components): pick a 3D array or slice one out and save it")
    if np.dtype(dtype).name not in VALUE_DTYPES:
        raise InputError(f"{what} has dtype {np.dtype(dtype)}, which is not supported; use an integer or float "
                         f"array ({', '.join(VALUE_DTYPES)})")
    if math.prod(shape) == 0:
        raise InputError(f"{what} is empty (shape {tuple(shape)}): nothing to compress")


def _vec3_attr(attrs, key: str, what: str):
    value = attrs.get(key) if attrs is not None else None
    if value is None:
        return None
    try:
        vec = tuple(float(v) for v in np.asarray(value).reshape(-1))
    except (TypeError, ValueError):
        vec = ()
    if len(vec) != 3:
        raise InputError(f"{what} attribute {key!r} must be three numbers (x, y, z), got {value!r}")
    return vec


class LazyArray:
    """A ``[z, y, x]`` volume in a file, read slice by slice. Subclasses open the file in
    :meth:`_open` (called again after unpickling) and say what to pickle in :meth:`_source`."""

    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    array_name: str = "values"

    def __init__(self):
        self._handle = None

    # -- subclass hooks ------------------------------------------------------------------
    def _open(self):
        raise NotImplementedError

    def _source(self) -> dict:
        raise NotImplementedError

    # -- array protocol ------------------------------------------------------------------
    @property
    def handle(self):
        if self._handle is None:
            self._handle = self._open()
        return self._handle

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        return np.asarray(self.handle[key])

    def read(self) -> np.ndarray:
        """The whole volume as a numpy array (C order, a copy, the file closed after)."""
        return np.ascontiguousarray(self[:, :, :])

    def __array__(self, dtype=None, copy=None):
        values = self.read()
        return values if dtype is None else values.astype(dtype, copy=False)

    # -- pickling: the source, never the data ------------------------------------------
    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handle"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def close(self) -> None:
        handle, self._handle = self._handle, None
        closer = getattr(getattr(handle, "file", None), "close", None)   # h5py datasets close via their file
        if closer is not None:
            closer()

    def __repr__(self) -> str:
        src = ", ".join(f"{k}={v!r}" for k, v in self._source().items())
        return f"<{type(self).__name__} {src} shape={self.shape} dtype={self.dtype}>"


class MemmapArray(LazyArray):
    """A ``.raw`` file (``dims`` x, y, z and ``dtype``, optional byte ``offset``) or a ``.npy``
    file (``dims`` None), mapped read-only."""

    def __init__(self, path, dims=None, dtype=None, offset: int = 0, array_name: str | None = None):
        super().__init__()
        self.path = os.path.abspath(os.fspath(path))
        self.array_name = array_name or Path(path).stem
        if not os.path.isfile(self.path):
            raise InputError(f"no such file: {os.fspath(path)!r}")
        if dims is None:       # .npy: the header says shape and dtype
            self.raw = None
            mm = self._open()
            # a 2D [y, x] or 1D array is one slice or one row, as compress() takes it
            self.shape, self.dtype = (1,) * (3 - mm.ndim) + tuple(mm.shape), mm.dtype
            del mm
        else:
            try:
                self.dtype = np.dtype(dtype)
            except TypeError:
                raise InputError(f"unknown dtype {dtype!r} (e.g. int16, uint8, float32)") from None
            nx, ny, nz = (int(d) for d in dims)
            self.shape, self.raw = (nz, ny, nx), int(offset)
            size = os.path.getsize(self.path)
            expected = self.raw + nx * ny * nz * self.dtype.itemsize
            if size != expected:
                raise InputError(f"{os.fspath(path)!r} has {size} bytes but dims {nx}x{ny}x{nz} of {self.dtype}"
                                 f"{f' after {self.raw} header bytes' if self.raw else ''} need {expected}")
        _check_volume(self.shape, self.dtype, repr(os.fspath(path)))

    @staticmethod
    def _as_volume(mm):
        return mm.reshape((1,) * (3 - mm.ndim) + mm.shape) if mm.ndim < 3 else mm

    def _open(self):
        if self.raw is None:
            try:
                mm = np.load(self.path, mmap_mode="r", allow_pickle=False)
            except ValueError as exc:
                raise InputError(f"{self.path!r} is not a readable .npy array ({exc})") from None
            return mm if not hasattr(self, "shape") else self._as_volume(mm)
        return np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.raw, shape=self.shape)

    def _source(self) -> dict:
        return {"path": self.path}

    def __getitem__(self, key) -> np.ndarray:
        # A copy through a mapping made for this read and dropped after it: the caller gets a
        # plain array that neither pins the mapping nor pickles as the file's pages, and no
        # mapping outlives the read. Kept mappings hold every page read through them in the
        # process's RSS: a Dask worker that fitted the 64 bricks of a 512^3 .npy reported
        # 8.5 GiB of file pages (the file is 512 MiB; each task's copy of the array had its
        # own mapping), enough for Dask's memory monitor to pause or restart it.
        return np.array(self._open()[key])


class ZarrArray(LazyArray):
    """A zarr array (format 2 or 3) in a local store, ``array_path`` inside it."""

    def __init__(self, path, array_path: str | None = None, array_name: str | None = None):
        super().__init__()
        self.path = os.path.abspath(os.fspath(path))
        if not os.path.exists(self.path):
            raise InputError(f"no such zarr store: {os.fspath(path)!r}")
        self.array_path = _find_zarr_array(self.path, array_path, array_name)
        arr = self._open()
        what = f"zarr array {self.array_path or '/'!r} of {os.fspath(path)!r}"
        self.shape, self.dtype = tuple(arr.shape), np.dtype(arr.dtype)
        _check_volume(self.shape, self.dtype, what)
        attrs = dict(arr.attrs)
        self.spacing = _vec3_attr(attrs, SPACING_ATTR, what) or self.spacing
        self.origin = _vec3_attr(attrs, ORIGIN_ATTR, what) or self.origin
        self.array_name = array_name or str(attrs.get(NAME_ATTR) or _last_name(self.array_path, path))
        self._handle = arr

    def _open(self):
        zarr = import_zarr()
        root = zarr.open(self.path, mode="r")
        return root if not self.array_path else root[self.array_path]

    def _source(self) -> dict:
        return {"path": self.path, "array": self.array_path}


class HDF5Array(LazyArray):
    """A dataset of an HDF5 file, read through h5py."""

    def __init__(self, path, dataset: str | None = None, array_name: str | None = None):
        super().__init__()
        self.path = os.path.abspath(os.fspath(path))
        if not os.path.isfile(self.path):
            raise InputError(f"no such file: {os.fspath(path)!r}")
        self.dataset = _find_hdf5_dataset(self.path, dataset, array_name)
        ds = self._open()
        what = f"HDF5 dataset {self.dataset!r} of {os.fspath(path)!r}"
        self.shape, self.dtype = tuple(ds.shape), np.dtype(ds.dtype)
        _check_volume(self.shape, self.dtype, what)
        attrs = dict(ds.attrs)
        self.spacing = _vec3_attr(attrs, SPACING_ATTR, what) or self.spacing
        self.origin = _vec3_attr(attrs, ORIGIN_ATTR, what) or self.origin
        name = attrs.get(NAME_ATTR)
        if isinstance(name, bytes):
            name = name.decode("utf-8", "replace")
        self.array_name = array_name or str(name or _last_name(self.dataset, path))
        self._handle = ds

    def _open(self):
        h5py = import_h5py()
        return _open_h5(h5py, self.path)[self.dataset]

    def _source(self) -> dict:
        return {"path": self.path, "dataset": self.dataset}


def _last_name(inner: str | None, path) -> str:
    parts = [p for p in (inner or "").split("/") if p]
    return parts[-1] if parts else Path(os.fspath(path).rstrip("/")).stem


def import_zarr():
    try:
        import zarr
    except ImportError:
        raise InputError(f"reading and writing zarr needs the 'zarr' package: {INSTALL_HINT}") from None
    return zarr


def import_h5py():
    try:
        import h5py
    except ImportError:
        raise InputError(f"reading and writing HDF5 needs the 'h5py' package: {INSTALL_HINT}") from None
    return h5py


def _open_h5(h5py, path: str):
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise InputError(f"{path!r} is not a readable HDF5 file ({exc})") from None


def _pick_volume(found, hint: str | None) -> list[str]:
    """The 3D arrays among ``found`` (name, shape); with a ``hint`` (--array), those it names
    by full path or last component, if any."""
    volumes = [n for n, s in found if len(s) == 3]
    if hint:
        named = [n for n in volumes if n == hint.strip("/") or n.rsplit("/", 1)[-1] == hint]
        if named:
            return named
    return volumes


def _find_hdf5_dataset(path: str, dataset: str | None, hint: str | None = None) -> str:
    h5py = import_h5py()
    with _open_h5(h5py, path) as fh:
        found = []
        fh.visititems(lambda name, obj: found.append((name, obj.shape)) if isinstance(obj, h5py.Dataset) else None)
        listing = ", ".join(f"/{n} {tuple(s)}" for n, s in found) or "none"
        if dataset is None:
            volumes = _pick_volume(found, hint)
            if len(volumes) == 1:
                return "/" + volumes[0]
            raise InputError(f"{path!r} holds {len(volumes)} 3D datasets: name one as {Path(path).name}:/DATASET "
                             f"(datasets: {listing})")
        name = "/" + dataset.strip("/")
        obj = fh.get(name)
        if obj is None or not isinstance(obj, h5py.Dataset):
            kind = "a group, not a dataset" if obj is not None else "not in the file"
            raise InputError(f"{name!r} is {kind} of {path!r}; datasets: {listing}")
        return name


def _find_zarr_array(path: str, array_path: str | None, hint: str | None = None) -> str:
    zarr = import_zarr()
    try:
        root = zarr.open(path, mode="r")
    except Exception as exc:  # noqa: BLE001 - zarr raises several kinds for a folder that is no store
        raise InputError(f"{path!r} is not a readable zarr store ({type(exc).__name__}: {exc})") from None
    if isinstance(root, zarr.Array):
        if array_path:
            raise InputError(f"{path!r} is a zarr array, not a group: drop ':{array_path}'")
        return ""
    found = []

    def walk(group, prefix):
        for name, member in group.members():
            full = f"{prefix}{name}"
            if isinstance(member, zarr.Array):
                found.append((full, member.shape))
            else:
                walk(member, full + "/")
    walk(root, "")
    listing = ", ".join(f"{n} {tuple(s)}" for n, s in found) or "none"
    if array_path is None:
        volumes = _pick_volume(found, hint)
        if len(volumes) == 1:
            return volumes[0]
        raise InputError(f"{path!r} holds {len(volumes)} 3D arrays: name one as {Path(path).name}:GROUP/ARRAY "
                         f"(arrays: {listing})")
    name = array_path.strip("/")
    if name not in {n for n, _ in found}:
        raise InputError(f"zarr store {path!r} has no array {name!r}; arrays: {listing}")
    return name


def open_lazy(source: str | os.PathLike, dims=None, dtype=None, array_name: str | None = None,
              offset: int = 0) -> LazyArray:
    """Open a volume without reading it.

    Parameters
    ----------
    source : str or os.PathLike
        ``vol.raw``, ``vol.npy``, ``store.zarr``, ``store.zarr:group/array`` or
        ``file.h5:/group/dataset`` (see :func:`split_source`).
    dims : 3 ints, optional
        x, y, z of a ``.raw`` file (required for it).
    dtype : numpy dtype, optional
        Element type of a ``.raw`` file (required for it).
    array_name : str, optional
        The field's name (default: the file's attribute or the array's name). For a zarr
        store or HDF5 file given without an inner path, it also picks the array/dataset
        of that name (full path or last component).
    offset : int, default 0
        Header bytes to skip in a ``.raw`` file.

    Returns
    -------
    LazyArray
        With ``shape``, ``dtype``, ``spacing``, ``origin``, ``array_name``; picklable.

    Raises
    ------
    InputError
        Missing file or dataset (the message lists what exists), not 3D, unsupported
        dtype, wrong ``.raw`` size, or zarr/h5py not installed.
    """
    kind = source_kind(source)
    file, inner = split_source(source)
    if kind == "raw":
        if dims is None or dtype is None:
            raise InputError("reading .raw needs --dims X Y Z and --dtype (e.g. --dims 64 64 93 --dtype int16)")
        return MemmapArray(file, dims=dims, dtype=dtype, offset=offset, array_name=array_name)
    if kind == "npy":
        return MemmapArray(file, array_name=array_name)
    if kind in ("zarr", "hdf5"):
        cls = ZarrArray if kind == "zarr" else HDF5Array
        return cls(file, inner, array_name)
    raise InputError(f"cannot open {os.fspath(source)!r} lazily: supported are {', '.join(LAZY_SUFFIXES)}")
