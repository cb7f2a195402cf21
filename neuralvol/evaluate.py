"""Evaluating a network on regular grids and scattered points, in bounded-memory chunks."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np
import torch

from .arithmetic import COMPUTE_CHOICES
from .errors import InputError
from .kernels import hashgrid_triton
from .kernels import mlp as mlp_kernel
from .model import NeuralField
from .workspace import scratch

# Points per chunk: big enough to amortise Python overhead, small enough for L2/L3 caches
# and bounded memory (indices are [L, 8, K] int64).
CHUNK_POINTS = 1 << 16
# On a GPU each chunk costs a few hundred kernel launches and a copy back, whatever its
# size, so chunks there are as large as memory comfortably allows.
CUDA_CHUNK_POINTS = 1 << 21


def chunk_points(device: torch.device | str) -> int:
    return CUDA_CHUNK_POINTS if torch.device(device).type == "cuda" else CHUNK_POINTS


def _grid_blocks(nx: int, ny: int, nz: int, voxels: int, min_planes: int = 1):
    """(z0, z1, y0, y1) blocks of about ``voxels``, z-major: whole planes while at least
    ``min_planes`` of them fit, else that many planes (one for ``min_planes=1``) of fewer
    rows; ``min_planes=0`` never splits planes into rows."""
    nx = max(nx, 1)
    rows = ny if min_planes == 0 else min(ny, max(1, voxels // (nx * min_planes)))
    depth = max(1, voxels // (nx * max(rows, 1)))
    for z0 in range(0, nz, depth):
        for y0 in range(0, ny, rows):
            yield z0, min(nz, z0 + depth), y0, min(ny, y0 + rows)


def unit_axis(n_grid: int, start: int, stop: int) -> np.ndarray:
    """Normalised coordinates in [0, 1] of indices ``start..stop`` (inclusive) of an n-node axis."""
    idx = np.arange(start, stop + 1, dtype=np.float64)
    if n_grid <= 1:
        return np.zeros_like(idx)
    return idx / (n_grid - 1)


# Voxels per slab of output planes on the separable path: each level's lattice is gathered
# once per slab, so larger slabs amortise the coarse levels' gathers and Python overhead.
# 256^3 embryo decode with the MLP kernel (2 threads, best of 2; fp32 / bf16 s), 100:1 model:
# 2^17 1.85 / 1.20, 2^18 1.50-1.59 / 1.23-1.28, 2^19 1.48 / 1.02, 2^20 1.46 / 1.13; 800:1
# model 2^18 0.78-0.82 / 0.64-0.71, 2^19 0.70 / 0.56, 2^20 0.69 / 0.53. The slab's features
# take 64 MB at 2^19 (L=16, F=2).
SLAB_VOXELS = 1 << 19
# Voxels per block of the fused grid + MLP decode (kernels.mlp.grid_forward), where only the
# levels' y-blended lattice planes are held (67 MB for 32 planes of 256^2, L=16, F=2: what the
# features of 2^19 voxels took). 256^3 embryo decode, bf16, 2 threads, best of 3 (two runs):
# 100:1 quadratic model (L=16, 2 x 64) 2^19 1.22-1.23 s, 2^20 1.00-1.02, 2^21 0.95-0.98;
# 800:1 (L=8, 2 x 32) 0.49 / 0.46 / 0.34; 100:1 trilinear 1.04 / 0.97 / 0.91.
FUSED_BLOCK_VOXELS = 1 << 21
# Fewest output planes per block before blocks split rows: a level needs its taps' lattice
# planes for even one output plane, so thin blocks would redo most of the y blends.
FUSED_MIN_PLANES = 8
# Rows per MLP call. Full 256^3 decode of the embryo 100:1 model, batch-major MLP, 2 threads
# on this 2-core EPYC: 2^13 / 2^14 / 2^15 rows 3.24 / 3.18 / 3.15 s fp32, and bf16 (with a
# bf16 output layer, since made fp32) 2.83 / 2.25 / 2.02 s. Runs here vary by +-20 %.
MLP_CHUNK = 1 << 15


# "auto" takes bf16 when its RMS difference from fp32 is at most this share of the model's
# own RMS error (from the PSNR its file records): even fully correlated errors then cost under
# 20*log10(1.025) = 0.21 dB. benchmarks/compute_precision.py (100:1 fits): shares 0.006-0.024
# lost 0.000-0.009 dB (embryo, headsq, carotid, marschner-lobb); viscous fingers 0.065 lost
# 0.008 dB; nucleon 0.087 and hydrogen 0.10 lost 0.12 and 0.28 dB, and stay fp32.
BF16_ERROR_SHARE = 0.025
# Points of the fp32/bf16 comparison: 2^14 cost a few ms; on the embryo models the share
# varied by under 5 % over 5 seeds and was within 3 % of the whole 256^3 grid's.
BF16_CHECK_POINTS = 1 << 14


# "auto" also wants bf16 to be faster: its MLP must run at least this many times fp32's rate.
# 64 x 64 layers through the MLP kernel (benchmarks/speed.py): the 2-core AMD EPYC (Zen 4)
# 143 GMAC/s bf16 against 76 fp32; a 2-core Intel Xeon with AMX 82 against 121 on AVX512-BF16,
# where the 256^3 embryo model decoded in 2.01 s with bf16 and 1.55 s with fp32, and ~410
# against 130 since the kernel runs bf16 on AMX tiles (that decode 0.92 s against 1.52 s,
# before the post filter's kernel). The margin keeps a machine near parity from switching
# between runs.
BF16_MIN_SPEEDUP = 1.25


def bf16_is_native(device: torch.device | str) -> bool:
    """Whether bf16 GEMMs run natively (AVX512-BF16 / AMX on CPU, any CUDA GPU torch runs)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and torch.backends.mkldnn.is_available() and \
        bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@torch.no_grad()
