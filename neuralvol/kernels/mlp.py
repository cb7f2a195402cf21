"""The decoder's MLP on CPU through the fused C++ kernel (``mlp_cpu.cpp``), inference only.

Every layer of a tile of 32 voxels runs while its activations stay in L1, with the ReLU and
the bf16 casts done on the accumulators (see the source for the layout). Measured on this
project's 2-core EPYC (Zen 4, 2 threads), 32 -> 64 -> 64 -> 1, 2^18 voxels per call: fp32
16-18 ms (92-102 GMAC/s), bf16 10-11 ms (143-161 GMAC/s); oneDNN's GEMMs with torch's
elementwise passes took 30 ms and 27 ms for the same work (benchmarks/speed.py times the
whole decode both ways). Needs AVX-512 (fp32) and AVX512-BF16 (bf16); elsewhere the
caller keeps torch's batch-major GEMMs (:meth:`NeuralField._mlp_batch_major`). Where the CPU
also has AMX (a Xeon since Sapphire Rapids), bf16 hidden layers run on its tiles: on a 2-core
Xeon, 2^18 voxels 3.9 ms (414 GMAC/s, torch's own AMX GEMM 427 for one 64 x 64 layer) against
19.3 ms on AVX512-BF16 and 12.3 ms in fp32 (:func:`without_amx` keeps the old path callable).
"""
from __future__ import annotations

import torch

from . import build
from .hashgrid import tap_weights

_gemms_only = build.Switch()  # on inside torch_gemms()
_unfused = build.Switch()     # on inside features_then_mlp()
_no_amx = build.Switch()      # on inside without_amx()


def torch_gemms():
    """Inside, the decoder's MLP runs as torch's GEMMs, the path this kernel replaced
    (benchmarks/speed.py times both in one run); the hash-grid kernels stay on."""
    return _gemms_only.on()


def features_then_mlp():
    """Inside, a grid decode writes the encoding's features out whole, then runs the MLP
    kernel on them: the path :func:`grid_forward` replaced (benchmarks/speed.py times both)."""
    return _unfused.on()


def without_amx():
    """Inside, bf16 runs on AVX512-BF16 even where the CPU has AMX: the path AMX replaced
    (benchmarks/speed.py times both in one run)."""
    return _no_amx.on()


def _arithmetic(dtype: torch.dtype) -> int:
    """The kernel's ``arithmetic`` argument: 0 fp32, 1 bf16 on the fastest unit (AMX where the
    CPU has it), 2 bf16 on AVX512-BF16."""
    if dtype != torch.bfloat16:
        return 0
    return 2 if _no_amx else 1


def amx() -> bool:
    """Whether bf16 hidden layers run on AMX tiles here (and not inside :func:`without_amx`)."""
    lib = build.library()
    return lib is not None and not _no_amx and lib.nv_mlp_isa() >= 3


def usable(features: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether the kernel can run this MLP: CPU float32 features with unit batch stride, an
    fp32 or bf16 computation this CPU has the instructions for."""
    lib = build.library()
    if lib is None or _gemms_only or features.device.type != "cpu" or features.dtype != torch.float32:
        return False
    if features.dim() != 2 or features.stride(1) != 1 or dtype not in (torch.float32, torch.bfloat16):
        return False
    return lib.nv_mlp_isa() >= (2 if dtype == torch.bfloat16 else 1)


def _flat(weights: list[torch.Tensor], output_bias: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The kernel's layer sizes (input first) and flat parameters (weights, then the bias)."""
    dims = torch.tensor([weights[0].shape[1]] + [w.shape[0] for w in weights], dtype=torch.int32)
    params = torch.cat([w.detach().reshape(-1).float() for w in weights] + [output_bias.detach().float()])
    return dims, params


def forward(weights: list[torch.Tensor], output_bias: torch.Tensor, features: torch.Tensor,
            dtype: torch.dtype) -> torch.Tensor:
    """``[F_in, K]`` feature-major inputs -> ``[K, C]`` outputs of the ReLU MLP whose
    ``[out, in]`` weight matrices are ``weights`` (columns in the features' order), with
    ``output_bias`` added. The caller checked :func:`usable`."""
    k = features.shape[1]
    dims, params = _flat(weights, output_bias)
    out = torch.empty((k, weights[-1].shape[0]), dtype=torch.float32)
    done = build.library().nv_mlp_forward(features.data_ptr(), k, features.stride(0), len(weights),
                                          dims.data_ptr(), params.data_ptr(), _arithmetic(dtype),
                                          out.data_ptr(), torch.get_num_threads())
    if done != 0:
        raise RuntimeError("the MLP kernel refused a computation usable() accepted")
    return out


def grid_usable(dtype: torch.dtype) -> bool:
    """Whether :func:`grid_forward` can run an MLP in ``dtype`` on this CPU (as :func:`usable`)."""
    return not _unfused and usable(torch.empty((1, 1)), dtype)


def grid_forward(weights: list[torch.Tensor], output_bias: torch.Tensor, planes: list, shape: tuple[int, int, int],
                 dtype: torch.dtype, out: torch.Tensor | None = None) -> torch.Tensor:
    """The MLP on a slab of a regular grid, fed straight from a grid encoding's y-blended
    lattice planes (:meth:`~neuralvol.encodings.hashgrid.SeparableGrid.level_planes`, one
    ``(planes [F, nzl, ny, nx], rz, z weights)`` per level): the features of each output row
    are blended along z into a cache-resident buffer and go through the MLP at once, never
    written to memory as ``[F * L, K]``. The same bits as ``SeparableGrid.features`` then
    :func:`forward`. ``shape`` is the slab's ``(nz, ny, nx)``; returns ``[nz * ny * nx, C]``.
    The caller checked :func:`grid_usable`.
    """
    nz, ny, nx = shape
    n_levels, n_features = len(planes), planes[0][0].shape[0]
    dims, params = _flat(weights, output_bias)
    blended = [p.contiguous() for p, _, _ in planes]
    rz = [r.contiguous() for _, r, _ in planes]
    wz = [tap_weights(w) for _, _, w in planes]
    taps = len(planes[0][2])
    addresses = torch.tensor([p.data_ptr() for p in blended] + [p.shape[1] for p in blended], dtype=torch.int64)
    rz_addresses = torch.tensor([r.data_ptr() for r in rz], dtype=torch.int64)
    wz_addresses = torch.tensor([w.data_ptr() for w in wz], dtype=torch.int64)
    c = weights[-1].shape[0]
    if out is None:
        out = torch.empty((nz * ny * nx, c), dtype=torch.float32)
    done = build.library().nv_grid_mlp_forward(
        n_levels, n_features, addresses.data_ptr(), rz_addresses.data_ptr(), wz_addresses.data_ptr(), taps,
        nz, ny, nx, len(weights), dims.data_ptr(), params.data_ptr(), _arithmetic(dtype), out.data_ptr(),
        torch.get_num_threads())
    if done != 0:
        raise RuntimeError("the grid MLP kernel refused a computation grid_usable() accepted")
    return out
