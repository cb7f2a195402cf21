"""The post filter: a 3x3x3 kernel, fitted at encode time, applied to the network's output.

A coordinate network's error is not white. On smooth simulation fields most of it is a
fine ripple that the hash grid's levels leave behind, which a small linear filter removes:
least-squares 3x3x3 kernels fitted to the decode of 60 s fits gained (dB) viscous fingers
100:1 +1.22, hydrogen 400:1 +1.16, nucleon 200:1 +1.07, Marschner-Lobb 100:1 +0.37,
isabel 400:1 +0.18, carotid 100:1 +0.17, neghip 800:1 +0.13, walnut 200:1 +0.10, headsq
400:1 +0.06, embryo 100:1 0.00 (a 5x5x5 kernel: +0.1 to +0.9 more on the smooth fields, at
125 network evaluations per point instead of 27 off the original grid). Video codecs' adaptive loop
filter is the same idea.

The kernel is symmetric in each axis, so it has 8 weights, one per class of offsets
``(|dz|, |dy|, |dx|)`` in {0, 1}^3 (class ``4 |dz| + 2 |dy| + |dx|``), plus a constant; all
are integers times ``2^-shift``. It works in the original grid's voxel spacing, whatever
grid is decoded: the filtered field at a point p is

    offset + sum over d in {-1, 0, 1}^3 of weight[class(d)] * f(clamp(p + d * h))

with f the network, h one original voxel in [0, 1] coordinates per axis and clamp to the
unit cube (at the original grid's nodes: the neighbouring voxels, the edge repeated). On the
original grid (any region) that is one network evaluation of the region grown by a voxel,
then the kernel; on other grids and at scattered points, 27 network evaluations per point.

Fitted in :func:`fit` on the quantised network's decode of the original grid (normal
equations accumulated slab by slab), kept only where it gains more than its header bytes
cost (:func:`worth_its_bytes`). Scalar fields only.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

N_CLASSES = 8
# Weights are stored as integers times 2^-shift, with the coarsest shift in this range that
# costs at most MAX_SHIFT_LOSS of the filter's own gain in MSE.
SHIFTS = range(6, 25)
MAX_SHIFT_LOSS = 0.002
# Slices per slab when accumulating the normal equations (8 float64 class sums per voxel).
FIT_SLAB_VOXELS = 1 << 20
# Voxels the normal equations are accumulated over, at most: every k-th slab of a larger
# volume. All 16.8 M voxels of a 256^3 volume took 3 s on one thread, 4x its decode at 400:1.
FIT_MAX_VOXELS = 1 << 22
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
    """The kernel: ``weights[c] * 2^-shift`` for offset class c, ``offset * 2^-shift`` added."""

    shift: int
    weights: tuple[int, ...]
    offset: int

    def __post_init__(self):
        if (not isinstance(self.shift, int) or isinstance(self.shift, bool) or not 0 <= self.shift <= 60
                or len(self.weights) != N_CLASSES
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in (*self.weights, self.offset))):
            raise ValueError("a post filter needs a shift of 0-60 and 8 integer weights and an integer offset")
        if any(abs(v) > MAX_INTEGER for v in (*self.weights, self.offset)):
            raise ValueError(f"a post filter's integers are at most 2^{MAX_INTEGER.bit_length() - 1} in magnitude")

    @property
    def scale(self) -> float:
        return 2.0 ** -self.shift

    def header_bytes(self) -> int:
        """Bytes the filter adds to a compact header (its presence bit fits the mask's byte)."""
        def varint(v: int) -> int:
            return max(1, (v.bit_length() + 6) // 7)
        zigzag = [2 * v if v >= 0 else -2 * v - 1 for v in (*self.weights, self.offset)]
        return varint(self.shift) + varint(N_CLASSES) + sum(varint(v) for v in zigzag)

    def to_dict(self) -> dict:
        return {"shift": self.shift, "weights": list(self.weights), "offset": self.offset}

    @classmethod
    def from_dict(cls, d: dict) -> "PostFilter":
        """ValueError/TypeError/KeyError when malformed."""
        if not isinstance(d, dict) or set(d) != {"shift", "weights", "offset"} or not isinstance(d["weights"], list):
            raise ValueError(f"a post filter has exactly shift, weights and offset, got {str(d)[:60]}")
        return cls(shift=d["shift"], weights=tuple(d["weights"]), offset=d["offset"])

    def taps(self) -> list[tuple[tuple[int, int, int], float]]:
        """The 27 ``((dx, dy, dz), weight)`` pairs of the kernel (zero weights left out)."""
        out = []
        for dz in (-1, 0, 1):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    w = self.weights[4 * abs(dz) + 2 * abs(dy) + abs(dx)]
                    if w:
                        out.append(((dx, dy, dz), w * self.scale))
        return out

    def apply_padded(self, padded: np.ndarray) -> np.ndarray:
        """The filtered values ``[z, y, x]`` (float32) of a region from its network values grown
        by one voxel on every side (``[z + 2, y + 2, x + 2]``, the edge repeated at the grid's
        border). In torch, float32, slab by slab: a 256^3 region took 0.07 s on the 2-core
        machine, 0.68 s as float64 numpy passes (its values differ by < 3e-7 of the range)."""
        nz, ny, nx = (n - 2 for n in padded.shape)
        src = torch.from_numpy(np.ascontiguousarray(padded, dtype=np.float32))
        out = torch.empty((nz, ny, nx), dtype=torch.float32)
        weights = [float(w) * self.scale for w in self.weights]
        slab = max(1, FIT_SLAB_VOXELS // max(1, ny * nx))
        for z0 in range(0, nz, slab):
            z1 = min(nz, z0 + slab)
            acc = out[z0:z1].fill_(self.offset * self.scale)
            for c, part in enumerate(class_sums(src[z0:z1 + 2])):
                if weights[c]:
                    acc.add_(part, alpha=weights[c])
        return out.numpy()

    def apply_shifted(self, evaluate: Callable[[np.ndarray], np.ndarray], points: np.ndarray,
                      dims: tuple[int, int, int]) -> np.ndarray:
        """The filtered field at ``points`` ``[N, 3]`` (x, y, z in [0, 1]) from ``evaluate``
        (points -> network values ``[N]``), 27 evaluations, the original grid being ``dims``."""
        h = np.array([1.0 / (n - 1) if n > 1 else 0.0 for n in dims])
        acc = np.full(points.shape[0], self.offset * self.scale)
        for d, w in self.taps():
            acc += w * evaluate(np.clip(points + np.asarray(d) * h, 0.0, 1.0)).astype(np.float64)
        return acc

    def apply_grid(self, evaluate: Callable[[list[np.ndarray]], np.ndarray], axes: list[np.ndarray],
                   dims: tuple[int, int, int], progress: Callable[[float], None] | None = None) -> np.ndarray:
        """The filtered field on the tensor-product grid of ``axes`` (x, y, z in [0, 1]) from
        ``evaluate`` (axes -> network values ``[nz, ny, nx]``), 27 grid evaluations
        (``progress`` is called with the fraction done after each)."""
        h = [1.0 / (n - 1) if n > 1 else 0.0 for n in dims]
        acc = np.full((len(axes[2]), len(axes[1]), len(axes[0])), self.offset * self.scale)
        taps = self.taps()
        for k, (d, w) in enumerate(taps):
            shifted = [np.clip(u + d[a] * h[a], 0.0, 1.0) for a, u in enumerate(axes)]
            acc += w * evaluate(shifted).astype(np.float64)
            if progress is not None:
                progress((k + 1) / len(taps))
        return acc


def class_sums(padded):
    """For a ``[z + 2, y + 2, x + 2]`` array (numpy or torch), the 8 sums over each offset class
    of the inner ``[z, y, x]`` voxels' neighbours: separable, a centre or a pair per axis."""
    out: list[np.ndarray] = [None] * N_CLASSES  # type: ignore[list-item]
    for ax, a in enumerate((padded[:, :, 1:-1], padded[:, :, :-2] + padded[:, :, 2:])):
        for ay, b in enumerate((a[:, 1:-1], a[:, :-2] + a[:, 2:])):
            for az, c in enumerate((b[1:-1], b[:-2] + b[2:])):
                out[4 * az + 2 * ay + ax] = c
    return out


def padded_indices(n: int, lo: int, hi: int) -> np.ndarray:
    """Indices ``lo - 1 .. hi + 1`` of an n-node axis, clamped to it (the edge repeated)."""
    return np.clip(np.arange(lo - 1, hi + 2), 0, n - 1)


def fit(raw: np.ndarray, target: np.ndarray) -> tuple[PostFilter | None, float, float]:
    """The least-squares kernel for network values ``raw`` on the original grid against
    ``target`` (both ``[z, y, x]``, in the same units), its weights rounded to the coarsest
    adequate shift, with the mean squared errors before and after it (over the voxels used:
    all, or every k-th slab past :data:`FIT_MAX_VOXELS`); None for a volume of under
    :data:`MIN_VOXELS` voxels or a fit that gains nothing."""
    nz, ny, nx = raw.shape
    if raw.size < MIN_VOXELS:
        return None, math.nan, math.nan
    gram = np.zeros((N_CLASSES + 1, N_CLASSES + 1))
    cross = np.zeros(N_CLASSES + 1)
    energy = 0.0
    before = 0.0
    slab = max(1, FIT_SLAB_VOXELS // max(1, ny * nx))
    stride = max(1, math.ceil(raw.size / FIT_MAX_VOXELS))   # in slabs
    zi = padded_indices(nz, 0, nz - 1)
    yi, xi = padded_indices(ny, 0, ny - 1), padded_indices(nx, 0, nx - 1)
    n = 0
    for z0 in range(0, nz, slab * stride):
        z1 = min(nz, z0 + slab)
        n += (z1 - z0) * ny * nx
        padded = np.asarray(raw[zi[z0:z1 + 2]], dtype=np.float64)[:, yi][:, :, xi]
        t = np.asarray(target[z0:z1], dtype=np.float64).reshape(-1)
        design = np.stack([s.reshape(-1) for s in class_sums(padded)] + [np.ones(t.size)])
        gram += design @ design.T
        cross += design @ t
        energy += float(t @ t)
        before += float(np.sum((design[0] - t) ** 2))
    coef = np.linalg.lstsq(gram, cross, rcond=1e-12)[0]

    def mse(c: np.ndarray) -> float:
        return max(0.0, float(c @ gram @ c - 2.0 * c @ cross + energy)) / n

    best = mse(coef)
    before /= n
    if not best < before:
        return None, before, before
    for shift in SHIFTS:
        q = np.rint(coef * 2.0 ** shift)
        after = mse(q * 2.0 ** -shift)
        if after <= best + MAX_SHIFT_LOSS * (before - best) or shift == SHIFTS[-1]:
            break
    pf = PostFilter(shift=shift, weights=tuple(int(v) for v in q[:N_CLASSES]), offset=int(q[N_CLASSES]))
    return pf, before, after


def worth_its_bytes(before: float, after: float, filter_bytes: int, file_bytes: int) -> bool:
    """Whether lowering the MSE from ``before`` to ``after`` is worth ``filter_bytes`` more
    header in a file of ``file_bytes``: the gain in dB against :data:`RATE_SLOPE_DB` per
    halving of the bytes left for the network."""
    if not (after > 0 and before > after) or filter_bytes >= file_bytes:
        return before > 0 and after == 0 and filter_bytes < file_bytes
    gain = 10.0 * math.log10(before / after)
    cost = RATE_SLOPE_DB * math.log2(file_bytes / (file_bytes - filter_bytes))
    return gain > cost + MIN_GAIN_DB