def bf16_error(field: NeuralField, device: torch.device | str = "cpu") -> float:
    """RMS difference, in units of the network's output range, between the bf16 and fp32 MLP
    on fixed pseudo-random points (the same points every call: a decode is deterministic)."""
    points = torch.rand((BF16_CHECK_POINTS, 3), generator=torch.Generator().manual_seed(0)).to(device)
    feats = field.encoding.encode_feature_major(points)
    diff = field.mlp(feats, torch.bfloat16, {}) - field.mlp(feats, torch.float32, {})
    return float(diff.double().square().mean().sqrt())


_bf16_speedups: dict[tuple, float] = {}


@torch.no_grad()
def bf16_speedup(field: NeuralField, device: torch.device | str) -> float:
    """How many times faster ``field``'s MLP runs in bf16 than in fp32 on ``device``, through
    the path a decode takes (:meth:`NeuralField.mlp` with a workspace: the fused kernel, or
    torch's batch-major GEMMs), on 2^16 columns; measured once per device type, thread count
    and MLP shape (best of 3 each, ~30 ms)."""
    device = torch.device(device)
    key = (device.type, torch.get_num_threads(), tuple(field.config.mlp_shapes()))
    if key not in _bf16_speedups:
        if device.type != "cpu":
            _bf16_speedups[key] = float("inf")   # GPUs: bf16 tensor cores, never slower
        else:
            feats = torch.rand((field.config.encoding.n_output_dims, 1 << 16), generator=torch.Generator().manual_seed(0))

            def best(dtype: torch.dtype) -> float:
                workspace: dict = {}
                field.mlp(feats, dtype, workspace)
                times = []
                for _ in range(3):
                    start = time.perf_counter()
                    field.mlp(feats, dtype, workspace)
                    times.append(time.perf_counter() - start)
                return min(times)

            _bf16_speedups[key] = best(torch.float32) / best(torch.bfloat16)
    return _bf16_speedups[key]


def mlp_dtype(field: NeuralField, compute: str, device: torch.device | str,
              model_psnr: float | None) -> torch.dtype:
    """The MLP's compute dtype for a decode asked for at ``compute`` (one of :data:`COMPUTE_CHOICES`).

    "auto" is bf16 only where it runs natively and at least :data:`BF16_MIN_SPEEDUP` times
    faster than fp32 (:func:`bf16_speedup`), the model's PSNR is known, and
    :func:`bf16_error` is at most :data:`BF16_ERROR_SHARE` of the model's RMS error.
    """
    if compute not in COMPUTE_CHOICES:
        raise InputError(f"compute must be one of {', '.join(COMPUTE_CHOICES)}; got {compute!r}")
    if compute != "auto":
        return torch.float32 if compute == "float32" else torch.bfloat16
    if model_psnr is None or not np.isfinite(model_psnr) or not bf16_is_native(device) \
            or bf16_speedup(field, device) < BF16_MIN_SPEEDUP:
        return torch.float32
    model_rms = 10.0 ** (-float(model_psnr) / 20.0)
    return torch.bfloat16 if bf16_error(field, device) <= BF16_ERROR_SHARE * model_rms else torch.float32


