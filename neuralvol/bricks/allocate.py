"""The global byte budget: how many bytes each brick gets, by how hard it is to fit.

A neural field's error falls roughly as a power of its bytes, ``MSE_i ~ d_i (b_i / N_i)^-beta``
(``N_i`` voxels, ``d_i`` a difficulty in the volume's units). Minimising the total squared
error ``sum N_i MSE_i`` under ``sum b_i = B`` gives ``b_i ~ N_i d_i^(1 / (1 + beta))``.
``beta = 1`` (3 dB per doubling of bytes) is an assumed slope; ``beta = 3`` measured no better.
The default difficulty is the variance. Measured, 8 bricks of 32 (whole-volume PSNR, dB):

=====================================  =====  ========  ========
volume                                 equal  variance  gradient
=====================================  =====  ========  ========
CT head 64^3, 40:1, 40 steps           24.14  24.91     24.72
turbulence 64^3, 200:1, 30 steps       19.80  20.41     19.06
=====================================  =====  ========  ========

and the variance ranks the bricks' errors under equal shares better (Spearman 0.95 against
0.69 for the gradient energy, turbulence crop, benchmarks/large.py --quick). Every brick
keeps a floor, so that even a constant one can store its header and a network.
"""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError

RD_SLOPE = 1.0
# A brick's file (compact header, a minimal network) needs about this many bytes; measured:
# a 36^3 brick at size=150 codes into 144 bytes, of which 72 are header.
MIN_BRICK_BYTES = 160
DIFFICULTIES = ("variance", "gradient", "equal")


def brick_statistics(block: np.ndarray) -> dict:
    """What the allocation and the normalisation need of one brick, in the volume's units."""
    b = block.astype(np.float64, copy=False)
    grad = 0.0
    for axis in range(3):
        if b.shape[axis] > 1:
            grad += float(np.mean(np.square(np.diff(b, axis=axis))))
    return {"min": float(b.min()), "max": float(b.max()), "variance": float(b.var()), "gradient": grad}


def allocate(budget: int, voxels, difficulty, floor: int = MIN_BRICK_BYTES) -> list[int]:
    """Bytes per brick, summing to at most ``budget``: a floor each, the rest ~ N d^(1/(1+slope))."""
    n = len(voxels)
    if budget < n * floor:
        raise InputError(f"a budget of {budget} bytes is too small for {n} bricks (each needs about {floor}); "
                         f"use larger bricks (--brick) or a lower ratio")
    weight = np.asarray(voxels, np.float64) * np.power(np.maximum(np.asarray(difficulty, np.float64), 0.0),
                                                         1.0 / (1.0 + RD_SLOPE))
    if not weight.sum() > 0:
        weight = np.asarray(voxels, np.float64)
    spare = budget - n * floor
    shares = np.floor(spare * weight / weight.sum()).astype(np.int64)
    return [int(floor + s) for s in shares]


def difficulties(stats: list[dict], kind: str) -> list[float]:
    if kind not in DIFFICULTIES:
        raise InputError(f"brick allocation must be one of {', '.join(DIFFICULTIES)}, got {kind!r}")
    if kind == "equal":
        return [1.0] * len(stats)
    return [s[kind] for s in stats]


def estimated_psnr(brick_psnrs, brick_ranges, voxels, value_range) -> float | None:
    """Whole-volume PSNR from each brick's PSNR (over its own range), weighted by voxels."""
    span = value_range[1] - value_range[0]
    if span <= 0:
        return None
    mse = 0.0
    for p, r, n in zip(brick_psnrs, brick_ranges, voxels):
        if p is None:
            return None
        if math.isfinite(p) and r > 0:
            mse += n * (r * 10 ** (-p / 20)) ** 2
    mse /= max(1, sum(voxels))
    return math.inf if mse == 0 else 20 * math.log10(span / math.sqrt(mse))
