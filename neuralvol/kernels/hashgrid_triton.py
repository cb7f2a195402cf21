"""The hash-grid encoding on CUDA as two Triton kernels: a fused gather + trilinear forward
(scattered points, or the voxels of a tensor-product grid) and its backward.

Without them a CUDA encode is ~25 PyTorch operations per level (400 launches for L=16 per
chunk, each re-reading ``[L, 8, K]`` int64 index tensors), and a training step's backward
adds one ``index_add_`` per feature and level: launch-bound. Here one launch encodes all
levels of a chunk. ``benchmarks/speed.py --device cuda`` times both paths in one run; on an
H200 (Triton 3.6, torch 2.11) the 256^3 embryo model (100:1) decoded into GPU memory in
23 ms fp32 / 19 ms bf16 MLP against 244 ms through the PyTorch operations (0.72 / 0.87
Gvox/s; 1.06-1.13 Gvox/s at 800:1), and a 2^18-point training step took 5.0 ms, 58 % of its
GPU time in the backward kernel (atomics crowd the coarse levels' few entries).

The maths is :mod:`neuralvol.encodings.hashgrid`'s (tiny-cuda-nn's grid.h): ``pos = x * scale
+ 0.5``, corner ``c`` takes +1 on axis ``d`` when bit ``d`` of ``c`` is set, dense levels index
``x + y*res + z*res^2``, hashed levels ``x ^ y*2654435761 ^ z*805459861`` in uint32, both
modulo the level size (Python-style, non-negative) plus the level's offset. Values agree with
the PyTorch reference to float rounding (the eight products are summed in the same order;
the compiler may fuse multiply-adds).

The backward accumulates in 64-bit fixed point: every contribution ``w * g`` is scaled by a
power of two that puts the largest ``|g|`` of the call at 2^38 and rounded to an integer, so
the atomic additions are exact and their order cannot change the sum. A fixed seed then gives
the same file on the same GPU (fitting's promise, :func:`neuralvol.fitting.deterministic_kernels`),
which fp32 atomics would not. A contribution is rounded to 2^-39 of the largest gradient; a
point adds at most 2^38 to an entry per level (its eight weights sum to 1), so 2^24 points per
launch keep every sum below 2^62.

``interpret=True`` runs the same kernels in Triton's interpreter on CPU tensors: how the tests
check them on machines without a GPU.
"""
from __future__ import annotations

import functools
import math

import torch

from . import build
from .hashgrid import LevelTable

try:  # Triton ships with CUDA builds of PyTorch; the CPU wheels have none.
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the installation
    triton = None
    tl = None

#: points per program (not tuned: the only size measured)
BLOCK = 128
# |g| max lands at 2^FIXED_POINT_BITS in the fixed-point backward (see the module docstring)
FIXED_POINT_BITS = 38
#: most points one backward call takes before the fixed point could overflow (2^63 / 2^38)
MAX_BACKWARD_POINTS = 1 << 24


def available() -> bool:
    """Whether Triton is importable (the kernels then run on CUDA tensors, or interpreted)."""
    return triton is not None


def usable(table: torch.Tensor, coords: torch.Tensor) -> bool:
    """Whether the compiled kernels can encode these points (CUDA float32, Triton importable,
    kernels not switched off by ``NEURALVOL_KERNELS=0`` or :func:`build.pytorch_only`)."""
    return (triton is not None and table.device.type == "cuda" and coords.device == table.device
            and table.dtype == torch.float32 and coords.dtype == torch.float32 and not coords.requires_grad
            and not build.switched_off())


