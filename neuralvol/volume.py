"""A compressed volume: the fitted network plus what it takes to decode it on its own.

Decoding evaluates the network on any grid over the original physical bounds, any region
of it, or at arbitrary points. The header schema (``models`` entries) is documented in
``docs/FORMAT.md``.
"""
from __future__ import annotations

import builtins
import contextlib
import math
import os
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch

from . import postfilter
from .bitstream import atomic_io, container, schema
from .bitstream.records import StorageEntry, TrainingSummary
from .errors import InputError
from .evaluate import evaluate_grid, evaluate_points, mlp_dtype, unit_axis
from .model import ModelConfig, NeuralField
from .version import LIBRARY_VERSION



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
    # a multi-component field ([z, y, x, C]): per component (name, (lo, hi)); None = scalar
    components: tuple[tuple[str, tuple[float, float]], ...] | None = None

    @property
    def n_components(self) -> int:
        return 1 if self.components is None else len(self.components)

    @property
    def native_bytes(self) -> int:
        return int(np.prod(self.dims)) * np.dtype(self.dtype).itemsize * self.n_components


def validate_region(region, dims) -> tuple[int, int, int, int, int, int]:
    """Check an inclusive index extent against a grid.

    Parameters
    ----------
    region : sequence of 6 ints
        ``x0, x1, y0, y1, z0, z1``, inclusive, with ``0 <= lo <= hi < n`` on each axis.
    dims : sequence of 3 ints
        The grid (x, y, z) the region indexes, already valid (see :func:`validate_dims`).

    Returns
    -------
    tuple of 6 ints

    Raises
    ------
    InputError
        If ``region`` is not six integers, or a range is empty or outside the grid.
    """
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


def validate_dims(dims) -> tuple[int, int, int]:
    """Check a grid resolution.

    Parameters
    ----------
    dims : sequence of 3 ints
        Points per axis, x, y, z, each >= 1.

    Returns
    -------
    tuple of 3 ints

    Raises
    ------
    InputError
        If ``dims`` is not three positive integers.
    """
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


