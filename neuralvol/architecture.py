"""Choosing the network's shape for a byte budget.

Rules from measurements. The ladder's rungs from 2k parameters up are the shapes a
pure-PyTorch prototype used per parameter budget (60 s on 2 CPU cores, float16 weights:
28.8 dB on the CT head and 56.6 dB on hydrogen at 1:100). Ours: the MLP narrows and the
grid coarsens as the parameter budget shrinks; the finest grid resolution is about
``2 * P^(1/3)`` for ``P`` parameters, capped by the largest volume dimension (finer levels
than that are so heavily hashed that they cost more than they resolve: at P = 3.5k-10k,
halving the finest resolution from the volume's size gained 0.7-1.3 dB in 30 s on the CT
head, hydrogen and viscous fingers); the hash-table size ``T`` (a multiple of 8, not
necessarily a power of two) is then the largest that keeps the parameter count in budget.
"""
from __future__ import annotations

import dataclasses

from .encodings import (ENCODING_KINDS, HASHGRID_CONFIGS, DenseGridConfig, FrequencyConfig, HashGridConfig,
                        IdentityConfig, TriangleWaveConfig, hashgrid_config)
from .errors import InputError
from .model import ModelConfig

# (minimum parameter budget, levels, features, base resolution, MLP width, hidden layers)
LADDER = (
    (100_000, 16, 2, 8, 64, 2),
    (30_000, 16, 2, 8, 32, 2),
    (8_000, 12, 2, 8, 32, 2),
    (2_000, 8, 2, 4, 16, 2),
    (600, 6, 2, 4, 8, 2),
    (0, 4, 1, 2, 8, 1),
)

# B-spline levels (quadratic, cubic) under LADDER's 100k-parameter rung take at most this
# many levels: the same parameters in fewer, larger tables (less hashing) and faster steps
# (~1.6x the steps in the same time). Quadratic, 60 s, 1 thread, two processes side by side,
# 16 or 12 levels -> 8 (dB): walnut 100:1 (40k parameters) +0.70, 200:1 +0.91, 400:1 +0.52,
# headsq 100:1 +0.37, isabel 100:1 +0.29 and 200:1 -0.08, viscous fingers 100:1 +0.22 and
# -0.37 (two runs), hydrogen 100:1 -0.06, carotid 100:1 -0.01; embryo and Richtmyer-Meshkov
# 800:1 (30k, 300 s) +0.08 and -0.01. Not above 100k: Richtmyer-Meshkov 100:1 (244k, 300 s)
# lost 0.80 with 8 levels (embryo 100:1 +0.03). Nor 6 levels where the ladder has 8: viscous
# fingers 200:1 -0.96, carotid 200:1 -0.20.
BSPLINE_MAX_LEVELS = 8
BSPLINE_FEWER_LEVELS_BELOW = 100_000

# Budgets of fewer parameters get one dense level and a linear read-out (see linear_grid).
LINEAR_GRID_BELOW = 73


def _with_table(base: ModelConfig, table_size: int) -> ModelConfig:
    return dataclasses.replace(base, encoding=dataclasses.replace(base.encoding, table_size=table_size))


def fit_table_size(base: ModelConfig, max_params: int) -> ModelConfig | None:
    """Largest multiple-of-8 table size keeping ``n_params <= max_params`` (None if none does)."""
    smallest = _with_table(base, 8)
    if smallest.n_params > max_params:
        return None
    # Past the finest level's dense size every level is dense: more table buys nothing.
    largest = max(r ** 3 for r in smallest.encoding.level_resolutions())
    lo, hi = 1, (largest + 7) // 8
    if _with_table(base, hi * 8).n_params <= max_params:
        return _with_table(base, hi * 8)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _with_table(base, mid * 8).n_params <= max_params:
            lo = mid
        else:
            hi = mid
    return _with_table(base, lo * 8)


def linear_grid(dims: tuple[int, int, int], max_params: int) -> ModelConfig | None:
    """The largest single dense level read out linearly (no hidden layer): trilinear
    interpolation of an ``r^3`` grid, ``r^3 + 2`` parameters. None below ``r = 2``."""
    best = None
    for r in range(2, max(2, max(dims)) + 1):
        config = ModelConfig(HashGridConfig(1, 1, _round8(r ** 3), r, r), 1, 0)
        if config.n_params > max_params:
            break
        best = config
    return best


def _round8(n: int) -> int:
    return (n + 7) // 8 * 8


