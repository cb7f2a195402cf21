"""Multi-resolution hash encoding with tiny-cuda-nn's exact grid maths.

Reproduces ``include/tiny-cuda-nn/encodings/grid.h`` (HashGrid, 3D, linear interpolation):

* level ``l`` has ``scale_l = 2^(l * log2(b)) * N0 - 1`` with
  ``b = exp(ln(N_max / N0) / (L - 1))`` and resolution ``res_l = ceil(scale_l) + 1``;
* a point ``x`` in [0, 1]^3 sits at ``pos = x * scale_l + 0.5``; ``floor(pos)`` is the cell,
  ``pos - floor(pos)`` the trilinear weights; corner ``c`` takes ``+1`` on axis ``d`` when
  bit ``d`` of ``c`` is set;
* a level holds ``min(res_l^3, T)`` entries rounded up to a multiple of 8; it is indexed
  densely (``x + y*res + z*res^2``) when ``res_l^3`` fits, otherwise by the coherent prime
  hash ``x*1 ^ y*2654435761 ^ z*805459861`` (uint32 arithmetic); both modulo the level size;
* levels are concatenated through an offset table; entries start uniform in [-1e-4, 1e-4].

The tables are stored feature-major (``[F, N]``) and gathered with one 1-D
``index_select`` per feature; the backward pass is one 1-D ``index_add_`` per feature.
On CPU this is 5-10x faster than autograd through ``F.embedding``, whose backward
(``embedding_dense_backward``) took ~650 ms of a step: 1.0-2.0 s -> 0.19-0.21 s per
training step at batch 2^16, L=16, F=2 (torch 2.13, 2 CPU cores). Scattered points on
CPU now go through the fused C++ kernel of :mod:`neuralvol.kernels.hashgrid` when it
builds; these PyTorch operations stay as the reference and the fallback on every device.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from ..kernels import hashgrid as point_kernel
from ..kernels import hashgrid_triton

PRIMES = (1, 2654435761, 805459861)
UINT32_MASK = 0xFFFFFFFF
INIT_RANGE = 1e-4


@dataclass(frozen=True)
class Interpolation:
    """How a level blends its lattice values at a point: ``taps`` lattice points per axis,
    from ``cell = floor(pos - origin)`` to ``cell + taps - 1``, weighted by uniform B-spline
    basis functions of ``t = (pos - origin) - cell`` (degree ``taps - 1``).

    "linear" is tiny-cuda-nn's trilinear interpolation, bit for bit. "quadratic" and "cubic"
    are smoother, and their error on a smooth field falls as h^3 and h^4 of the cell size h
    instead of h^2: at 100:1 and the same parameters and steps (2000, float fit, PyTorch
    operations) viscous fingers reached 47.35 / 51.00 / 51.28 dB (linear / quadratic /
    cubic) and carotid 34.40 / 35.02 / 35.60, for 1x / 2x / 4.2x the time per step (with
    the C++ kernel a quadratic step costs ~1.9x a trilinear one: batch 2^13, L=12, F=2,
    13.8 against 7.1 ms on one core).
    A non-linear level's dense lattice is ``ceil(scale) + taps`` points per axis, so that
    every tap of a point in [0, 1]^3 lands inside it (tiny-cuda-nn's ``ceil(scale) + 1``
    wraps the last corner at some scales; linear keeps that for exactness).
    """

    name: str
    taps: int
    origin: float  # subtracted from pos before the floor: 0 (linear, cubic) or 0.5 (quadratic)

    def locate(self, coord: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
        """``(floor, t)`` of coordinates in [0, 1] at a level of ``scale``: the first tap's lattice
        coordinate (float, integral) and the fraction the weights take. ``pos = coord * scale
        + 0.5`` as tiny-cuda-nn, in the same float32 operations on every path."""
        pos = coord * scale + 0.5
        if self.origin:
            pos = pos - self.origin
        floor = torch.floor(pos)
        return floor, pos - floor

    def weights(self, t: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The ``taps`` weights of lattice points ``cell .. cell + taps - 1`` at fraction ``t``."""
        if self.taps == 2:
            return 1.0 - t, t
        if self.taps == 3:
            s = 1.0 - t
            return 0.5 * s * s, 0.75 - (t - 0.5) * (t - 0.5), 0.5 * t * t
        s = 1.0 - t
        t2 = t * t
        return (s * s * s) * (1.0 / 6.0), (t2 * (3.0 * t - 6.0) + 4.0) * (1.0 / 6.0), \
            (((-3.0 * t + 3.0) * t + 3.0) * t + 1.0) * (1.0 / 6.0), (t2 * t) * (1.0 / 6.0)

    def dense_resolution(self, scale: float) -> int:
        return int(math.ceil(scale)) + (1 if self.taps == 2 else self.taps)


