"""A compressed volume: the fitted network plus what it takes to decode it on its own.

Decoding evaluates the network on any grid over the original physical bounds, any region
of it, or at arbitrary points. The header schema (``models`` entries) is documented in
``docs/FORMAT.md``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .bitstream import atomic_io, container, schema
from .bitstream.records import StorageEntry, TrainingSummary
from .errors import InputError
from .evaluate import evaluate_grid, evaluate_points, unit_axis
from .model import ModelConfig, NeuralField

LIBRARY_VERSION = "0.3.0"


@dataclass(frozen=True)
class VolumeInfo:
    """Where the field lives and what the original array was."""

    dims: tuple[int, int, int]                 # x, y, z
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    array_name: str = "values"
    dtype: str = "float32"
    value_range: tuple[float, float] = (0.0, 1.0)
    time: float | None = None
    name: str = ""
    extent: tuple[int, ...] | None = None      # index extent within a larger image (bricks)

    @property
    def native_bytes(self) -> int:
        return int(np.prod(self.dims)) * np.dtype(self.dtype).itemsize


def _check_region(region, dims) -> tuple[int, int, int, int, int, int]:
    try:
        r = tuple(int(v) for v in region)
    except (TypeError, ValueError):
        raise InputError(f"region must be six integers x0 x1 y0 y1 z0 z1, got {region!r}") from None
    if len(r) != 6:
        raise InputError(f"region must be six integers x0 x1 y0 y1 z0 z1, got {len(r)}")
    for axis, name in enumerate("xyz"):
        lo, hi, n = r[2 * axis], r[2 * axis + 1], dims[axis]
        if not (0 <= lo <= hi < n):
            raise InputError(f"region {name}-range {lo}..{hi} is outside 0..{n - 1} of the decoded grid")
    return r


def _check_dims(dims) -> tuple[int, int, int]:
    try:
        d = tuple(int(v) for v in dims)
    except (TypeError, ValueError):
        raise InputError(f"dims must be three positive integers (x, y, z), got {dims!r}") from None
    if len(d) != 3 or any(v < 1 for v in d):
        raise InputError(f"dims must be three positive integers (x, y, z), got {dims!r}")
    return d


def scaled_dims(dims: Sequence[int], scale: float) -> tuple[int, int, int]:
    """``(n - 1) * scale + 1`` nodes per axis (half rounded up): node-aligned resampling."""
    return tuple(1 if n <= 1 else int(math.floor((n - 1) * scale + 0.5)) + 1 for n in dims)


def cast_to_dtype(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Cast float values to ``dtype``: integers are rounded and clipped to the dtype's range."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


class NeuralVolume:
    """One fitted network and the metadata to decode it. Get one from
    :func:`neuralvol.compress` or :func:`neuralvol.open`."""

    def __init__(self, network: NeuralField, info: VolumeInfo, training: TrainingSummary | None = None,
                 storage: StorageEntry | None = None):
        self.network = network.eval()
        self.info = info
        self.training = training if training is not None else TrainingSummary()
        # How the parameters are stored: float16 (None) or quantised (the header's entry,
        # see neuralvol.bitstream.records); the network already holds the stored values.
        self.storage = storage
        # The ratios a PSNR-target search tried, as (ratio, PSNR) pairs (None unless searched;
        # not stored in the file).
        self.search: list[tuple[float, float]] | None = None
        self._nbytes: int | None = None

    # -- metadata ---------------------------------------------------------------------
    dims = property(lambda self: self.info.dims)
    spacing = property(lambda self: self.info.spacing)
    origin = property(lambda self: self.info.origin)
    array_name = property(lambda self: self.info.array_name)
    time = property(lambda self: self.info.time)
    value_range = property(lambda self: self.info.value_range)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.info.dtype)

    @property
    def config(self) -> ModelConfig:
        return self.network.config

    @property
    def bounds(self) -> tuple[float, ...]:
        out = []
        for o, s, n in zip(self.origin, self.spacing, self.dims):
            out += [o, o + (n - 1) * s]
        return tuple(out)

    @property
    def nbytes(self) -> int:
        """Bytes of an `.nvc` file holding this volume alone."""
        if self._nbytes is None:
            self._nbytes = len(schema.to_bytes([self]))
        return self._nbytes

    def invalidate_size(self) -> None:
        """Forget the cached :attr:`nbytes`: call after changing ``training`` or ``storage``."""
        self._nbytes = None

    @property
    def ratio(self) -> float:
        return self.info.native_bytes / self.nbytes

    def output_dims(self, dims: Sequence[int] | None = None, scale: float | None = None) -> tuple[int, int, int]:
        """The decoding grid for explicit ``dims`` or a ``scale`` factor of the original dims.

        A scale keeps the grid node-aligned: ``(n - 1) * scale + 1`` nodes per axis, so at
        scale 2 every original voxel is kept and one is inserted between neighbours, and at
        scale 0.5 every other one is kept (when ``n - 1`` is even).
        """
        if dims is not None and scale is not None:
            raise InputError("give dims or scale, not both")
        if scale is not None:
            if not float(scale) > 0:
                raise InputError(f"scale must be positive, got {scale}")
            return scaled_dims(self.dims, float(scale))
        return self.dims if dims is None else _check_dims(dims)

    def grid_spacing(self, dims: Sequence[int]) -> tuple[float, float, float]:
        """Spacing of a ``dims`` grid spanning the same physical bounds."""
        dims = _check_dims(dims)
        return tuple(s * (n - 1) / (m - 1) if m > 1 and n > 1 else s
                     for s, n, m in zip(self.spacing, self.dims, dims))

    def __repr__(self) -> str:
        return (f"<NeuralVolume {self.array_name!r} dims={self.dims} dtype={self.dtype} "
                f"{self.nbytes} bytes ratio={self.ratio:.1f} psnr={self.training.psnr}>")

    # -- decoding ---------------------------------------------------------------------
    def decode(self, dims: Sequence[int] | None = None, region: Sequence[int] | None = None,
               dtype=None, device: str = "cpu",
               progress: Callable[[float], None] | None = None) -> np.ndarray:
        """Decode to a ``[z, y, x]`` array.

        dims: grid resolution (x, y, z) over the original physical bounds (default: original).
        region: inclusive index extent ``x0 x1 y0 y1 z0 z1`` of that grid (default: all).
        dtype: output dtype (default: the original's; integers are rounded and clipped).
        """
        dims = self.dims if dims is None else _check_dims(dims)
        region = (0, dims[0] - 1, 0, dims[1] - 1, 0, dims[2] - 1) if region is None else _check_region(region, dims)
        out_dtype = self.dtype if dtype is None else np.dtype(dtype)
        axes = [unit_axis(n, region[2 * a], region[2 * a + 1]) for a, n in enumerate(dims)]
        offset, scale = self._normalisation()
        if scale == 0.0:
            shape = tuple(region[2 * a + 1] - region[2 * a] + 1 for a in (2, 1, 0))
            return cast_to_dtype(np.full(shape, offset, dtype=np.float64), out_dtype)
        self.network.to(device)
        out = evaluate_grid(self.network, *axes, device=device, progress=progress)
        return cast_to_dtype(offset + scale * out.astype(np.float64), out_dtype)

    def sample(self, points, device: str = "cpu") -> np.ndarray:
        """Values at physical points ``(N, 3)`` (x, y, z); NaN outside the volume's bounds."""
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise InputError(f"points must have shape (N, 3), got {pts.shape}")
        unit = np.empty_like(pts)
        inside = np.all(np.isfinite(pts), axis=1)
        for a in range(3):
            extent = (self.dims[a] - 1) * self.spacing[a]
            rel = pts[:, a] - self.origin[a]
            tol = 1e-6 * max(abs(extent), abs(self.spacing[a]), 1e-30)
            if self.dims[a] > 1 and extent != 0:
                unit[:, a] = rel / extent
                inside &= (rel >= -tol) & (rel <= extent + tol)
            else:
                unit[:, a] = 0.0
                inside &= np.abs(rel) <= tol
        unit = np.clip(np.nan_to_num(unit), 0.0, 1.0)
        values = np.full(pts.shape[0], np.nan)
        offset, scale = self._normalisation()
        if inside.any():
            if scale == 0.0:
                values[inside] = offset
            else:
                self.network.to(device)
                values[inside] = offset + scale * evaluate_points(self.network, unit[inside], device).astype(np.float64)
        return values

    def _normalisation(self) -> tuple[float, float]:
        lo, hi = self.value_range
        return float(lo), float(hi) - float(lo)

    # -- files ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write this volume to an `.nvc` file atomically (temp file + rename)."""
        save_models(path, [self])


def save_models(path: str | os.PathLike, volumes: Sequence[NeuralVolume]) -> None:
    """Write several volumes (time steps, fields, bricks) into one `.nvc` file, atomically."""
    if not volumes:
        raise InputError("save_models needs at least one volume")
    atomic_io.write_atomic(path, schema.to_bytes(list(volumes)))



def open_all(path: str | os.PathLike) -> list[NeuralVolume]:
    """Every model in an `.nvc` file (one per time step, field or brick)."""
    return schema.volumes_from_bytes(atomic_io.read_bytes(path), source=os.fspath(path))


def open(path: str | os.PathLike, model: int = 0) -> NeuralVolume:  # noqa: A001 - mirrors builtins.open on purpose
    """The ``model``-th volume of an `.nvc` file (the first by default)."""
    volumes = open_all(path)
    if not -len(volumes) <= model < len(volumes):
        raise InputError(f"{os.fspath(path)!r} holds {len(volumes)} model(s); model {model} does not exist")
    return volumes[model]


def read_header(path: str | os.PathLike) -> dict:
    """The verified JSON header of an `.nvc` file (sections checked too)."""
    header, _ = container.decode(atomic_io.read_bytes(path), os.fspath(path))
    return header