def _mlp_in_chunks(field: NeuralField, feats: torch.Tensor, dtype: torch.dtype, chunk: int,
                   workspace: dict) -> torch.Tensor:
    k = feats.shape[1]
    if k <= chunk or mlp_kernel.usable(feats, dtype):   # the kernel tiles the batch itself
        return field.mlp(feats, dtype, workspace)
    c = field.config.n_outputs
    out = scratch(workspace, "mlp out", (k,) if c == 1 else (k, c), feats)
    for a in range(0, k, chunk):
        out[a:a + chunk] = field.mlp(feats[:, a:a + chunk], dtype, workspace)
    return out


def _components(field: NeuralField) -> tuple[int, ...]:
    """Trailing output shape: () for a scalar network, (C,) for C components."""
    c = field.config.n_outputs
    return () if c == 1 else (c,)


@torch.no_grad()
def evaluate_grid(field: NeuralField, ux: np.ndarray, uy: np.ndarray, uz: np.ndarray,
                  device: torch.device | str = "cpu",
                  progress: Callable[[float], None] | None = None,
                  dtype: torch.dtype = torch.float32, into: torch.Tensor | None = None,
                  finish: tuple[np.dtype, Callable[[torch.Tensor], torch.Tensor]] | None = None
                  ) -> np.ndarray | torch.Tensor:
    """Network output on the tensor-product grid ``uz x uy x ux``, shape ``[nz, ny, nx]``.

    Grid encodings (hash and dense grids) take the separable path
    (:class:`~neuralvol.encodings.hashgrid.SeparableGrid`): each level is gathered on the
    lattice points the grid touches and interpolated along z, y, x, slab by slab; on CUDA
    with Triton, one kernel launch per slab encodes its voxels instead. Other
    encodings fall back to :func:`evaluate_grid_per_voxel`. ``dtype`` is the MLP's compute
    precision (see :meth:`NeuralField.mlp`).

    ``into``, a float32 tensor of the output's shape on ``device``, receives the values
    instead of a new numpy array and is returned: a GPU decode then stays on the GPU, with
    no copy to the host (grid encodings only).

    ``finish``, ``(numpy dtype, function)``, maps each slab's float32 values to the output's
    values (a tensor of any dtype numpy casts to that dtype) while the slab is still in
    cache, in torch's threads, and the result has that dtype: see
    :meth:`neuralvol.volume.NeuralVolume.decode`. Not with ``into``.
    """
    nx, ny, nz = len(ux), len(uy), len(uz)
    comps = _components(field)
    if into is not None and (tuple(into.shape) != (nz, ny, nx) + comps or into.dtype != torch.float32
                             or into.device.type != torch.device(device).type
                             or not hasattr(field.encoding, "separable_grid")):
        raise InputError(f"into must be a float32 tensor of shape {(nz, ny, nx) + comps} on {device} "
                         f"(grid encodings only), got {tuple(into.shape)} {into.dtype} on {into.device}")
    if not hasattr(field.encoding, "separable_grid"):
        values = evaluate_grid_per_voxel(field, ux, uy, uz, device=device, progress=progress, dtype=dtype)
        return values if finish is None else finish[1](torch.from_numpy(values)).numpy().astype(finish[0])
    if finish is not None and into is not None:
        raise InputError("evaluate_grid takes into= or finish=, not both")
    out_dtype, finish_slab = (np.float32, None) if finish is None else finish
    out = np.empty((nz, ny, nx) + comps, dtype=out_dtype) if into is None else into
    axes = [torch.as_tensor(u, dtype=torch.float32, device=device) for u in (ux, uy, uz)]
    table = field.encoding.table
    # On CUDA one Triton launch encodes a slab's voxels directly; the separable path's
    # per-level, per-plane operations would be launch-bound there (see kernels.hashgrid_triton).
    kernel_levels = None
    if field.encoding.triton_usable(axes[0]):
        kernel_levels = field.encoding.kernel_levels(table.device)
    else:
        grid = field.encoding.separable_grid(*axes)
    # On CPU with the C++ kernels the MLP is fed from each level's lattice planes, row by row,
    # so the [F * L, K] features never go through memory (kernels.mlp.grid_forward).
    fused = (kernel_levels is None and torch.device(device).type == "cpu" and grid.planes_usable()
             and mlp_kernel.grid_usable(dtype))
    chunk = chunk_points(device) if torch.device(device).type == "cuda" else MLP_CHUNK
    workspace = {}   # the slab's features and the MLP's activations, reused slab after slab
    n_feats = field.encoding.n_output_dims
    # fused blocks split rows of very wide planes (a block's lattice planes grow with its rows,
    # whatever its depth); features() takes whole planes
    blocks = (_grid_blocks(nx, ny, nz, FUSED_BLOCK_VOXELS, FUSED_MIN_PLANES) if fused
              else _grid_blocks(nx, ny, nz, max(SLAB_VOXELS, chunk), min_planes=0))
    for z0, z1, y0, y1 in blocks:
        if fused:
            values = field.mlp_from_planes(grid.level_planes(z0, z1, y0, y1, workspace), (z1 - z0, y1 - y0, nx), dtype)
        else:
            feats = scratch(workspace, "features", (n_feats, (z1 - z0) * ny * nx), table)
            if kernel_levels is not None:
                hashgrid_triton.forward_grid_into(kernel_levels, table.detach(), axes, z0, z1, feats)
            else:
                grid.features(z0, z1, out=feats)
            values = _mlp_in_chunks(field, feats, dtype, chunk, workspace)
        values = values.reshape((z1 - z0, y1 - y0, nx) + comps).float()
        if finish_slab is not None:
            values = finish_slab(values)
        out[z0:z1, y0:y1] = values if into is not None else values.cpu().numpy()
        if progress is not None:
            progress((z0 * ny + (z1 - z0) * y1) / (nz * ny))
    return out


