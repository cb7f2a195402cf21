"""Region importance: a weight per voxel that makes the fit spend its bytes where the user cares.

The weights come from a volume of the array's shape (``importance=``) or from boxes
(``roi=`` inclusive index extents, weight ``roi_weight`` inside, 1 elsewhere). The fit
draws its training voxels with probability proportional to the weight
(:func:`neuralvol.fitting.fit`, ``importance=``), so the expected loss is the
importance-weighted mean squared error; nothing about the weights is stored in the file.
Sampling was measured against uniform sampling with a weighted loss (a 48x48x40 CT block,
one box of 10 % at weight 10, ratio 30, seeds 0/1 at 60 and 120 steps): 0.05-0.38 dB more
inside the box, within 0.1 dB outside.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from .errors import InputError

DEFAULT_ROI_WEIGHT = 10.0


def importance_weights(shape: tuple[int, int, int], importance=None, roi: Sequence[Sequence[int]] | None = None,
                       roi_weight: float | None = None) -> np.ndarray | None:
    """Float32 weights of shape ``[z, y, x]`` with mean 1, or None when no importance is given.

    Raises
    ------
    InputError
        If both ``importance`` and ``roi`` are given, the weights do not match ``shape``, are
        negative, not finite or all zero, a box is not a valid inclusive extent of the grid,
        or ``roi_weight`` is not a positive finite number (or is given without ``roi``).
    """
    if importance is not None and roi is not None:
        raise InputError("give an importance volume or ROI boxes, not both")
    if roi_weight is not None and roi is None:
        raise InputError("roi_weight needs roi boxes (--roi x0 x1 y0 y1 z0 z1)")
    if importance is None and roi is None:
        return None
    if importance is not None:
        try:
            w = np.asarray(importance, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"importance must be a numeric array, got {type(importance).__name__}") from None
        if w.shape != tuple(shape):
            raise InputError(f"importance has shape {w.shape}, the volume has {tuple(shape)} ([z, y, x]); "
                             f"give one weight per voxel")
        if not np.isfinite(w).all():
            raise InputError("importance has NaN or infinite weights; give finite weights >= 0")
        if (w < 0).any():
            raise InputError(f"importance has {int((w < 0).sum())} negative weights; weights must be >= 0")
    else:
        from .volume import validate_region
        weight = DEFAULT_ROI_WEIGHT if roi_weight is None else roi_weight
        try:
            weight = float(weight)
        except (TypeError, ValueError):
            raise InputError(f"roi weight must be a positive number, got {roi_weight!r}") from None
        if not (math.isfinite(weight) and weight > 0):
            raise InputError(f"roi weight must be a positive finite number, got {roi_weight!r}")
        boxes = list(roi)
        if boxes and not isinstance(boxes[0], (list, tuple, np.ndarray)):
            boxes = [boxes]  # one box given flat
        if not boxes:
            raise InputError("roi needs at least one box x0 x1 y0 y1 z0 z1")
        nz, ny, nx = shape
        w = np.ones(shape, dtype=np.float64)
        for box in boxes:
            try:
                x0, x1, y0, y1, z0, z1 = validate_region(box, (nx, ny, nz))
            except InputError as exc:
                raise InputError(f"roi box {list(box)}: {exc}") from None
            w[z0:z1 + 1, y0:y1 + 1, x0:x1 + 1] = weight
    total = float(w.sum())
    if not total > 0:
        raise InputError("importance weights are all zero; give some voxels a positive weight")
    return (w * (w.size / total)).astype(np.float32)


def region_mask(shape: tuple[int, int, int], roi) -> np.ndarray:
    """Boolean ``[z, y, x]`` mask of the union of ``roi`` boxes (for measuring inside/outside)."""
    mask = np.zeros(shape, dtype=bool)
    for x0, x1, y0, y1, z0, z1 in roi:
        mask[z0:z1 + 1, y0:y1 + 1, x0:x1 + 1] = True
    return mask


def load_importance(path: str) -> np.ndarray:
    """The CLI's ``--importance`` weight volume: a ``.npy`` file, read without pickle."""
    if not str(path).endswith(".npy"):
        raise InputError(f"--importance takes a .npy weight volume of the input's [z, y, x] shape, got {path!r}")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read the importance volume {path!r}: {exc}") from None
