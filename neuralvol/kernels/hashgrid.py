"""The hash-grid encoding of scattered points through the C++ kernel, with autograd.

One call does what :meth:`HashGridEncoding.corner_indices_weights` and
:meth:`~HashGridEncoding.features_from_corners` do in ~25 PyTorch operations per level,
without materialising the ``[L, C, N]`` index and weight tensors (C = 8 corners for
trilinear levels, 27 or 64 for quadratic or cubic ones). Measured at batch 2^13,
L=16, F=2 on one core of this project's 2-core machine: the encoding's forward and
backward took ~30 ms of a ~36 ms training step in PyTorch; see ``benchmarks/speed.py``
for the steps/s it gives.
"""
from __future__ import annotations

import numpy as np
import torch

from . import build
from ..workspace import scratch


class LevelTable:
    """The per-level constants the kernels take, as contiguous tensors on one device (made
    once per device): CPU for the C++ kernel, CUDA for :mod:`.hashgrid_triton`."""

    def __init__(self, encoding, device: torch.device | str = "cpu"):
        cfg = encoding.config
        self.n_levels, self.n_features, self.n_entries = cfg.n_levels, cfg.n_features, cfg.n_entries
        self.offsets = torch.tensor(encoding._offsets[:cfg.n_levels], dtype=torch.int64, device=device)
        self.sizes = torch.tensor(encoding._sizes, dtype=torch.int64, device=device)
        self.res = torch.tensor(encoding._res, dtype=torch.int64, device=device)
        self.dense = torch.tensor(encoding._dense, dtype=torch.uint8, device=device)
        # float32 exactly as PyTorch rounds a Python float scalar against a float32 tensor.
        self.scales = torch.from_numpy(np.asarray(encoding._scales, dtype=np.float32)).to(device)
        self.taps = cfg.interpolator.taps  # lattice points per axis (2 = trilinear)

    def args(self):
        """The C++ kernel's pointer arguments (CPU tables)."""
        return (self.offsets.data_ptr(), self.sizes.data_ptr(), self.res.data_ptr(), self.dense.data_ptr(),
                self.scales.data_ptr())


def _forward(lib, levels: LevelTable, coords: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    n = coords.shape[0]
    out = torch.empty((levels.n_features * levels.n_levels, n), dtype=torch.float32)
    lib.nv_hashgrid_forward(coords.data_ptr(), n, table.data_ptr(), table.shape[1], levels.n_features,
                            levels.n_levels, *levels.args(), levels.taps, out.data_ptr(), torch.get_num_threads())
    return out


class _KernelEncode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, table: torch.Tensor, coords: torch.Tensor, levels: LevelTable, lib):
        ctx.save_for_backward(coords)
        ctx.levels, ctx.lib, ctx.table_shape = levels, lib, table.shape
        return _forward(lib, levels, coords, table)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor):
        (coords,) = ctx.saved_tensors
        levels = ctx.levels
        grad_out = grad_out.contiguous()
        grad = torch.zeros(ctx.table_shape, dtype=torch.float32)
        ctx.lib.nv_hashgrid_backward(coords.data_ptr(), coords.shape[0], grad_out.data_ptr(), ctx.table_shape[1],
                                     levels.n_features, levels.n_levels, *levels.args(), levels.taps, grad.data_ptr(),
                                     torch.get_num_threads())
        return grad, None, None, None


def usable(table: torch.Tensor, coords: torch.Tensor) -> bool:
    """Whether the kernel can encode these points (CPU float32; the library built)."""
    return (table.device.type == "cpu" and coords.device.type == "cpu" and table.dtype == torch.float32
            and coords.dtype == torch.float32 and not coords.requires_grad and build.library() is not None)


def encode_points(encoding, coords: torch.Tensor) -> torch.Tensor:
    """``[N, 3]`` points -> ``[F * L, N]`` features (feature-major), differentiable in the table."""
    lib = build.library()
    levels = encoding.kernel_levels()
    coords = coords.contiguous()
    table = encoding.table
    if torch.is_grad_enabled() and table.requires_grad:
        return _KernelEncode.apply(table, coords, levels, lib)
    return _forward(lib, levels, coords, table.detach().contiguous())