def _encode_forward(coords, ux, uy, uz, table, out, scales, res, sizes, offsets, dense,
                    n, nx, ny, z0, n_entries, n_levels,
                    GRID: tl.constexpr, F: tl.constexpr, FP: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    if GRID:  # voxel (ix, iy, z0 + iz) of the grid uz x uy x ux, x fastest
        ix = offs % nx
        iy = (offs // nx) % ny
        iz = offs // (nx * ny) + z0
        x = tl.load(ux + ix, mask=mask, other=0.0)
        y = tl.load(uy + iy, mask=mask, other=0.0)
        z = tl.load(uz + iz, mask=mask, other=0.0)
    else:
        x = tl.load(coords + offs * 3, mask=mask, other=0.0)
        y = tl.load(coords + offs * 3 + 1, mask=mask, other=0.0)
        z = tl.load(coords + offs * 3 + 2, mask=mask, other=0.0)
    feat = tl.arange(0, FP)
    fmask = mask[:, None] & (feat[None, :] < F)
    for level in range(n_levels):
        scale = tl.load(scales + level)
        r = tl.load(res + level)
        size = tl.load(sizes + level)
        offset = tl.load(offsets + level)
        is_dense = tl.load(dense + level) != 0
        px = x * scale + 0.5
        py = y * scale + 0.5
        pz = z * scale + 0.5
        fx = tl.floor(px)
        fy = tl.floor(py)
        fz = tl.floor(pz)
        wx = px - fx
        wy = py - fy
        wz = pz - fz
        cx = fx.to(tl.int64)
        cy = fy.to(tl.int64)
        cz = fz.to(tl.int64)
        # no tl.zeros: it is a @jit function of Triton's standard library, which its CPU
        # interpreter runs only when TRITON_INTERPRET was set before triton was imported
        for corner in tl.static_range(8):
            bx = corner & 1
            by = (corner >> 1) & 1
            bz = (corner >> 2) & 1
            gx = cx + bx
            gy = cy + by
            gz = cz + bz
            dense_index = gx + gy * r + gz * (r * r)
            dense_index = (dense_index % size + size) % size
            hashed = ((gx & 0xFFFFFFFF) ^ ((gy * 2654435761) & 0xFFFFFFFF)) ^ ((gz * 805459861) & 0xFFFFFFFF)
            index = tl.where(is_dense, dense_index, hashed % size) + offset
            w = ((wx if bx else 1.0 - wx) * (wy if by else 1.0 - wy)) * (wz if bz else 1.0 - wz)
            value = tl.load(table + feat[None, :] * n_entries + index[:, None], mask=fmask, other=0.0)
            if corner == 0:
                acc = w[:, None] * value
            else:
                acc += w[:, None] * value
        tl.store(out + (feat[None, :] * n_levels + level) * n + offs[:, None], acc, mask=fmask)


def _encode_backward(coords, grad_out, scale_ptr, grad, scales, res, sizes, offsets, dense,
                     n, n_entries, n_levels, F: tl.constexpr, FP: tl.constexpr, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    x = tl.load(coords + offs * 3, mask=mask, other=0.0)
    y = tl.load(coords + offs * 3 + 1, mask=mask, other=0.0)
    z = tl.load(coords + offs * 3 + 2, mask=mask, other=0.0)
    fixed = tl.load(scale_ptr)
    feat = tl.arange(0, FP)
    fmask = mask[:, None] & (feat[None, :] < F)
    for level in range(n_levels):
        scale = tl.load(scales + level)
        r = tl.load(res + level)
        size = tl.load(sizes + level)
        offset = tl.load(offsets + level)
        is_dense = tl.load(dense + level) != 0
        g = tl.load(grad_out + (feat[None, :] * n_levels + level) * n + offs[:, None], mask=fmask, other=0.0)
        g = g * fixed
        px = x * scale + 0.5
        py = y * scale + 0.5
        pz = z * scale + 0.5
        fx = tl.floor(px)
        fy = tl.floor(py)
        fz = tl.floor(pz)
        wx = px - fx
        wy = py - fy
        wz = pz - fz
        cx = fx.to(tl.int64)
        cy = fy.to(tl.int64)
        cz = fz.to(tl.int64)
        for corner in tl.static_range(8):
            bx = corner & 1
            by = (corner >> 1) & 1
            bz = (corner >> 2) & 1
            gx = cx + bx
            gy = cy + by
            gz = cz + bz
            dense_index = gx + gy * r + gz * (r * r)
            dense_index = (dense_index % size + size) % size
            hashed = ((gx & 0xFFFFFFFF) ^ ((gy * 2654435761) & 0xFFFFFFFF)) ^ ((gz * 805459861) & 0xFFFFFFFF)
            index = tl.where(is_dense, dense_index, hashed % size) + offset
            w = ((wx if bx else 1.0 - wx) * (wy if by else 1.0 - wy)) * (wz if bz else 1.0 - wz)
            contribution = tl.floor(w[:, None] * g + 0.5).to(tl.int64)
            tl.atomic_add(grad + feat[None, :] * n_entries + index[:, None], contribution, mask=fmask)


@functools.lru_cache(maxsize=None)
def _kernels(interpret: bool):
    """(forward, backward) compiled for CUDA, or wrapped for Triton's CPU interpreter."""
    if triton is None:
        raise RuntimeError("Triton is not installed")
    if interpret:
        from triton.runtime.interpreter import InterpretedFunction
        return InterpretedFunction(_encode_forward), InterpretedFunction(_encode_backward)
    return triton.jit(_encode_forward), triton.jit(_encode_backward)


def _level_args(levels: LevelTable):
    """The kernels' per-level tensor arguments, in their order."""
    return levels.scales, levels.res, levels.sizes, levels.offsets, levels.dense


def _padded_features(levels: LevelTable) -> int:
    """F rounded up to a power of two (tl.arange's lengths are powers of two)."""
    return 1 << max(0, math.ceil(math.log2(levels.n_features)))


def _launch_forward(levels: LevelTable, table: torch.Tensor, out: torch.Tensor, n: int,
                    coords=None, axes=None, z0: int = 0, interpret: bool = False) -> torch.Tensor:
    forward, _ = _kernels(interpret)
    if axes is None:
        ux = uy = uz = coords
        nx = ny = 1
    else:
        ux, uy, uz = axes
        nx, ny = ux.numel(), uy.numel()
        coords = ux
    grid = (triton.cdiv(n, BLOCK),)
    forward[grid](coords, ux, uy, uz, table, out, *_level_args(levels), n, nx, ny, z0, table.shape[1],
                  levels.n_levels, GRID=axes is not None, F=levels.n_features, FP=_padded_features(levels),
                  BLOCK=BLOCK, **_options(interpret))
    return out


def _options(interpret: bool) -> dict:
    # no fused multiply-adds: positions and weights round as PyTorch's separate mul and add
    # (and the C++ kernel's -ffp-contract=off) do; fused, 1 of 12000 features differed by 4e-6 (H200)
    return {} if interpret else {"enable_fp_fusion": False}


def forward_points(levels: LevelTable, coords: torch.Tensor, table: torch.Tensor,
                   interpret: bool = False) -> torch.Tensor:
    """``[N, 3]`` points -> ``[F * L, N]`` features (feature-major), no autograd."""
    n = coords.shape[0]
    out = torch.empty((levels.n_features * levels.n_levels, n), dtype=torch.float32, device=table.device)
    if n:
        _launch_forward(levels, table.contiguous(), out, n, coords=coords.contiguous(), interpret=interpret)
    return out


def backward_points(levels: LevelTable, coords: torch.Tensor, grad_out: torch.Tensor,
                    interpret: bool = False) -> torch.Tensor:
    """Gradient of the table ``[F, E]`` from the features' gradient ``[F * L, N]`` (deterministic)."""
    _, backward = _kernels(interpret)
    n = coords.shape[0]
    grad_out = grad_out.contiguous().float()
    grad = torch.zeros((levels.n_features, levels.n_entries), dtype=torch.int64, device=grad_out.device)
    if n == 0:
        return grad.float()
    top = grad_out.abs().amax()
    # a power of two, so the scaling is exact; all-zero gradients keep a scale of 1
    # (clamped so the scale stays a finite float32)
    exponent = torch.where(top > 0, torch.ceil(torch.log2(top)), torch.zeros_like(top)).clamp_(-88, 88)
    fixed = torch.exp2(FIXED_POINT_BITS - exponent).reshape(1)
    for start in range(0, n, MAX_BACKWARD_POINTS):
        stop = min(n, start + MAX_BACKWARD_POINTS)
        part = grad_out[:, start:stop].contiguous() if (start, stop) != (0, n) else grad_out
        grid = (triton.cdiv(stop - start, BLOCK),)
        backward[grid](coords[start:stop].contiguous(), part, fixed, grad, *_level_args(levels), stop - start,
                       levels.n_entries, levels.n_levels, F=levels.n_features, FP=_padded_features(levels),
                       BLOCK=BLOCK, **_options(interpret))
    return grad.to(torch.float64).div_(fixed.double()).float()


def forward_grid_into(levels: LevelTable, table: torch.Tensor, axes, z0: int, z1: int, out: torch.Tensor,
                      interpret: bool = False) -> torch.Tensor:
    """Features ``[F * L, K]`` of planes ``z0..z1-1`` of the grid ``uz x uy x ux`` into ``out``."""
    ux, uy, uz = (a.contiguous() for a in axes)
    n = (z1 - z0) * uy.numel() * ux.numel()
    if n:
        _launch_forward(levels, table.contiguous(), out, n, axes=(ux, uy, uz), z0=z0, interpret=interpret)
    return out


class _TritonEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table: torch.Tensor, coords: torch.Tensor, levels: LevelTable, interpret: bool):
        ctx.save_for_backward(coords)
        ctx.levels, ctx.interpret = levels, interpret
        return forward_points(levels, coords, table.detach(), interpret)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (coords,) = ctx.saved_tensors
        return backward_points(ctx.levels, coords, grad_out, ctx.interpret), None, None, None


def encode_points(encoding, coords: torch.Tensor, interpret: bool = False) -> torch.Tensor:
    """``[N, 3]`` points -> ``[F * L, N]`` features, differentiable in the table."""
    levels = encoding.kernel_levels(coords.device)
    coords = coords.contiguous()
    table = encoding.table
    if torch.is_grad_enabled() and table.requires_grad:
        return _TritonEncode.apply(table, coords, levels, interpret)
    return forward_points(levels, coords, table.detach(), interpret)