def slab_rescale_cast(offset, scale, dtype: np.dtype, cast: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """The per-slab form of ``cast_to_dtype(offset + scale * values, dtype)`` (``cast``) or of
    the float64 rescaling alone: the same float64 operations in the same order (torch rounds
    half to even as np.rint does), so the result is identical to the whole-array numpy passes."""
    offset_t, scale_t = torch.as_tensor(offset, dtype=torch.float64), torch.as_tensor(scale, dtype=torch.float64)
    limits = None
    if cast and np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        limits = (float(info.min), float(info.max))

    def finish(values: torch.Tensor) -> torch.Tensor:
        out = values.to(torch.float64).mul_(scale_t.to(values.device)).add_(offset_t.to(values.device))
        if limits is not None:
            out.round_().clamp_(*limits)
        return out

    return finish


# Voxels per slab when a decoded array is rescaled and cast after the post filter: the float64
# intermediate (2 MB) stays in L2. The whole 256^3 embryo array at once took ~0.12 s of its
# 0.77 s bf16 decode on this session's 2-core Xeon.
RESCALE_SLAB_VOXELS = 1 << 18


def _rescale_cast_by_slab(values: np.ndarray, finish: Callable[[torch.Tensor], torch.Tensor],
                          out_dtype: np.dtype) -> np.ndarray:
    """``finish`` (:func:`slab_rescale_cast`) of ``values`` ``[z, ...]`` a slab of z planes at a
    time, into a new ``out_dtype`` array: the same values as one whole-array call."""
    out = np.empty(values.shape, dtype=out_dtype)
    plane = max(1, math.prod(values.shape[1:]))
    step = max(1, RESCALE_SLAB_VOXELS // plane)
    for z0 in range(0, values.shape[0], step):
        out[z0:z0 + step] = finish(torch.from_numpy(values[z0:z0 + step])).numpy()
    return out


def available_memory() -> int | None:
    """Bytes a decode may still take: Linux's MemAvailable, else free physical pages, else None."""
    try:
        with builtins.open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


# Per output voxel a decode holds the network's float32 output and its float64 rescaling
# besides the result itself.
DECODE_WORK_BYTES = 4 + 8


def _check_decode_fits(shape: tuple[int, ...], dtype: np.dtype) -> None:
    needed = math.prod(shape) * (dtype.itemsize + DECODE_WORK_BYTES)
    available = available_memory()
    if available is not None and needed > available:
        nz, ny, nx = shape
        raise InputError(f"decoding {nx}x{ny}x{nz} {dtype.name} voxels needs {needed} bytes of memory, "
                         f"{available} are available: decode a region or a coarser grid "
                         f"(--region / --scale on the command line, region= / dims= in Python)")


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
        # Corrections that bound the error on the original grid (neuralvol.error_bound), or None.
        self.correction = None
        # The kernel applied to the network's output (neuralvol.postfilter), or None.
        self.post_filter = None
        self._nbytes: int | None = None
        self._auto_dtype: dict = {}   # (device type, recorded PSNR) -> the "auto" decode's MLP dtype
        self._block_cache: dict | None = None   # inside sampling(): the post filter's last block correction

    # -- metadata ---------------------------------------------------------------------
    dims = property(lambda self: self.info.dims)
    spacing = property(lambda self: self.info.spacing)
    origin = property(lambda self: self.info.origin)
    array_name = property(lambda self: self.info.array_name)
    time = property(lambda self: self.info.time)
    value_range = property(lambda self: self.info.value_range)
    n_components = property(lambda self: self.info.n_components)

    @property
    def component_names(self) -> list[str] | None:
        """Names of a multi-component field's components ("" where unnamed), else None."""
        return None if self.info.components is None else [n for n, _ in self.info.components]

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
        return self.dims if dims is None else validate_dims(dims)

    def grid_spacing(self, dims: Sequence[int]) -> tuple[float, float, float]:
        """Spacing of a ``dims`` grid spanning the same physical bounds."""
        dims = validate_dims(dims)
        return tuple(s * (n - 1) / (m - 1) if m > 1 and n > 1 else s
                     for s, n, m in zip(self.spacing, self.dims, dims))

    def __repr__(self) -> str:
        return (f"<NeuralVolume {self.array_name!r} dims={self.dims} dtype={self.dtype} "
                f"{self.nbytes} bytes ratio={self.ratio:.1f} psnr={self.training.psnr}>")

    # -- decoding ---------------------------------------------------------------------
    def decode(self, dims: Sequence[int] | None = None, region: Sequence[int] | None = None,
               dtype=None, device: str = "cpu",
               progress: Callable[[float], None] | None = None, compute: str = "float32") -> np.ndarray:
        """Decode the network on a grid over the original physical bounds.

        Parameters
        ----------
        dims : sequence of 3 ints, optional
            Grid resolution (x, y, z) spanning the original bounds (default: the original
            dims); see :meth:`output_dims` for a scale factor instead.
        region : sequence of 6 ints, optional
            Inclusive index extent ``x0, x1, y0, y1, z0, z1`` of that grid; only it is
            evaluated (default: the whole grid).
        dtype : numpy dtype, optional
            Output dtype (default: the original's; integers are rounded and clipped).
        device : str, default "cpu"
            Torch device to evaluate on ("cpu", "cuda").
        progress : callable, optional
            Called with the fraction done, 0..1, as the grid is evaluated.
        compute : {"float32", "auto", "bfloat16"}, default "float32"
            The MLP's arithmetic. "float32" decodes the values the encoder measured (the
            recorded PSNR, and :meth:`sample` at the grid's nodes). "bfloat16" runs the hidden
            layers in bfloat16: faster on CPUs with AMX (the kernel's AMX tiles: a Xeon's 256^3
            decode 0.77 s against 1.39 s) or whose AVX512-BF16 dot products outrun their fp32
            ones (an AMD Zen 4), within 0.01 dB of float32 on CT and most simulation models, 0.1-0.3 dB
            lower on smooth fields fitted above 35 dB (benchmarks/compute_precision.py). "auto"
            is bfloat16 only where it is measured faster here and to change the values by at
            most 2.5 % of the model's own error (see :func:`neuralvol.evaluate.mlp_dtype`). A file with a ``max_error`` bound decodes
            in float32 under "auto" and refuses "bfloat16" on its original grid.

        Returns
        -------
        numpy.ndarray
            Shape ``[z, y, x]`` of the region (or the grid); ``[z, y, x, C]`` for a
            field of ``C`` components. A file written with ``max_error`` is within that
            bound of the original here when ``dims`` is the original grid (any region);
            other ``dims`` are not bounded.

        Raises
        ------
        InputError
            If ``dims`` is not three positive integers or ``region`` is not a valid
            extent of that grid.

        Examples
        --------
        >>> vol.decode(dims=(128, 128, 186), region=(0, 63, 0, 127, 90, 90))  # doctest: +SKIP
        """
        out_dtype = self.dtype if dtype is None else np.dtype(dtype)
        return self._decode(dims, region, device, progress, out_dtype, compute, cast=True)

    def decode_values(self, dims: Sequence[int] | None = None, region: Sequence[int] | None = None,
                      device: str = "cpu", progress: Callable[[float], None] | None = None,
                      out_dtype=np.float64, compute: str = "float32") -> np.ndarray:
        """:meth:`decode` before the cast: float64 values (with the error-bound corrections
        on the original grid); ``out_dtype`` only sizes the memory check."""
        return self._decode(dims, region, device, progress, np.dtype(out_dtype), compute, cast=False)

    def _decode(self, dims, region, device, progress, out_dtype: np.dtype, compute: str, cast: bool) -> np.ndarray:
        """:meth:`decode` (``cast``) or :meth:`decode_values`. Without an error-bound correction
        the rescaling and the cast run slab by slab inside the grid evaluation
        (:func:`slab_rescale_cast`): on the 256^3 embryo the whole-array numpy passes took
        0.45 s of a 2.3 s decode (1 thread; np.clip alone 0.22 s)."""
        dims = self.dims if dims is None else validate_dims(dims)
        region = (0, dims[0] - 1, 0, dims[1] - 1, 0, dims[2] - 1) if region is None else validate_region(region, dims)
        shape = tuple(region[2 * a + 1] - region[2 * a] + 1 for a in (2, 1, 0))
        if self.info.components is not None:
            shape += (self.n_components,)
        _check_decode_fits(shape, np.dtype(out_dtype))
        axes = [unit_axis(n, region[2 * a], region[2 * a + 1]) for a, n in enumerate(dims)]
        offset, scale = self._normalisation()
        if np.all(scale == 0.0):
            values = np.broadcast_to(offset, shape).astype(np.float64)
            return cast_to_dtype(values, out_dtype) if cast else values
        self.network.to(device)
        bounded = self.correction is not None and tuple(dims) == tuple(self.dims)
        mlp_dtype = self.mlp_dtype(compute, device, bounded)
        if not bounded and self.post_filter is None:
            finish = (out_dtype if cast else np.dtype(np.float64), slab_rescale_cast(offset, scale, out_dtype, cast))
            return evaluate_grid(self.network, *axes, device=device, progress=progress, dtype=mlp_dtype,
                                 finish=finish).reshape(shape)
        out = self.field_grid(axes, device, progress, mlp_dtype)
        if not bounded:
            return _rescale_cast_by_slab(out, slab_rescale_cast(offset, scale, out_dtype, cast),
                                         out_dtype if cast else np.dtype(np.float64)).reshape(shape)
        values = offset + scale * out.astype(np.float64).reshape(shape)
        self.correction.apply(values, dims, region)
        if self.dtype.kind in "iu":  # the bound is on the rounded values, whatever the output dtype
            info = np.iinfo(self.dtype)
            values = np.clip(np.rint(values), info.min, info.max)
        return cast_to_dtype(values, out_dtype) if cast else values

    def field_grid(self, axes, device, progress, dtype: torch.dtype) -> np.ndarray:
        """The normalised field (before the value range and any max_error correction) on the
        tensor-product grid of ``axes`` (unit coordinates x, y, z in [0, 1]): a float array
        ``[nz, ny, nx]`` (``[nz, ny, nx, C]`` for C components) for the caller to rescale
        (``offset + scale * values``) and cast. It is the network's output, then the post
        filter if the file has one: where the axes are runs of the original grid's nodes
        (any region of it, or a brick's share of a bricked decode) from one evaluation of that
        block grown by the kernel's radius, elsewhere the grid's own values plus the
        correction interpolated from the original grid's nodes (see :mod:`neuralvol.postfilter`).
        ``progress``: a callable taking 0..1, or None; ``dtype``: the MLP's compute dtype
        (:meth:`mlp_dtype`). :meth:`decode` uses it, and so does a bricked volume
        (:class:`neuralvol.bricks.BrickedVolume`) for each brick's share of its grid."""
        if self.post_filter is None:
            return evaluate_grid(self.network, *axes, device=device, progress=progress, dtype=dtype)
        runs = [postfilter.node_run(u, n) for u, n in zip(axes, self.dims)]
        r = self.post_filter.radius
        if all(run is not None for run in runs):
            grown = [unit_axis(n, 0, n - 1)[postfilter.padded_indices(n, lo, hi, r)]
                     for (lo, hi), n in zip(runs, self.dims)]
            padded = evaluate_grid(self.network, *grown, device=device, progress=progress, dtype=dtype)
            return self.post_filter.apply_padded(padded)
        # progress: the grid's own values, then the original nodes around them (at most about
        # two per point and axis, plus the kernel's reach)
        grid = math.prod(len(u) for u in axes)
        nodes = math.prod(min(n, 2 * len(u) + 2 * r) for u, n in zip(axes, self.dims))
        first = grid / (grid + nodes)
        values = evaluate_grid(self.network, *axes, device=device, dtype=dtype,
                               progress=postfilter.progress_share(progress, 0.0, first))
        return self.post_filter.apply_grid(values, self._node_block_evaluator(device, dtype), axes, self.dims,
                                           postfilter.progress_share(progress, first, 1.0))

    def _node_block_evaluator(self, device, dtype: torch.dtype = torch.float32):
        """Original-grid node indices per axis (x, y, z) -> the network on their tensor product."""
        def evaluate(nodes: list[np.ndarray], progress: Callable[[float], None] | None = None) -> np.ndarray:
            return evaluate_grid(self.network, *(unit_axis(n, 0, n - 1)[i] for i, n in zip(nodes, self.dims)),
                                 device=device, dtype=dtype, progress=progress)
        return evaluate

    def field_points(self, unit: np.ndarray, device) -> np.ndarray:
        """The normalised field (before the value range) at points ``unit`` ``[N, 3]`` (x, y, z
        in [0, 1]^3): a float array ``[N]`` (``[N, C]`` for C components), the network's
        output, then the post filter's correction interpolated from the original grid's nodes
        if the file has one (inside :meth:`sampling`, reusing the last block of nodes).
        :meth:`sample` uses it, and so does a bricked volume
        (:class:`neuralvol.bricks.BrickedVolume`) for the points inside each brick."""
        values = evaluate_points(self.network, unit, device)
        if self.post_filter is None:
            return values
        scale = np.array([1.0 / (n - 1) if n > 1 else 0.0 for n in self.dims])
        return self.post_filter.apply_points(values, lambda nodes: evaluate_points(self.network, nodes * scale, device),
                                             unit, self.dims, self._node_block_evaluator(device), self._block_cache)

    @contextlib.contextmanager
    def sampling(self):
        """Inside, :meth:`sample` calls are one request: a filtered file keeps the post filter's
        correction on the last block of original nodes it evaluated and reuses it for points
        inside that block (the chunks of a randomly ordered point cloud each span about the
        whole volume); it is dropped on leaving. The probe filter wraps its chunks in it."""
        outer = self._block_cache
        if outer is None:
            self._block_cache = {}
        try:
            yield self
        finally:
            if outer is None:
                self._block_cache = None

    def mlp_dtype(self, compute: str = "auto", device: str = "cpu", bounded: bool = False) -> torch.dtype:
        """The MLP's compute dtype for a decode at ``compute`` (see :meth:`decode`) of the
        original grid (``bounded``: where a max_error correction applies) or not; the "auto"
        measurement is made once per device type and recorded PSNR, and kept."""
        requested = mlp_dtype(self.network, compute, device, None)   # checks the name; "auto" is fp32 here
        if bounded:   # the corrections were computed from float32 values
            if compute == "bfloat16":
                raise InputError("this file's max_error bound holds only for a float32 decode: "
                                 "use compute='float32' or 'auto'")
            return torch.float32
        if compute != "auto":
            return requested
        psnr = self.training.psnr if isinstance(self.training.psnr, (int, float)) else None
        key = (torch.device(device).type, psnr)
        if key not in self._auto_dtype:
            self._auto_dtype[key] = mlp_dtype(self.network, "auto", device, psnr)
        return self._auto_dtype[key]

    @property
    def max_error(self) -> float | None:
        """The guaranteed bound on |decoded - original| at the original grid points (decoded
        in the original dtype, any region), or None; other ``dims`` and :meth:`sample` are
        not bounded."""
        return None if self.correction is None else self.correction.max_error

    def sample(self, points, device: str = "cpu") -> np.ndarray:
        """Evaluate the field at arbitrary physical points.

        Parameters
        ----------
        points : array_like, shape (N, 3)
            Physical coordinates x, y, z (the volume's spacing and origin apply).
        device : str, default "cpu"
            Torch device to evaluate on.

        Returns
        -------
        numpy.ndarray
            ``N`` float64 values (``(N, C)`` for ``C`` components), NaN for points outside the volume's bounds (or not finite).

        Raises
        ------
        InputError
            If ``points`` does not have shape ``(N, 3)``.

        Examples
        --------
        >>> vol.sample([[10.0, -5.0, 2.5], [50.0, 40.0, 30.0]])  # doctest: +SKIP
        """
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
        trailing = () if self.info.components is None else (self.n_components,)
        values = np.full((pts.shape[0],) + trailing, np.nan)
        offset, scale = self._normalisation()
        if inside.any():
            if np.all(scale == 0.0):
                values[inside] = offset
            else:
                self.network.to(device)
                out = self.field_points(unit[inside], device).astype(np.float64)
                values[inside] = offset + scale * out.reshape((-1,) + trailing)
        return values

    def _normalisation(self):
        """(offset, scale) taking the network's [0, 1] output to values: floats for a scalar
        field, arrays of one entry per component for a multi-component one."""
        if self.info.components is not None:
            ranges = np.array([r for _, r in self.info.components], dtype=np.float64)
            return ranges[:, 0], ranges[:, 1] - ranges[:, 0]
        lo, hi = self.value_range
        return float(lo), float(hi) - float(lo)

    # -- files ------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write this volume alone to an `.nvc` file, atomically (temp file + rename).

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (replaced if it exists).

        Raises
        ------
        InputError
            If the folder does not exist, ``path`` is a folder, or it cannot be written.
        """
        save_models(path, [self])


def save_models(path: str | os.PathLike, volumes: Sequence[NeuralVolume]) -> None:
    """Write several volumes (time steps, fields, bricks) into one `.nvc` file, atomically.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write (replaced if it exists; a temporary file is renamed onto it).
    volumes : sequence of NeuralVolume
        Stored in this order; :func:`open_all` returns them in the same order.

    Raises
    ------
    InputError
        If ``volumes`` is empty, the folder does not exist, ``path`` is a folder, or it
        cannot be written.

    Examples
    --------
    >>> nv.save_models("series.nvc", [nv.compress(a, time=t) for t, a in steps])  # doctest: +SKIP
    """
    if not volumes:
        raise InputError("save_models needs at least one volume")
    atomic_io.write_atomic(path, schema.to_bytes(list(volumes)))



def open_all(path: str | os.PathLike) -> list[NeuralVolume]:
    """Read every model of an `.nvc` file (one per time step, field or brick).

    Reading parses the header and arrays only; no code from the file is executed.

    Parameters
    ----------
    path : str or os.PathLike
        An `.nvc` file (any format version this library reads).

    Returns
    -------
    list of NeuralVolume
        In the order they were saved.

    Raises
    ------
    InputError
        If the file does not exist, is a folder or cannot be read.
    FormatError
        If it is not an `.nvc` file, is truncated or corrupted (CRC mismatch), comes from
        a newer version, or its header describes an invalid model.
    """
    return schema.volumes_from_bytes(atomic_io.read_bytes(path), source=os.fspath(path))


def open(path: str | os.PathLike, model: int = 0) -> NeuralVolume:  # noqa: A001 - mirrors builtins.open on purpose
    """Read one model of an `.nvc` file.

    Parameters
    ----------
    path : str or os.PathLike
        An `.nvc` file.
    model : int, default 0
        Index of the model (negative counts from the end).

    Returns
    -------
    NeuralVolume
        Or, for a bricked file, a :class:`neuralvol.bricks.BrickedVolume` (the same API)
        of the whole volume (``open_all`` returns its bricks).

    Raises
    ------
    InputError
        If the file cannot be read, or it holds no model ``model``.
    FormatError
        If the file is not a valid `.nvc` file (see :func:`open_all`).

    Examples
    --------
    >>> nv.open("head.nvc").decode(region=(10, 40, 0, 63, 20, 50))  # doctest: +SKIP
    """
    from .bricks.volume import read_models  # a bricked file reads as one BrickedVolume
    volumes = read_models(path)
    if not -len(volumes) <= model < len(volumes):
        raise InputError(f"{os.fspath(path)!r} holds {len(volumes)} model(s); model {model} does not exist")
    return volumes[model]


def read_header(path: str | os.PathLike) -> dict:
    """Read the header of an `.nvc` file without building the networks.

    Parameters
    ----------
    path : str or os.PathLike
        An `.nvc` file.

    Returns
    -------
    dict
        The header (``format``, ``version``, ``library``, ``models`` entries; see
        docs/FORMAT.md), after verifying its checksum and decoding the sections.

    Raises
    ------
    InputError
        If the file does not exist, is a folder or cannot be read.
    FormatError
        If it is not an `.nvc` file, or is truncated or corrupted.
    """
    header, _ = container.decode(atomic_io.read_bytes(path), os.fspath(path))
    return header