def tap_weights(w) -> torch.Tensor:
    """One axis's per-tap weights (a tensor per tap) as the C++ grid kernels take them:
    ``[taps, n]`` contiguous, or for two taps the upper weight alone, as torch.lerp takes it."""
    if len(w) == 2:
        return w[1].to(torch.float32).contiguous()
    return torch.stack([t.reshape(-1) for t in w]).to(torch.float32).contiguous()


def _level_args(axes):
    """``((tx, rx, wx), (ty, ry, wy), (tz, rz, wz))`` as the C++ level kernels take them (index
    terms, first lattice positions contiguous; :func:`tap_weights`), and the tap count."""
    return [(t.contiguous(), r.contiguous(), tap_weights(w)) for t, r, w in axes], len(axes[0][2])


def grid_usable(table: torch.Tensor) -> bool:
    """Whether the C++ grid level kernels can read this table (CPU float32; the library built)."""
    return table.device.type == "cpu" and table.dtype == torch.float32 and build.library() is not None


def grid_level_into(out: torch.Tensor, level: int, n_levels: int, table: torch.Tensor, dense: bool, size: int,
                    offset: int, axes) -> bool:
    """One level of :meth:`SeparableGrid.features` into ``out`` (``[F * L, K]``, row ``f * L + level``).

    ``axes`` is ``((tx, rx, wx), (ty, ry, wy), (tz, rz, wz))``: per axis the lattice's index
    terms, each output coordinate's first lattice position and its weights (one tensor per
    tap). Returns False (and writes nothing) when the kernel cannot run here.
    """
    if not grid_usable(table) or out.device.type != "cpu" or not out.is_contiguous():
        return False
    lib = build.library()
    ((tx, rx, wx), (ty, ry, wy), (tz, rz, wz)), taps = _level_args(axes)
    table = table.contiguous()
    k = out.shape[1]
    lib.nv_grid_level(table.data_ptr(), table.shape[1], table.shape[0], int(dense), size, offset,
                      tx.data_ptr(), tx.numel(), ty.data_ptr(), ty.numel(), tz.data_ptr(), tz.numel(),
                      rx.data_ptr(), wx.data_ptr(), rx.numel(), ry.data_ptr(), wy.data_ptr(), ry.numel(),
                      rz.data_ptr(), wz.data_ptr(), rz.numel(), taps,
                      out.data_ptr() + level * k * out.element_size(), n_levels * k, torch.get_num_threads())
    return True


def grid_level_planes(table: torch.Tensor, dense: bool, size: int, offset: int, axes,
                      workspace: dict | None = None, level: int = 0) -> torch.Tensor | None:
    """The level's lattice blended along x and y onto the output's rows: ``[F, nzl, ny, nx]``
    (nzl lattice z planes), what :func:`grid_level_into` blends along z; None when the kernel
    cannot run here. ``axes`` as for :func:`grid_level_into` (its z entry is not used).
    With a ``workspace`` (:func:`neuralvol.workspace.scratch`) the result is level ``level``'s
    buffer there and the kernel's x-pass rows one buffer shared by the levels, instead of
    fresh memory (:meth:`~neuralvol.encodings.hashgrid.SeparableGrid.level_planes` passes the
    same workspace block after block)."""
    if not grid_usable(table):
        return None
    lib = build.library()
    ((tx, rx, wx), (ty, ry, wy), (tz, _, _)), taps = _level_args(axes)
    table = table.contiguous()
    shape = (table.shape[0], tz.numel(), ry.numel(), rx.numel())
    rows_ptr = None
    if workspace is None:
        planes = torch.empty(shape, dtype=torch.float32)
    else:
        planes = scratch(workspace, ("planes", level), shape, table)
        rows_ptr = scratch(workspace, "x rows", (shape[0] * shape[1] * ty.numel() * shape[3],), table).data_ptr()
    lib.nv_grid_level_planes(table.data_ptr(), table.shape[1], table.shape[0], int(dense), size, offset,
                             tx.data_ptr(), tx.numel(), ty.data_ptr(), ty.numel(), tz.data_ptr(), tz.numel(),
                             rx.data_ptr(), wx.data_ptr(), rx.numel(), ry.data_ptr(), wy.data_ptr(), ry.numel(),
                             taps, planes.data_ptr(), rows_ptr, torch.get_num_threads())
    return planes