#: the one registry of interpolations; an encoding kind names one (see HashGridConfig)
INTERPOLATIONS = {i.name: i for i in (Interpolation("linear", 2, 0.0), Interpolation("quadratic", 3, 0.5),
                                      Interpolation("cubic", 4, 0.0))}


def _next_multiple(value: int, multiple: int) -> int:
    return ((value + multiple - 1) // multiple) * multiple


@dataclass(frozen=True)
class HashGridConfig:
    """Shape of a hash grid: L levels of F features, T entries per hashed level."""

    n_levels: int = 16
    n_features: int = 2
    table_size: int = 2 ** 14
    base_resolution: int = 8
    finest_resolution: int = 64

    kind = "hashgrid"
    #: the level blend (:data:`INTERPOLATIONS`); each other blend is its own encoding kind
    #: (a subclass), so the header's encoding type names it and older readers refuse it
    interpolation = "linear"

    @property
    def interpolator(self) -> Interpolation:
        return INTERPOLATIONS[self.interpolation]

    def to_dict(self) -> dict:
        return {"type": self.kind, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "HashGridConfig":
        return cls(**{k: int(d[k]) for k in ("n_levels", "n_features", "table_size",
                                               "base_resolution", "finest_resolution")})

    @property
    def log2_per_level_scale(self) -> float:
        if self.n_levels <= 1:
            return 0.0
        b = math.exp(math.log(self.finest_resolution / self.base_resolution) / (self.n_levels - 1))
        return math.log2(b)

    def level_scales(self) -> np.ndarray:
        """``scale_l`` per level, computed in float32 as tiny-cuda-nn does."""
        levels = np.arange(self.n_levels, dtype=np.float32)
        log2b = np.float32(self.log2_per_level_scale)
        return (np.exp2(levels * log2b) * np.float32(self.base_resolution) - np.float32(1.0)).astype(np.float32)

    def level_resolutions(self) -> list[int]:
        """Lattice points per axis of each level's dense layout (see :class:`Interpolation`)."""
        interp = self.interpolator
        return [interp.dense_resolution(float(s)) for s in self.level_scales()]

    def level_sizes(self) -> list[int]:
        """Entries per level: min(res^3, T), rounded up to a multiple of 8."""
        table = _next_multiple(self.table_size, 8)
        return [_next_multiple(min(r ** 3, table), 8) for r in self.level_resolutions()]

    def level_is_dense(self) -> list[bool]:
        return [r ** 3 <= size for r, size in zip(self.level_resolutions(), self.level_sizes())]

    def level_offsets(self) -> list[int]:
        offsets = [0]
        for size in self.level_sizes():
            offsets.append(offsets[-1] + size)
        return offsets

    @property
    def n_entries(self) -> int:
        return self.level_offsets()[-1]

    @property
    def n_params(self) -> int:
        return self.n_entries * self.n_features

    @property
    def n_output_dims(self) -> int:
        return self.n_levels * self.n_features


@dataclass(frozen=True)
class QuadraticHashGridConfig(HashGridConfig):
    """The hash grid with quadratic B-spline levels (27 lattice points a level; see :class:`Interpolation`)."""

    kind = "hashgrid_quadratic"
    interpolation = "quadratic"


@dataclass(frozen=True)
class CubicHashGridConfig(HashGridConfig):
    """The hash grid with cubic B-spline levels (64 lattice points a level; see :class:`Interpolation`)."""

    kind = "hashgrid_cubic"
    interpolation = "cubic"


def hashgrid_config(interpolation: str, *args, **kwargs) -> HashGridConfig:
    """The hash-grid configuration blending its levels by ``interpolation`` (a name in :data:`INTERPOLATIONS`)."""
    return HASHGRID_CONFIGS[interpolation](*args, **kwargs)


HASHGRID_CONFIGS = {c.interpolation: c for c in (HashGridConfig, QuadraticHashGridConfig, CubicHashGridConfig)}


def _gather(table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    out = table.new_empty((table.shape[0], index.shape[0]))
    for f in range(table.shape[0]):
        torch.index_select(table[f], 0, index, out=out[f])
    return out


class _Gather(torch.autograd.Function):
    """Feature-major gather ``table[:, index]`` whose backward is a 1-D index_add per feature."""

    @staticmethod
    def forward(ctx, table: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(index)
        ctx.n_entries = table.shape[1]
        return _gather(table, index)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (index,) = ctx.saved_tensors
        grad = grad_out.new_zeros((grad_out.shape[0], ctx.n_entries))
        for f in range(grad_out.shape[0]):
            grad[f].index_add_(0, index, grad_out[f])
        return grad, None


def _axis_terms(coord: torch.Tensor, scale: float, stride_or_prime: int, hashed: bool,
                interp: Interpolation = INTERPOLATIONS["linear"]):
    """Per-axis tap terms and weights for one level.

    Returns ``(terms, weights)``: the index contribution of each of the ``interp.taps``
    lattice points along this axis and their weights. Splitting the index into per-axis
    terms lets a regular grid compute them once per axis and combine by broadcasting.
    """
    floor, frac = interp.locate(coord, scale)
    return _tap_terms(floor, stride_or_prime, hashed, interp.taps), interp.weights(frac)


def _tap_terms(floor: torch.Tensor, multiplier, hashed: bool, taps: int) -> tuple[torch.Tensor, ...]:
    """Index terms ``(floor + k) * multiplier`` of the ``taps`` lattice points from ``floor``
    (a float tensor of integral values), int64, kept to 32 bits where the level is hashed;
    ``multiplier`` is a stride or prime, or a tensor of them broadcast against ``floor``."""
    terms = [floor.to(torch.int64).mul_(multiplier)]
    for _ in range(1, taps):
        terms.append(terms[-1] + multiplier)
    if hashed:
        for t in terms:
            t.bitwise_and_(UINT32_MASK)
    return tuple(terms)


def _interpolate_along(values: torch.Tensor, dim: int, rel: torch.Tensor, weights) -> torch.Tensor:
    """Interpolation of ``values`` along ``dim``: sample ``i`` blends lattice points ``rel[i]``
    to ``rel[i] + taps - 1`` with ``weights`` (one broadcastable tensor per tap; two taps go
    through ``torch.lerp`` with the upper weight, as the C++ kernel rounds)."""
    taps = len(weights)
    if dim == values.dim() - 1:
        # Along the innermost axis a gather through an expanded (copy-free) index is 8x
        # faster than index_select and 3x faster than advanced indexing (1 thread, measured).
        shape = (*values.shape[:-1], rel.shape[0])
        taken = [values.gather(dim, (rel + k if k else rel).expand(shape)) for k in range(taps)]
    else:
        taken = [values.index_select(dim, rel + k if k else rel) for k in range(taps)]
    if taps == 2:
        return torch.lerp(taken[0], taken[1], weights[1])
    out = taken[0] * weights[0]
    for k in range(1, taps):
        out.addcmul_(taken[k], weights[k])
    return out


class SeparableGrid:
    """A hash grid evaluated on the tensor-product grid ``uz x uy x ux``, level by level.

    A level's features on a regular grid are trilinear interpolations of its lattice values,
    and trilinear interpolation is separable: each level is gathered once on the lattice
    points the output grid touches (at most ``res_l^3``, far fewer than the output voxels for
    coarse levels), then interpolated along z, y and x in turn. The values equal
    :meth:`HashGridEncoding.encode_grid`'s per-voxel gather to float rounding (the same
    indices and 1-D weights; only the order of the multiply-adds differs).
    """

    def __init__(self, encoding: "HashGridEncoding", ux: torch.Tensor, uy: torch.Tensor, uz: torch.Tensor):
        self.encoding = encoding
        self.shape_xy = (len(uy), len(ux))
        self.interp = encoding.config.interpolator
        # The C++ level kernel (neuralvol.kernels) where it built; False forces PyTorch ops.
        self.use_kernel = True
        self.levels = []
        for level in range(encoding.config.n_levels):
            per_axis = []
            for u in (ux, uy, uz):
                floor, frac = self.interp.locate(u, encoding._scales[level])
                per_axis.append((floor.to(torch.int64), self.interp.weights(frac)))
            self.levels.append(per_axis)

    def _lattice_terms(self, level: int, cells: torch.Tensor, axis: int):
        """The lattice coordinates ``cells`` touch, their index terms, and each cell's position.

        Usually every coordinate from ``min(cells)`` to ``max(cells) + taps - 1``. When a level
        is much finer than the output (a coarse ``dims=``, a few voxels of a fine level) that
        span is far longer than the cells touched, and a hostile file's level of resolution
        25000 asked for 660 GB at 4^3 output: then only ``cells + k`` (k < taps) are kept, in
        order, so a cell's taps still sit one after another (no integer lies between them).
        """
        enc = self.encoding
        res, dense = enc._res[level], enc._dense[level]
        taps = self.interp.taps
        lo, hi = int(cells.min()), int(cells.max())
        if hi - lo + taps <= taps * cells.numel():
            lattice = torch.arange(lo, hi + taps, dtype=torch.int64, device=cells.device)
            rel = cells - lo
        else:
            lattice = torch.unique(torch.cat([cells + k for k in range(taps)]))  # sorted
            rel = torch.searchsorted(lattice, cells)
        if dense:
            terms = lattice * (1, res, res * res)[axis]
        else:
            terms = (lattice * PRIMES[axis]) & UINT32_MASK
        return terms, rel

    def _level_axes(self, level: int, z0: int, z1: int, y0: int = 0, y1: int | None = None):
        """Per axis (x, y, z) of output planes ``z0..z1-1``, rows ``y0..y1-1``: the level's
        lattice index terms, each output coordinate's first lattice position, and its
        weights (one tensor per tap)."""
        (cx, wx), (cy, wy), (cz, wz) = self.levels[level]
        cz, wz = cz[z0:z1], tuple(w[z0:z1] for w in wz)
        cy, wy = cy[y0:y1], tuple(w[y0:y1] for w in wy)
        return tuple((*self._lattice_terms(level, c, axis), w) for axis, (c, w) in enumerate(((cx, wx), (cy, wy), (cz, wz))))

    def planes_usable(self) -> bool:
        """Whether :meth:`level_planes` can run (the C++ kernel, a CPU float32 table)."""
        return self.use_kernel and point_kernel.grid_usable(self.encoding.table)

    def level_planes(self, z0: int, z1: int, y0: int = 0, y1: int | None = None,
                     workspace: dict | None = None) -> list:
        """For the fused grid + MLP decode (:func:`neuralvol.kernels.mlp.grid_forward`) of output
        planes ``z0..z1-1``, rows ``y0..y1-1``: per level, its lattice blended along x and y
        onto those rows (``[F, nzl, ny, nx]``, the C++ kernel's intermediate) with the z
        positions and weights that finish it. Needs :meth:`planes_usable`. With a
        ``workspace`` (a dict kept across calls) the levels' planes reuse its buffers, so a
        later call overwrites what an earlier one returned: block after block of the 256^3
        embryo decode (2 threads, this session's Xeon) the planes alone took 0.155 s instead
        of 0.29 s in fresh memory, the whole bf16 grid evaluation ~0.59 s instead of ~0.61."""
        enc = self.encoding
        table = enc.table.detach()
        planes = []
        for level in range(enc.config.n_levels):
            axes = self._level_axes(level, z0, z1, y0, y1)
            blended = point_kernel.grid_level_planes(table, enc._dense[level], enc._sizes[level], enc._offsets[level],
                                                     axes, workspace, level)
            planes.append((blended, axes[2][1], axes[2][2]))
        return planes

    def features(self, z0: int, z1: int, out: torch.Tensor | None = None) -> torch.Tensor:
        """Feature-major encodings ``[F * L, K]`` of output planes ``z0..z1-1`` (K = planes * ny * nx)."""
        enc = self.encoding
        table = enc.table.detach()  # decoding only: no autograd through the in-place writes
        n_feat, n_levels = enc.config.n_features, enc.config.n_levels
        taps = self.interp.taps
        ny, nx = self.shape_xy
        nz = z1 - z0
        if out is None:
            out = table.new_empty((n_feat * n_levels, nz * ny * nx))
        out_levels = out.view(n_feat, n_levels, nz, ny, nx)
        for level in range(n_levels):
            (tx, rx, wx), (ty, ry, wy), (tz, rz, wz) = axes = self._level_axes(level, z0, z1)
            if self.use_kernel and point_kernel.grid_level_into(
                    out, level, n_levels, table, enc._dense[level], enc._sizes[level], enc._offsets[level],
                    axes):
                continue
            if enc._dense[level]:
                index = (tx[None, None, :] + ty[None, :, None]) + tz[:, None, None]
            else:
                index = (tx[None, None, :] ^ ty[None, :, None]) ^ tz[:, None, None]
            index = index.remainder_(enc._sizes[level]).add_(enc._offsets[level])
            lattice = table.index_select(1, index.reshape(-1)).view(n_feat, *index.shape)
            # x and y first, on the lattice's few z planes; z last, into the output: along
            # the outermost axis each output plane is one blend of whole lattice planes.
            values = _interpolate_along(lattice, 3, rx, wx)
            values = _interpolate_along(values, 2, ry, tuple(w.view(-1, 1) for w in wy))
            if taps == 2:  # torch.lerp, as the C++ kernel rounds
                for i, (r, w) in enumerate(zip(rz.tolist(), wz[1].tolist())):
                    torch.lerp(values[:, r], values[:, r + 1], w, out=out_levels[:, level, i])
                continue
            weights_z = [w.tolist() for w in wz]
            for i, r in enumerate(rz.tolist()):
                plane = out_levels[:, level, i]
                torch.mul(values[:, r], weights_z[0][i], out=plane)
                for k in range(1, taps):
                    plane.add_(values[:, r + k], alpha=weights_z[k][i])
        return out


class HashGridEncoding(torch.nn.Module):
    """Encodes points in [0, 1]^3 to ``L * F`` features (level-major, like tiny-cuda-nn)."""

    def __init__(self, config: HashGridConfig, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        table = torch.empty((config.n_features, config.n_entries), dtype=torch.float32)
        table.uniform_(-INIT_RANGE, INIT_RANGE, generator=generator)
        self.table = torch.nn.Parameter(table)
        self._scales = [float(s) for s in config.level_scales()]
        self._res = config.level_resolutions()
        self._sizes = config.level_sizes()
        self._dense = config.level_is_dense()
        self._offsets = config.level_offsets()
        self._kernel_levels = {}

    @property
    def n_output_dims(self) -> int:
        return self.config.n_output_dims

    def level_axis_terms(self, level: int, axes: tuple[torch.Tensor, torch.Tensor, torch.Tensor]):
        """Per-axis (terms, weights) for one level; axes are coordinates in [0, 1]."""
        res, dense = self._res[level], self._dense[level]
        multipliers = (1, res, res * res) if dense else PRIMES
        interp = self.config.interpolator
        return [(_axis_terms(a, self._scales[level], m, not dense, interp)) for a, m in zip(axes, multipliers)]

    def point_axis_terms(self, level: int, coords_t: torch.Tensor):
        """:meth:`level_axis_terms` for scattered points given as one ``[3, N]`` tensor.

        The three axes go through each operation together (one op instead of three).
        """
        res, dense = self._res[level], self._dense[level]
        interp = self.config.interpolator
        mult = torch.tensor((1, res, res * res) if dense else PRIMES, dtype=torch.int64,
                            device=coords_t.device).view(3, 1)
        floor, frac = interp.locate(coords_t, self._scales[level])
        terms = _tap_terms(floor, mult, not dense, interp.taps)
        weights = interp.weights(frac)
        return [(tuple(t[a] for t in terms), tuple(w[a] for w in weights)) for a in range(3)]

    @property
    def n_corners(self) -> int:
        """Lattice points a point reads per level: 8 for trilinear, taps^3 in general."""
        return self.config.interpolator.taps ** 3

    def corner_indices_weights(self, axes, shape: tuple[int, ...], coords_t: torch.Tensor | None = None):
        """Table indices and weights ``[L, C, *shape]`` (C = :attr:`n_corners`) for points given per axis.

        For scattered points the three axes are 1-D tensors of equal length and
        ``shape == (N,)``. For a regular grid they are broadcastable views
        (``x[None, None, :]``, ``y[None, :, None]``, ``z[:, None, None]``) and
        ``shape == (nz, ny, nx)``: each per-axis term is then computed once per axis.
        Corner ``bx + taps * by + taps^2 * bz`` takes tap ``bx`` along x, ``by`` along y and
        ``bz`` along z. Results are written in place, x-y pairs first, so a trilinear level
        costs 12 full-size operations for the indices and 12 for the weights.
        """
        n_levels = self.config.n_levels
        taps = self.config.interpolator.taps
        device = axes[0].device
        index = torch.empty((n_levels, self.n_corners, *shape), dtype=torch.int64, device=device)
        weight = torch.empty((n_levels, self.n_corners, *shape), dtype=axes[0].dtype, device=device)
        for level in range(n_levels):
            if coords_t is not None:
                (tx, wx), (ty, wy), (tz, wz) = self.point_axis_terms(level, coords_t)
            else:
                (tx, wx), (ty, wy), (tz, wz) = self.level_axis_terms(level, axes)
            combine = torch.add if self._dense[level] else torch.bitwise_xor
            for by in range(taps):
                for bx in range(taps):
                    txy = combine(tx[bx], ty[by])
                    wxy = wx[bx] * wy[by]
                    for bz in range(taps):
                        corner = bx + taps * by + taps * taps * bz
                        combine(txy, tz[bz], out=index[level, corner])
                        torch.mul(wxy, wz[bz], out=weight[level, corner])
            torch.remainder(index[level], self._sizes[level], out=index[level])
            index[level] += self._offsets[level]
        return index, weight

    def features_from_corners(self, index: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        """Interpolated features from ``[L, C, K]`` corner indices and weights.

        Returns ``[F * L, K]``, feature-major (row ``f * L + l``) with the batch innermost:
        the layout the gather produces, so no copy is made; :meth:`forward` gives the
        level-major ``[K, L * F]`` view.
        """
        n_levels, n_corners, k = index.shape
        flat = index.reshape(-1)
        if torch.is_grad_enabled() and self.table.requires_grad:
            feats = _Gather.apply(self.table, flat)
        else:
            feats = _gather(self.table, flat)
        feats = feats.reshape(-1, n_levels, n_corners, k)
        return (feats * weight.unsqueeze(0)).sum(dim=2).reshape(-1, k)  # [F*L, K]

    def encode_grid(self, axes, shape) -> torch.Tensor:
        """Encode a tensor-product grid given as broadcastable per-axis views -> ``[F * L, K]``.

        The fast path: per-axis index terms are computed once per axis and broadcast.
        """
        index, weight = self.corner_indices_weights(axes, shape)
        k = 1
        for n in shape:
            k *= n
        c = index.shape[1]
        return self.features_from_corners(index.reshape(index.shape[0], c, k), weight.reshape(weight.shape[0], c, k))

    def separable_grid(self, ux: torch.Tensor, uy: torch.Tensor, uz: torch.Tensor) -> SeparableGrid:
        """The fast evaluator of the tensor-product grid ``uz x uy x ux`` (1-D coordinate tensors)."""
        return SeparableGrid(self, ux, uy, uz)

    def encode_feature_major(self, x: torch.Tensor) -> torch.Tensor:
        """Encode points ``[N, 3]`` to ``[F * L, N]`` (the fast layout the MLP consumes).

        On CPU this is the fused C++ kernel of :mod:`neuralvol.kernels.hashgrid` when it
        built, on CUDA the Triton kernels of :mod:`neuralvol.kernels.hashgrid_triton` when
        Triton is importable, else :meth:`encode_feature_major_pytorch`; all give the same
        values to a few ulp (the order of the eight corner products in the sum differs).
        """
        if point_kernel.usable(self.table, x):
            return point_kernel.encode_points(self, x)
        if self.triton_usable(x):
            return hashgrid_triton.encode_points(self, x)
        return self.encode_feature_major_pytorch(x)

    def triton_usable(self, x: torch.Tensor) -> bool:
        """Whether the Triton kernels can encode on ``x``'s device (CUDA; trilinear levels only)."""
        return self.config.interpolator.taps == 2 and hashgrid_triton.usable(self.table, x)

    def kernel_levels(self, device: torch.device | str = "cpu") -> "point_kernel.LevelTable":
        """The per-level constants of the compiled kernels on ``device`` (made once per device)."""
        device = torch.device(device)
        cached = self._kernel_levels.get(device)
        if cached is None:
            cached = self._kernel_levels[device] = point_kernel.LevelTable(self, device)
        return cached

    def encode_feature_major_pytorch(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`encode_feature_major` in PyTorch operations only (every device; the reference)."""
        coords_t = x.t().contiguous()
        index, weight = self.corner_indices_weights(tuple(coords_t), (x.shape[0],), coords_t=coords_t)
        return self.features_from_corners(index, weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode points ``x`` of shape ``[N, 3]`` (x, y, z in [0, 1]) to ``[N, L * F]``."""
        cfg = self.config
        fm = self.encode_feature_major(x).view(cfg.n_features, cfg.n_levels, -1)
        return fm.permute(2, 1, 0).reshape(x.shape[0], -1)

    def feature_major_order(self) -> torch.Tensor:
        """Column permutation taking level-major MLP inputs (``l * F + f``) to feature-major."""
        cfg = self.config
        return torch.arange(cfg.n_output_dims).view(cfg.n_levels, cfg.n_features).t().reshape(-1)