def choose_architecture(dims: tuple[int, int, int], max_params: int, interpolation: str = "linear") -> ModelConfig:
    """The network for a volume of ``dims`` (x, y, z) with at most ``max_params`` parameters,
    its hash-grid levels blended by ``interpolation`` (see :data:`encodings.hashgrid.INTERPOLATIONS`;
    the linear read-out of the tiniest budgets is always trilinear)."""
    if max_params < LINEAR_GRID_BELOW:
        config = linear_grid(dims, max_params)
        if config is not None:
            return config
    finest = max(2, min(max(dims), max(16, round(2.0 * max_params ** (1.0 / 3.0)))))
    for threshold, levels, features, base_res, width, layers in LADDER:
        if max_params < threshold:
            continue
        base_res = min(base_res, finest)
        if interpolation != "linear" and max_params < BSPLINE_FEWER_LEVELS_BELOW:
            levels = min(levels, BSPLINE_MAX_LEVELS)
        base = ModelConfig(hashgrid_config(interpolation, levels, features, 8, base_res, finest), width, layers)
        config = fit_table_size(base, max_params)
        if config is not None:
            return config
    raise InputError(f"the size budget allows only {max_params} parameters, fewer than the smallest network "
                     f"needs; ask for a lower ratio or a larger size")


# Parameter-free encodings: the whole budget goes to the MLP (hidden layers, encoding config).
MLP_ONLY = {"frequency": (3, FrequencyConfig(8)), "triangle_wave": (3, TriangleWaveConfig(12)),
            "identity": (3, IdentityConfig())}


def _widest_mlp(encoding, layers: int, max_params: int) -> ModelConfig | None:
    best = None
    for width in range(2, 4097):
        config = ModelConfig(encoding, width, layers)
        if config.n_params > max_params:
            break
        best = config
    return best


def _dense_grid(dims, max_params: int) -> ModelConfig | None:
    """Dense grid with the hash grid's ladder of levels/features/MLP; the finest
    resolution is the largest (up to the volume's) whose full grids fit the budget."""
    finest_cap = max(2, max(dims))
    for threshold, levels, features, base_res, width, layers in LADDER:
        if max_params < threshold:
            continue
        levels = min(levels, 8)
        base_res = min(base_res, finest_cap)
        best = None
        for finest in range(base_res, finest_cap + 1):
            config = ModelConfig(DenseGridConfig(levels, features, base_res, finest), width, layers)
            if config.n_params > max_params:
                break
            best = config
        if best is not None:
            return best
    return None


def choose_architecture_for(encoding: str, dims: tuple[int, int, int], max_params: int) -> ModelConfig:
    """The network of ``encoding`` kind for ``dims`` with at most ``max_params`` parameters."""
    for interpolation, config in HASHGRID_CONFIGS.items():
        if encoding == config.kind:
            return choose_architecture(dims, max_params, interpolation)
    if encoding not in ENCODING_KINDS:
        raise InputError(f"unknown encoding {encoding!r}; use one of {', '.join(ENCODING_KINDS)}")
    if encoding == "dense_grid":
        config = _dense_grid(dims, max_params)
    else:
        layers, enc = MLP_ONLY[encoding]
        config = _widest_mlp(enc, layers, max_params) or _widest_mlp(enc, 1, max_params)
    if config is None:
        raise InputError(f"the size budget allows only {max_params} parameters, fewer than the smallest "
                         f"{encoding} network needs; ask for a lower ratio or a larger size")
    return config


def choose_architecture_with_outputs(encoding: str, dims: tuple[int, int, int], max_params: int,
                                     n_outputs: int = 1) -> ModelConfig:
    """:func:`choose_architecture_for` with ``n_outputs`` linear outputs (a multi-component
    field): the same ladder, sized so that the extra output rows fit ``max_params`` too."""
    config = choose_architecture_for(encoding, dims, max_params)
    if n_outputs == 1:
        return config
    budget = max_params
    for _ in range(8):
        base = choose_architecture_for(encoding, dims, budget)
        config = dataclasses.replace(base, n_outputs=n_outputs)
        if config.n_params <= max_params:
            return config
        # plan the scalar network without what the extra output rows cost (at least the excess)
        budget = min(max_params - (config.n_params - base.n_params), budget - (config.n_params - max_params))
        if budget <= 0:
            break
    raise InputError(f"the size budget allows only {max_params} parameters, too few for a network with "
                     f"{n_outputs} outputs; ask for a lower ratio or a larger size")