@torch.no_grad()
def evaluate_grid_per_voxel(field: NeuralField, ux: np.ndarray, uy: np.ndarray, uz: np.ndarray,
                            device: torch.device | str = "cpu",
                            progress: Callable[[float], None] | None = None,
                            dtype: torch.dtype = torch.float32) -> np.ndarray:
    """:func:`evaluate_grid` by a gather of 8 corners per voxel and level (any encoding).

    Per-axis index terms are computed once per axis and combined by broadcasting, so the
    work per voxel is only the gather and the MLP. The reference the separable path is
    tested and benchmarked against.
    """
    nx, ny, nz = len(ux), len(uy), len(uz)
    comps = _components(field)
    out = np.empty((nz, ny, nx) + comps, dtype=np.float32)
    tx = torch.as_tensor(ux, dtype=torch.float32, device=device)
    ty_all = torch.as_tensor(uy, dtype=torch.float32, device=device)
    tz_all = torch.as_tensor(uz, dtype=torch.float32, device=device)
    blocks = list(_grid_blocks(nx, ny, nz, chunk_points(device)))
    for i, (z0, z1, y0, y1) in enumerate(blocks):
        shape = (z1 - z0, y1 - y0, nx)
        axes = (tx[None, None, :], ty_all[None, y0:y1, None], tz_all[z0:z1, None, None])
        feats = field.encoding.encode_grid(axes, shape)
        out[z0:z1, y0:y1, :] = field.mlp(feats, dtype).reshape(shape + comps).float().cpu().numpy()
        if progress is not None:
            progress((i + 1) / len(blocks))
    return out


@torch.no_grad()
def evaluate_points(field: NeuralField, unit_points: np.ndarray,
                    device: torch.device | str = "cpu") -> np.ndarray:
    """Network output at scattered points ``[N, 3]`` given in [0, 1]^3 (x, y, z).

    The MLP runs as in a grid decode (the fused kernel where the CPU has AVX-512, else
    batch-major GEMMs), fp32.
    """
    n = unit_points.shape[0]
    out = np.empty((n,) + _components(field), dtype=np.float32)
    step = chunk_points(device)
    workspace = {}
    for start in range(0, n, step):
        chunk = torch.as_tensor(unit_points[start:start + step], dtype=torch.float32, device=device)
        values = field.mlp(field.encoding.encode_feature_major(chunk), torch.float32, workspace)
        out[start:start + chunk.shape[0]] = values.float().cpu().numpy()
    return out
