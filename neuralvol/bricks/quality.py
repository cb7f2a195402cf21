"""Seam metrics: PSNR within a few voxels of interior brick faces against the rest."""
from __future__ import annotations

import numpy as np

from ..metrics import psnr
from .layout import BrickLayout


def seam_mask(layout: BrickLayout, width: int = 2) -> np.ndarray:
    """``[z, y, x]`` booleans: voxels within ``width`` voxels of an interior core boundary."""
    masks = []
    for axis in range(3):
        n = layout.dims[axis]
        m = np.zeros(n, dtype=bool)
        for c in layout.splits[axis][1:-1]:
            m[max(0, c - width):min(n, c + width)] = True
        masks.append(m)
    mx, my, mz = masks
    return mz[:, None, None] | my[None, :, None] | mx[None, None, :]


def seam_psnr(original: np.ndarray, decoded: np.ndarray, layout: BrickLayout, width: int = 2) -> dict:
    """PSNR (over the original's whole range) near brick faces, in the interior, and overall."""
    mask = seam_mask(layout, width)
    span = float(np.max(original)) - float(np.min(original))

    def part(sel):
        if not sel.any():
            return None
        err = np.sqrt(np.mean((original[sel].astype(np.float64) - decoded[sel].astype(np.float64)) ** 2))
        return float("inf") if err == 0 else float(20 * np.log10(span / err)) if span > 0 else None
    return {"seam": part(mask), "interior": part(~mask), "all": psnr(original, decoded),
            "seam_fraction": float(mask.mean())}
