"""Quality metrics. PSNR everywhere is 20*log10((max - min of the original) / RMSE)."""
from __future__ import annotations

import math

import numpy as np


def rmse(original: np.ndarray, decoded: np.ndarray) -> float:
    diff = original.astype(np.float64) - decoded.astype(np.float64)
    return float(np.sqrt(np.mean(diff * diff))) if diff.size else 0.0


def psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR in dB over all voxels; ``inf`` for an exact reconstruction."""
    err = rmse(original, decoded)
    value_range = float(np.max(original)) - float(np.min(original)) if original.size else 0.0
    if err == 0.0:
        return math.inf
    if value_range == 0.0:
        return -math.inf
    return 20.0 * math.log10(value_range / err)


def psnr_from_normalised_mse(mse: float) -> float:
    """PSNR of values normalised by the original's range to [0, 1]."""
    if mse <= 0.0:
        return math.inf
    return -10.0 * math.log10(mse)


def max_abs_error(original: np.ndarray, decoded: np.ndarray) -> float:
    return float(np.max(np.abs(original.astype(np.float64) - decoded.astype(np.float64)))) if original.size else 0.0


def gradient_rmse(original: np.ndarray, decoded: np.ndarray) -> float:
    """RMSE of central-difference gradients (one voxel step, interior voxels, every axis of
    at least 3 voxels) of ``decoded`` against ``original``, in units of the original's value
    range per voxel."""
    a = np.asarray(original, dtype=np.float64)
    b = np.asarray(decoded, dtype=np.float64)
    span = float(a.max() - a.min()) or 1.0
    total, count = 0.0, 0
    for axis in range(a.ndim):
        if a.shape[axis] < 3:
            continue
        sl_hi = [slice(None)] * a.ndim
        sl_lo = [slice(None)] * a.ndim
        sl_hi[axis], sl_lo[axis] = slice(2, None), slice(None, -2)
        d = ((b[tuple(sl_hi)] - b[tuple(sl_lo)]) - (a[tuple(sl_hi)] - a[tuple(sl_lo)])) / (2.0 * span)
        total += float(np.sum(d * d))
        count += d.size
    return math.sqrt(total / count) if count else 0.0
