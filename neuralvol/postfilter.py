"""The post filter: a 3x3x3 or 5x5x5 kernel, fitted at encode time, applied to the network's output.

A coordinate network's error is not white. On smooth simulation fields most of it is a
fine ripple that the hash grid's levels leave behind, which a small linear filter removes:
least-squares 3x3x3 kernels fitted to the decode of 60 s fits gained (dB) viscous fingers
100:1 +1.22, hydrogen 400:1 +1.16, nucleon 200:1 +1.07, Marschner-Lobb 100:1 +0.37,
isabel 400:1 +0.18, carotid 100:1 +0.17, neghip 800:1 +0.13, walnut 200:1 +0.10, headsq
400:1 +0.06, embryo 100:1 0.00. A 5x5x5 kernel gained +0.1 to +0.9 dB more on the smooth
fields (viscous fingers 100:1 +2.17 in all, hydrogen 400:1 +1.85), for ~20 more header
bytes and 125 network evaluations per point instead of 27 off the original grid. Video
codecs' adaptive loop filter is the same idea.

The kernel of radius r (1: 3x3x3, 2: 5x5x5) is symmetric in each axis, so it has
``(r + 1)^3`` weights (8 or 27), one per class of offsets ``(|dz|, |dy|, |dx|)`` in
{0..r}^3 (class ``(|dz| (r + 1) + |dy|) (r + 1) + |dx|``; for r = 1, ``4 |dz| + 2 |dy| + |dx|``),
plus a constant; all are integers times ``2^-shift``. The radius is the weight count's.

It acts on the original grid. At an original node i the filtered value is

    K f(i) = offset + sum over d in {-r..r}^3 of weight[class(d)] * f(clamp(i + d))

with f the network and clamp to the grid (the edge repeated). Anywhere else (other
resolutions, scattered points) the value at p is the network's own plus the correction
``K f - f`` interpolated trilinearly from the original nodes around p:

    value(p) = f(p) + sum over the 8 nodes c around p of lerp_c(p) * (K f(c) - f(c))

so at the nodes both agree, and away from them the network's detail is kept. On the
original grid (any region) that is one network evaluation of the region grown by r voxels,
then the kernel; on another grid, one evaluation of that grid and one of the original
nodes it touches with their neighbourhoods (an upsampled or 2x-downsampled grid: about one
original-resolution decode of the region more); at scattered points, the distinct nodes
their corners' kernels reach (at most (2r + 2)^3 per isolated point, shared where points
cluster), or, where that costs more, one block of nodes around them all. Defining the
field off the grid as the kernel applied to shifted network evaluations instead cost
(2r + 1)^3 evaluations per point: 27 or 125 times a plain decode.

Fitted in :func:`fit_kernels` on the quantised network's decode of the original grid
(normal equations accumulated slab by slab, both radii from one pass), and
:func:`best_kernel` keeps the one that gains most over what its header bytes cost, if any.
Scalar fields only.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from .kernels import postfilter as postfilter_kernel

# Kernel radii and their weight counts: (r + 1)^3 offset classes.
RADII = (1, 2)
CLASS_COUNTS = {(r + 1) ** 3: r for r in RADII}
# Weights are stored as integers times 2^-shift, with the coarsest shift in this range that
# costs at most MAX_SHIFT_LOSS of the filter's own gain in MSE.
SHIFTS = range(6, 25)
MAX_SHIFT_LOSS = 0.002
# Coarser roundings offered besides (see best_kernel): a 5x5x5 kernel fitted at the end can
# come out longer than the bytes held back for it when QAT settled (carotid 100:1: 53 bytes
# where 44 were held, so the file kept the 3x3x3 kernel: +0.18 dB where the 5x5x5 gave +0.27).
COARSER_SHIFTS = 6
# Voxels per slab when applying a kernel in torch or interpolating its correction.
SLAB_VOXELS = 1 << 18
# Voxels per slab when accumulating the normal equations: their 28 float64 class sums a voxel
# (14.7 MB at 2^16) stay under glibc's largest dynamic mmap threshold (32 MiB), so from the
# second slab on their memory comes from the heap instead of fresh mappings to page-fault.
# At 2^18 (58 MB) a 130^3 brick of embryo spent 1.6-2.1 s in fit_kernels inside compress (0.5 s
# in a fresh process once warm); at 2^16, 0.31-0.43 s.
FIT_SLAB_VOXELS = 1 << 16
# Voxels the normal equations are accumulated over, at most: every k-th slab of a larger
# volume (28 unknowns). All 16.8 M voxels of a 256^3 volume took 3 s on one thread for the
# 3x3x3 kernel alone, 4x its decode at 400:1; 2^22 of them for both kernels 2.7 s on two,
# 2^21 1.7 s on one (embryo 100:1; either gains 0.00 dB there).
FIT_MAX_VOXELS = 1 << 21
# Points per chunk in apply_points: a chunk's distinct corner nodes times the kernel's taps
# are indexed at once (4096 * 8 * 125 int64, 33 MB, for the 5x5x5 kernel).
POINT_CHUNK = 4096
# Scattered points take their correction from one block of original nodes (the smallest
# around them all, grown by the radius) where that block, at BLOCK_EVALUATION_COST of a
# point's cost per node, costs less than the up to (2r + 2)^3 nodes each point's corners
# reach, and has at most MAX_BLOCK_VOXELS (float32 copies of it are made). Richtmyer-Meshkov
# 256^3 at 100:1 with a 3x3x3 kernel, two threads: 100k random points took 4.87 s node by node
# (0.76 us per node) and 1.94 s from the whole grid (0.12 us per node), 1M points 2.87 s;
# 10k points 0.46 s node by node, where the grid would take ~2 s.
BLOCK_EVALUATION_COST = 0.2
MAX_BLOCK_VOXELS = 1 << 25
# Kept only if it gains this much more (dB) than its header bytes are estimated to cost.
MIN_GAIN_DB = 0.01
# dB a file loses per halving of its bytes, for the cost of the filter's bytes: the steepest
# of the measured rate-distortion slopes at 400-800:1 (nucleon 6.8, neghip 3.9 dB per
# doubling; carotid 2.2, head_mr_small 1.7), so a tiny file keeps the filter only for a
# clear gain (neghip 800:1's 351-byte file: +0.13 dB against ~0.3 dB for ~20 bytes).
RATE_SLOPE_DB = 6.0
MIN_VOXELS = 64
MAX_INTEGER = 1 << 40


@dataclass(frozen=True)
class PostFilter:
    """The kernel: ``weights[c] * 2^-shift`` for offset class c, ``offset * 2^-shift`` added;
    8 weights make a 3x3x3 kernel, 27 a 5x5x5 one."""

    shift: int
    weights: tuple[int, ...]
    offset: int

    def __post_init__(self):
        if (not isinstance(self.shift, int) or isinstance(self.shift, bool) or not 0 <= self.shift <= 60
                or len(self.weights) not in CLASS_COUNTS
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in (*self.weights, self.offset))):
            raise ValueError("a post filter needs a shift of 0-60, 8 or 27 integer weights and an integer offset")
        if any(abs(v) > MAX_INTEGER for v in (*self.weights, self.offset)):
            raise ValueError(f"a post filter's integers are at most 2^{MAX_INTEGER.bit_length() - 1} in magnitude")

    @property
    def scale(self) -> float:
        return 2.0 ** -self.shift

    @property
    def radius(self) -> int:
        """1 for the 3x3x3 kernel, 2 for the 5x5x5 one."""
        return CLASS_COUNTS[len(self.weights)]

    @property
    def size(self) -> str:
        """``"3x3x3"`` or ``"5x5x5"``."""
        n = 2 * self.radius + 1
        return f"{n}x{n}x{n}"

    def header_bytes(self) -> int:
        """Bytes the filter adds to a compact header (its presence bit fits the mask's byte)."""
        def varint(v: int) -> int:
            return max(1, (v.bit_length() + 6) // 7)
        zigzag = [2 * v if v >= 0 else -2 * v - 1 for v in (*self.weights, self.offset)]
        return varint(self.shift) + varint(len(self.weights)) + sum(varint(v) for v in zigzag)

    def to_dict(self) -> dict:
        return {"shift": self.shift, "weights": list(self.weights), "offset": self.offset}

    @classmethod
    def from_dict(cls, d: dict) -> "PostFilter":
        """ValueError/TypeError/KeyError when malformed."""
        if not isinstance(d, dict) or set(d) != {"shift", "weights", "offset"} or not isinstance(d["weights"], list):
            raise ValueError(f"a post filter has exactly shift, weights and offset, got {str(d)[:60]}")
        return cls(shift=d["shift"], weights=tuple(d["weights"]), offset=d["offset"])

    def taps(self) -> list[tuple[tuple[int, int, int], float]]:
        """The ``(2r + 1)^3`` ``((dx, dy, dz), weight)`` pairs of the kernel (zero weights left out)."""
        r = self.radius
        out = []
        for dz in range(-r, r + 1):
            for dy in range(-r, r + 1):
                for dx in range(-r, r + 1):
                    w = self.weights[offset_class(dx, dy, dz, r)]
                    if w:
                        out.append(((dx, dy, dz), w * self.scale))
        return out

    def apply_padded(self, padded: np.ndarray) -> np.ndarray:
        """The filtered values ``[z, y, x]`` (float32) of a region from its network values grown
        by r voxels on every side (``[z + 2r, y + 2r, x + 2r]``, the edge repeated at the grid's
        border). Float32, through the C++ kernel (:mod:`neuralvol.kernels.postfilter`) where it
        is built, else in torch slab by slab: a 256^3 region took 0.07 s (3x3x3) on the 2-core
        EPYC, 0.68 s as float64 numpy passes (its values differ by < 3e-7 of the range)."""
        r = self.radius
        weights = [float(w) * self.scale for w in self.weights]
        if postfilter_kernel.usable(r):
            return postfilter_kernel.apply_padded(padded, r, weights, self.offset * self.scale)
        nz, ny, nx = (n - 2 * r for n in padded.shape)
        src = torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32))
        out = torch.empty((nz, ny, nx), dtype=torch.float32)
        slab = max(1, SLAB_VOXELS // max(1, ny * nx))
        for z0 in range(0, nz, slab):
            z1 = min(nz, z0 + slab)
            acc = out[z0:z1].fill_(self.offset * self.scale)
            for c, part in enumerate(class_sums(src[z0:z1 + 2 * r], r)):
                if weights[c]:
                    acc.add_(part, alpha=weights[c])
        return out.numpy()

    def apply_grid(self, values: np.ndarray, evaluate_nodes: Callable[..., np.ndarray],
                   axes: list[np.ndarray], dims: tuple[int, int, int],
                   progress: Callable[[float], None] | None = None) -> np.ndarray:
        """The filtered field (float32) on the tensor-product grid of ``axes`` (x, y, z in
        [0, 1]), from the network's ``values`` there (``[nz, ny, nx]``) and ``evaluate_nodes``
        (original-grid node indices per axis, x, y, z -> the network's values on their tensor
        product): the values plus the correction interpolated from the original grid (see the
        module's docstring). Only the nodes next to the grid's points, and their kernel's
        neighbourhoods, are evaluated: as one block where those are contiguous (an upsampled
        or 2x-downsampled grid), else slab by slab. ``evaluate_nodes(nodes, progress)`` reports
        its own fraction done to ``progress``; ``progress`` here gets the fraction of all the
        node evaluations done."""
        r = self.radius
        cells = [_cells(u, n) for u, n in zip(axes, dims)]
        needed = [np.unique(np.concatenate([c[0], c[1]])) for c in cells]
        near = [np.unique(np.clip(nd[:, None] + np.arange(-r, r + 1), 0, n - 1)) for nd, n in zip(needed, dims)]
        if all(len(nb) == nb[-1] - nb[0] + 1 for nb in near):
            block = self._block_correction(evaluate_nodes, [nd[0] for nd in needed], [nd[-1] for nd in needed], dims,
                                           progress)
            correction = block[np.ix_(*(nd - nd[0] for nd in needed[::-1]))]
        else:
            correction = self._sparse_correction(evaluate_nodes, needed, near, dims, progress)
        corr = torch.from_numpy(np.ascontiguousarray(correction, dtype=np.float32))
        for axis, (i0, i1, t) in ((2, cells[0]), (1, cells[1])):   # separable: x, then y
            shape = [1, 1, 1]
            shape[axis] = -1
            t = torch.from_numpy(t.astype(np.float32)).reshape(shape)
            nd = needed[2 - axis]
            corr = (corr.index_select(axis, torch.from_numpy(np.searchsorted(nd, i0))) * (1.0 - t)
                    + corr.index_select(axis, torch.from_numpy(np.searchsorted(nd, i1))) * t)
        out = torch.from_numpy(np.array(values, dtype=np.float32))
        i0, i1, t = cells[2]
        p0, p1 = np.searchsorted(needed[2], i0), np.searchsorted(needed[2], i1)
        slab = max(1, SLAB_VOXELS // max(1, out.shape[1] * out.shape[2]))
        for z0 in range(0, out.shape[0], slab):   # then z, added to the values slab by slab
            z1 = min(out.shape[0], z0 + slab)
            tz = torch.from_numpy(t[z0:z1].astype(np.float32)).reshape(-1, 1, 1)
            out[z0:z1] += (corr.index_select(0, torch.from_numpy(p0[z0:z1])) * (1.0 - tz)
                           + corr.index_select(0, torch.from_numpy(p1[z0:z1])) * tz)
        return out.numpy()

    def _sparse_correction(self, evaluate_nodes, needed, near, dims, progress=None) -> np.ndarray:
        """``K f - f`` at the tensor product of the ``needed`` nodes per axis (x, y, z), from
        the network on the tensor product of ``near`` (their neighbourhoods), slab by slab."""
        r = self.radius
        # per axis and |k| = 0..r: where the needed nodes shifted by -k and +k (clamped) are in `near`
        picks = [[(np.searchsorted(nb, np.clip(nd - k, 0, n - 1)), np.searchsorted(nb, np.clip(nd + k, 0, n - 1)))
                  for k in range(r + 1)] for nd, nb, n in zip(needed, near, dims)]
        correction = np.empty((len(needed[2]), len(needed[1]), len(needed[0])), dtype=np.float64)
        slab = max(1, SLAB_VOXELS // max(1, len(near[1]) * len(near[0])))
        for z0 in range(0, len(needed[2]), slab):
            z1 = min(len(needed[2]), z0 + slab)
            rows = [(lo[z0:z1], hi[z0:z1]) for lo, hi in picks[2]]
            first = min(int(lo.min()) for lo, _ in rows)
            last = max(int(hi.max()) for _, hi in rows)
            done = progress_share(progress, z0 / len(needed[2]), z1 / len(needed[2]))
            block = np.asarray(evaluate_nodes([near[0], near[1], near[2][first:last + 1]], done), dtype=np.float64)
            rows = [(lo - first, hi - first) for lo, hi in rows]
            correction[z0:z1] = self._correction_at(block, [picks[0], picks[1], rows])
        return correction

    def apply_points(self, values: np.ndarray, evaluate_nodes: Callable[[np.ndarray], np.ndarray],
                     points: np.ndarray, dims: tuple[int, int, int],
                     evaluate_block: Callable[..., np.ndarray] | None = None,
                     block_cache: dict | None = None) -> np.ndarray:
        """The filtered field at ``points`` ``[N, 3]`` (x, y, z in [0, 1]) from the network's
        ``values`` there (``[N]``) and ``evaluate_nodes`` (original-grid node indices ``[M, 3]``,
        x, y, z -> the network's values ``[M]``): each chunk of points evaluates the distinct
        nodes its corners' kernels reach, at most (2r + 2)^3 + 1 evaluations per point. Where
        that is more than the block of original nodes around all the points costs through
        ``evaluate_block`` (node indices per axis, x, y, z, and a progress callback or None ->
        the network's values on their tensor product, ``[z, y, x]``; see
        :data:`BLOCK_EVALUATION_COST`), the correction is computed on that block instead.
        ``block_cache`` (a dict kept across the calls of one request) keeps the last block's
        correction: a later call whose block lies inside it takes its slice (the correction at
        a node does not depend on the block), so the chunks of a randomly ordered point cloud
        evaluate the network on the block once, not once per chunk."""
        r = self.radius
        if evaluate_block is not None and len(points):
            cells = [_cells(points[:, a], n) for a, n in enumerate(dims)]
            lows = [int(c[0].min()) for c in cells]
            highs = [int(c[1].max()) for c in cells]
            block = math.prod(h - lo + 1 + 2 * r for lo, h in zip(lows, highs))
            if (block <= MAX_BLOCK_VOXELS
                    and BLOCK_EVALUATION_COST * block < len(points) * (2 * r + 2) ** 3):
                return self._apply_points_from_block(values, evaluate_block, cells, lows, highs, dims, block_cache)
        nx, ny, nz = dims
        out = np.asarray(values, dtype=np.float64).copy()
        taps = self.taps()
        for start in range(0, points.shape[0], POINT_CHUNK):
            chunk = points[start:start + POINT_CHUNK]
            cells = [_cells(chunk[:, a], n) for a, n in enumerate(dims)]
            corners, weights = [], []
            for cz in (0, 1):
                for cy in (0, 1):
                    for cx in (0, 1):
                        idx = [cells[a][c] for a, c in enumerate((cx, cy, cz))]
                        corners.append((idx[2] * ny + idx[1]) * nx + idx[0])
                        w = 1.0
                        for a, c in enumerate((cx, cy, cz)):
                            w = w * (cells[a][2] if c else 1.0 - cells[a][2])
                        weights.append(w)
            needed, where = np.unique(np.stack(corners), return_inverse=True)
            where = where.reshape(8, -1)
            node = np.stack([needed % nx, needed // nx % ny, needed // (nx * ny)], axis=1)
            shifted = [((np.clip(node[:, 2] + d[2], 0, nz - 1) * ny + np.clip(node[:, 1] + d[1], 0, ny - 1)) * nx
                        + np.clip(node[:, 0] + d[0], 0, nx - 1)) for d, _ in taps]
            distinct, back = np.unique(np.concatenate([needed] + shifted), return_inverse=True)
            f = np.asarray(evaluate_nodes(np.stack([distinct % nx, distinct // nx % ny, distinct // (nx * ny)],
                                                   axis=1)), dtype=np.float64)[back].reshape(len(taps) + 1, -1)
            correction = np.full(len(needed), self.offset * self.scale) - f[0]
            for k, (_, w) in enumerate(taps):
                correction += w * f[k + 1]
            out[start:start + len(chunk)] += sum(w * correction[where[c]] for c, w in enumerate(weights))
        return out

    def _block_correction(self, evaluate_block, lows, highs, dims, progress=None) -> np.ndarray:
        """``K f - f`` (float32, ``[z, y, x]``) at the original nodes ``lows..highs`` per axis
        (x, y, z), from one evaluation of that block grown by the radius (the edge repeated)."""
        r = self.radius
        padded = np.asarray(evaluate_block([padded_indices(n, lo, hi, r) for n, lo, hi in zip(dims, lows, highs)],
                                           progress), dtype=np.float32)
        inner = padded[r:padded.shape[0] - r, r:padded.shape[1] - r, r:padded.shape[2] - r]
        return self.apply_padded(padded) - inner

    def _apply_points_from_block(self, values, evaluate_block, cells, lows, highs, dims,
                                 block_cache: dict | None = None) -> np.ndarray:
        """:meth:`apply_points` from the correction on the block of nodes ``lows..highs`` per
        axis (x, y, z), given the points' ``cells`` (:func:`_cells` per axis)."""
        cached = None if block_cache is None else block_cache.get("block")
        if cached is not None and all(lo >= c_lo and hi <= c_hi for lo, hi, c_lo, c_hi in
                                      zip(lows, highs, cached[0], cached[1])):
            c_lows, _, block = cached
            correction = block[lows[2] - c_lows[2]:highs[2] - c_lows[2] + 1,
                               lows[1] - c_lows[1]:highs[1] - c_lows[1] + 1,
                               lows[0] - c_lows[0]:highs[0] - c_lows[0] + 1]
        else:
            correction = self._block_correction(evaluate_block, lows, highs, dims)
            if block_cache is not None:
                block_cache["block"] = (list(lows), list(highs), correction)
        (x0, x1, tx), (y0, y1, ty), (z0, z1, tz) = cells
        x0, x1, y0, y1 = x0 - lows[0], x1 - lows[0], y0 - lows[1], y1 - lows[1]
        z0, z1 = z0 - lows[2], z1 - lows[2]
        out = np.asarray(values, dtype=np.float64).copy()
        for zi, wz in ((z0, 1.0 - tz), (z1, tz)):
            for yi, wy in ((y0, 1.0 - ty), (y1, ty)):
                out += wz * wy * (correction[zi, yi, x0] * (1.0 - tx) + correction[zi, yi, x1] * tx)
        return out

    def _correction_at(self, block: np.ndarray, picks) -> np.ndarray:
        """Kernel minus identity at nodes picked from ``block`` (network values ``[z, y, x]``):
        ``picks[axis][k]`` are the positions of the nodes shifted by -k and +k along that axis
        (x, y, z)."""
        def parts(a, axis: int):
            pairs = picks[2 - axis]
            return [a.take(lo, axis) if k == 0 else a.take(lo, axis) + a.take(hi, axis)
                    for k, (lo, hi) in enumerate(pairs)]

        sums = _by_class(block, self.radius, parts)
        acc = (self.weights[0] * self.scale - 1.0) * sums[0] + self.offset * self.scale
        for c in range(1, len(sums)):
            if self.weights[c]:
                acc += self.weights[c] * self.scale * sums[c]
        return acc


def progress_share(progress: Callable[[float], None] | None, first: float,
                   last: float) -> Callable[[float], None] | None:
    """``progress`` for a part of the work that runs from ``first`` to ``last`` of it."""
    if progress is None:
        return None
    return lambda fraction: progress(first + (last - first) * fraction)


def _cells(u: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For unit coordinates ``u`` on an n-node axis: the node below and above each, and the
    linear weight of the one above."""
    if n <= 1:
        zero = np.zeros(len(u), dtype=np.int64)
        return zero, zero, np.zeros(len(u))
    x = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0) * (n - 1)
    i0 = np.clip(np.floor(x).astype(np.int64), 0, n - 2)
    return i0, i0 + 1, x - i0


def offset_class(dx: int, dy: int, dz: int, radius: int) -> int:
    """The weight index of offset (dx, dy, dz) in a kernel of ``radius``."""
    n = radius + 1
    return (abs(dz) * n + abs(dy)) * n + abs(dx)


def class_sums(padded, radius: int = 1):
    """For a ``[z + 2r, y + 2r, x + 2r]`` array (numpy or torch), the ``(r + 1)^3`` sums over
    each offset class of the inner ``[z, y, x]`` voxels' neighbours, in class order:
    separable, a centre or a pair (-k, +k) per axis."""
    r = radius

    def parts(a, axis: int):
        n = a.shape[axis] - 2 * r

        def cut(start: int):
            index = [slice(None)] * a.ndim
            index[axis] = slice(start, start + n)
            return a[tuple(index)]
        return [cut(r)] + [cut(r - k) + cut(r + k) for k in range(1, r + 1)]

    return _by_class(padded, r, parts)


def _by_class(a, radius: int, parts: Callable):
    """The ``(radius + 1)^3`` offset-class sums of ``a``, in class order, from ``parts(a, axis)``:
    the centre, then the sum of the pair shifted by -k and +k along ``axis``, for k = 1..radius."""
    out = [None] * (radius + 1) ** 3
    for ax, x in enumerate(parts(a, 2)):
        for ay, y in enumerate(parts(x, 1)):
            for az, z in enumerate(parts(y, 0)):
                out[offset_class(ax, ay, az, radius)] = z
    return out


def node_run(u: np.ndarray, n: int) -> tuple[int, int] | None:
    """(first, last) when the unit coordinates ``u`` are the consecutive nodes first..last of an
    n-node axis (to 1e-9 of a node spacing), else None: where the filter is the kernel itself."""
    if len(u) == 0:
        return None
    if n <= 1:
        return (0, 0) if len(u) == 1 else None
    x = np.asarray(u, dtype=np.float64) * (n - 1)
    first = int(np.rint(x[0]))
    nodes = np.arange(first, first + len(u))
    if nodes[-1] >= n or first < 0 or np.max(np.abs(x - nodes)) > 1e-9:
        return None
    return first, int(nodes[-1])


def padded_indices(n: int, lo: int, hi: int, radius: int = 1) -> np.ndarray:
    """Indices ``lo - r .. hi + r`` of an n-node axis, clamped to it (the edge repeated)."""
    return np.clip(np.arange(lo - radius, hi + radius + 1), 0, n - 1)


@dataclass(frozen=True)
class FittedKernel:
    """A fitted kernel (None where it gains nothing) and the mean squared errors before and
    after it, over the voxels the fit used."""

    kernel: PostFilter | None
    before: float
    after: float
    # the same kernel rounded to coarser shifts, fewer header bytes each: (kernel, MSE after),
    # for a file whose bytes for it were held back before it was fitted
    coarser: tuple[tuple[PostFilter, float], ...] = ()

    def candidates(self) -> list[tuple[PostFilter, float]]:
        """(kernel, MSE after) for the kernel and each of its coarser roundings."""
        return [] if self.kernel is None else [(self.kernel, self.after), *self.coarser]


def fit_kernels(raw: np.ndarray, target: np.ndarray, radii=None) -> dict[int, FittedKernel]:
    """The least-squares kernel of each radius in ``radii`` (default :data:`RADII`) for network
    values ``raw`` on the original grid against ``target`` (both ``[z, y, x]``, in the same units), its weights
    rounded to the coarsest adequate shift. The normal equations are accumulated once, for
    the largest radius, over all voxels or every k-th slab past :data:`FIT_MAX_VOXELS`; a
    smaller kernel solves the rows of its classes. Every kernel is None for a volume of under
    :data:`MIN_VOXELS` voxels."""
    nz, ny, nx = raw.shape
    radii = RADII if radii is None else radii
    if raw.size < MIN_VOXELS:
        return {r: FittedKernel(None, math.nan, math.nan) for r in radii}
    top = max(radii)
    n_classes = (top + 1) ** 3
    gram = np.zeros((n_classes + 1, n_classes + 1))
    cross = np.zeros(n_classes + 1)
    energy = 0.0
    slab, starts = _fit_slabs(raw.shape)
    zi = padded_indices(nz, 0, nz - 1, top)
    yi, xi = padded_indices(ny, 0, ny - 1, top), padded_indices(nx, 0, nx - 1, top)
    n = 0
    for z0 in starts:
        z1 = min(nz, z0 + slab)
        n += (z1 - z0) * ny * nx
        padded = np.asarray(raw[zi[z0:z1 + 2 * top]], dtype=np.float64)[:, yi][:, :, xi]
        t = np.asarray(target[z0:z1], dtype=np.float64).reshape(-1)
        design = np.stack([s.reshape(-1) for s in class_sums(padded, top)] + [np.ones(t.size)])
        gram += design @ design.T
        cross += design @ t
        energy += float(t @ t)

    def mse(c: np.ndarray, rows: np.ndarray) -> float:
        g = gram[np.ix_(rows, rows)]
        return max(0.0, float(c @ g @ c - 2.0 * c @ cross[rows] + energy)) / n

    identity = np.zeros(2)
    identity[0] = 1.0
    before = mse(identity, np.array([0, n_classes]))   # the network alone: class 0 is the voxel itself
    out = {}
    for r in radii:
        # the classes of radius r in its own order, then the constant
        rows = np.array([offset_class(dx, dy, dz, top) for dz in range(r + 1) for dy in range(r + 1)
                         for dx in range(r + 1)] + [n_classes])
        coef = np.linalg.lstsq(gram[np.ix_(rows, rows)], cross[rows], rcond=1e-12)[0]
        best = mse(coef, rows)
        if not best < before:
            out[r] = FittedKernel(None, before, before)
            continue

        def rounded(shift: int) -> tuple[PostFilter, float]:
            q = np.rint(coef * 2.0 ** shift)
            return (PostFilter(shift=shift, weights=tuple(int(v) for v in q[:-1]), offset=int(q[-1])),
                    mse(q * 2.0 ** -shift, rows))

        for shift in SHIFTS:
            kernel, after = rounded(shift)
            if after <= best + MAX_SHIFT_LOSS * (before - best) or shift == SHIFTS[-1]:
                break
        coarser = []
        for fewer in range(shift - 1, max(0, shift - COARSER_SHIFTS) - 1, -1):
            candidate = rounded(fewer)
            if not candidate[1] < before:
                break
            coarser.append(candidate)
        out[r] = FittedKernel(kernel, before, after, tuple(coarser))
    return out


def fit_seconds(target: np.ndarray) -> float:
    """:func:`fit_kernels`' seconds for ``target``'s shape on this machine, for the time a fit
    leaves itself: its first slab timed (the faster of two runs; the first also pays for the
    process's first large allocations) times the slabs it accumulates. Where the network is
    small the normal equations cost more than its whole-grid evaluations, by which the rest of
    the finish is reserved: a 130^3 brick of embryo at 200:1 (0.16 s an evaluation) spent 2.1 s
    choosing its kernel with 2^18-voxel slabs, and a 28 s budget took 30.2 s."""
    if target.size < MIN_VOXELS:
        return 0.0
    slab, starts = _fit_slabs(target.shape[:3])
    first = target[:slab]
    runs = []
    for _ in range(2):
        start = time.perf_counter()
        fit_kernels(first, first)
        runs.append(time.perf_counter() - start)
    return min(runs) * len(starts)


def _fit_slabs(shape) -> tuple[int, range]:
    """(z-planes per slab, the slabs' first planes) over which :func:`fit_kernels` accumulates:
    all of them, or every k-th past :data:`FIT_MAX_VOXELS` voxels."""
    nz, ny, nx = shape
    slab = max(1, FIT_SLAB_VOXELS // max(1, ny * nx))
    stride = max(1, math.ceil(nz * ny * nx / FIT_MAX_VOXELS))   # in slabs
    return slab, range(0, nz, slab * stride)


def net_gain_db(before: float, after: float, filter_bytes: int, file_bytes: int, free_bytes: int = 0) -> float:
    """dB gained by lowering the MSE from ``before`` to ``after`` less what ``filter_bytes``
    more header cost in a file of ``file_bytes``, at :data:`RATE_SLOPE_DB` per halving of the
    bytes left for the network, of which ``free_bytes`` are free (already held back from the
    network); -inf where the bytes are not there, +inf for an exact fit."""
    if filter_bytes >= file_bytes or not before > 0:
        return -math.inf
    if after <= 0:
        return math.inf
    if not before > after:
        return -math.inf
    paid = max(0, filter_bytes - max(0, free_bytes))
    return 10.0 * math.log10(before / after) - RATE_SLOPE_DB * math.log2(file_bytes / (file_bytes - paid))


def best_kernel(fitted: dict[int, FittedKernel], file_bytes: int, free_bytes: int = 0) -> PostFilter | None:
    """The fitted kernel of highest :func:`net_gain_db` in a file of ``file_bytes`` with
    ``free_bytes`` held back for it, if one is worth its bytes (the smaller radius, then the
    finer rounding, on a tie). Where bytes were held back and a kernel or a coarser rounding of
    one fits in them, only such: a longer one makes the file round its settled weights afresh
    (viscous fingers 800:1: a 52-byte kernel where 37 bytes were held measured 36.65 dB, the
    plain file 38.82)."""
    candidates = [c for r in sorted(fitted) for c in fitted[r].candidates()]
    within = [(k, after) for k, after in candidates if k.header_bytes() <= free_bytes]
    if free_bytes > 0 and within:
        candidates = within
    best, best_gain = None, MIN_GAIN_DB
    for kernel, after in candidates:
        before = fitted[kernel.radius].before
        gain = net_gain_db(before, after, kernel.header_bytes(), file_bytes, free_bytes)
        if gain > best_gain:
            best, best_gain = kernel, gain
    return best
