"""The post filter on a block of network values through the C++ kernel (``postfilter_cpu.cpp``).

One output row at a time from its source rows while they are in cache, instead of PyTorch's
whole-slab tensor per offset class: the 5x5x5 kernel on the 256^3 embryo decode (260^3 values
in), 2 threads on this session's Xeon, took 0.27-0.30 s in PyTorch (benchmarks/speed.py times
the decode both ways). :meth:`neuralvol.postfilter.PostFilter.apply_padded` falls back to
PyTorch without the kernel library (see :mod:`.build`).
"""
from __future__ import annotations

import numpy as np
import torch

from . import build

MAX_RADIUS = 2
_off = build.Switch()   # on inside pytorch_filter()


def pytorch_filter():
    """Inside, the post filter runs as PyTorch's slab-by-slab sums, the path this kernel
    replaced (benchmarks/speed.py times both in one run); the other kernels stay on."""
    return _off.on()


def usable(radius: int) -> bool:
    """Whether the kernel library is loaded and takes this radius (and not inside :func:`pytorch_filter`)."""
    return not _off and build.library() is not None and 1 <= radius <= MAX_RADIUS


def apply_padded(padded: np.ndarray, radius: int, weights: list[float], offset: float) -> np.ndarray:
    """The filtered ``[z, y, x]`` float32 values of a block from its values grown by ``radius``
    on every side; ``weights`` the ``(radius + 1)^3`` scaled class weights, ``offset`` the
    scaled constant. The caller checked :func:`usable`."""
    src = np.ascontiguousarray(padded, dtype=np.float32)
    nz, ny, nx = (n - 2 * radius for n in src.shape)
    out = np.empty((nz, ny, nx), dtype=np.float32)
    w = np.ascontiguousarray(weights, dtype=np.float32)
    done = build.library().nv_postfilter_padded(src.ctypes.data, nz, ny, nx, radius, w.ctypes.data, float(offset),
                                                out.ctypes.data, torch.get_num_threads())
    if done != 0:
        raise RuntimeError(f"the post-filter kernel refused radius {radius} on a {padded.shape} block")
    return out
