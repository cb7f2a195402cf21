"""Uniform scalar quantisation of a network's parameters, group by group.

A *group* is a run of one stored tensor that shares a quantisation step: one level of a
grid encoding's table, one MLP weight matrix (the output bias rides with the last one).
A parameter ``w`` of a group with step ``s`` is stored as the integer symbol
``q = round(w / s)`` and decoded as ``s * q``. There is no offset: tables and weights are
centred on zero, and zero staying exact keeps the many untouched hash entries at symbol 0,
which the entropy coder then stores almost for free.

Step sizes follow the classic high-rate allocation: the error a group adds to the output
grows with ``s^2`` times its sensitivity, its rate falls with ``n log2 s``, so the best
steps satisfy ``s_g^2 proportional to n_g / sensitivity_g``. Tables take one global step scaled by
``sqrt(n_g / n_max)`` (small coarse levels get finer steps); MLP matrices, few parameters
that every output depends on, get ``bits``-bit steps over their own range.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from .bitstream.records import StorageEntry
from .model import NeuralField

MLP_BITS = 8
# Symbols are stored as int8 when every group fits, else int16; a table step so fine that
# symbols overflow int16 is never useful (it would cost more than float16).
SYMBOL_LIMIT = 2 ** 15 - 1


@dataclass
class Group:
    tensor: str  # "encoding" or "mlp": the stored tensor (flattened) the group is a run of
    start: int
    stop: int
    kind: str  # "table" or "mlp"
    step: float = 0.0

    @property
    def size(self) -> int:
        return self.stop - self.start


def parameter_groups(field: NeuralField) -> list[Group]:
    """The quantisation groups of a network, in storage order (encoding first, then MLP)."""
    groups = []
    table = field.encoding.table
    n_features = table.shape[0] if table.ndim == 2 else 1
    offsets = getattr(field.encoding.config, "level_offsets", None)
    if table.numel():
        bounds = offsets() if callable(offsets) else [0, table.numel() // n_features]
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            # feature-major [F, N]: level l is columns lo..hi of every feature row
            for f in range(n_features):
                groups.append(Group("encoding", f * table.shape[-1] + lo, f * table.shape[-1] + hi, "table"))
    start = 0
    for i, w in enumerate(field.weights):
        stop = start + w.numel() + (field.output_bias.numel() if i == len(field.weights) - 1 else 0)
        groups.append(Group("mlp", start, stop, "mlp"))
        start = stop
    return groups


def flat_tensors(field: NeuralField) -> dict[str, np.ndarray]:
    return {name: t.detach().cpu().numpy().astype(np.float32).reshape(-1)
            for name, t in field.named_tensors().items()}


def assign_steps(groups: list[Group], flat: dict[str, np.ndarray], table_step: float,
                 mlp_bits: int = MLP_BITS) -> list[Group]:
    """Set every group's step: tables from the global ``table_step``, MLP from its range."""
    n_max = max((g.size for g in groups if g.kind == "table"), default=1)
    for g in groups:
        values = flat[g.tensor][g.start:g.stop]
        if g.kind == "table":
            g.step = float(table_step * np.sqrt(g.size / n_max))
        else:
            peak = float(np.max(np.abs(values))) if values.size else 0.0
            # rounded up: the largest weight's symbol stays within mlp_bits
            g.step = short_float(peak / (2 ** (mlp_bits - 1) - 1), up=True) if peak > 0 else 1.0
    return groups


# Quantisation steps have this many significant digits: the compact header stores a step as
# an exponent byte and a varint mantissa, 3 bytes for 3 digits against 4 for 6, and rate
# control's bisection stops at 1 % anyway (neuralvol.bitstream.budget.steps_for_budget).
STEP_DIGITS = 3


def short_float(value: float, up: bool = False) -> float:
    """``value`` to :data:`STEP_DIGITS` significant digits (rounded up when ``up``): steps
    are chosen from these, so the header spells them in a few bytes and they decode exactly."""
    rounded = float(f"{value:.{STEP_DIGITS - 1}e}")
    if up and rounded < value:
        exponent = math.floor(math.log10(rounded)) - (STEP_DIGITS - 1)
        rounded = float(f"{round(rounded / 10.0 ** exponent) + 1}e{exponent}")
    return rounded


def _table_peaks(groups: list[Group], flat: dict[str, np.ndarray]) -> list[float]:
    """Per table group, its largest magnitude over its step factor ``sqrt(n_g / n_max)``."""
    n_max = max((g.size for g in groups if g.kind == "table"), default=1)
    return [float(np.max(np.abs(flat[g.tensor][g.start:g.stop]))) / np.sqrt(g.size / n_max)
            for g in groups if g.kind == "table" and g.size]


def finest_table_step(groups: list[Group], flat: dict[str, np.ndarray]) -> float:
    """The smallest global table step whose symbols all fit int16."""
    return max([1e-12] + [p / (SYMBOL_LIMIT - 1) for p in _table_peaks(groups, flat)])


def coarsest_table_step(groups: list[Group], flat: dict[str, np.ndarray]) -> float:
    """A global table step at which every table symbol is 0."""
    return max([1e-12] + [4 * p for p in _table_peaks(groups, flat)])


def segmentations(groups: list[Group]) -> list[list[int]]:
    """Ways to split the symbols into runs of like statistics for the entropy coder: one
    run per tensor kind (table, MLP), and one per group."""
    by_kind = [sum(g.size for g in groups if g.kind == kind) for kind in ("table", "mlp")]
    return [[n for n in by_kind if n], [g.size for g in groups if g.size]]


def storage_entry(groups: list[Group], table_step: float) -> StorageEntry:
    """What the header records so a reader rebuilds every group's step."""
    return StorageEntry(table_step=float(table_step), mlp_steps=[float(g.step) for g in groups if g.kind == "mlp"])


def groups_from_storage(field: NeuralField, storage: StorageEntry) -> list[Group]:
    """The groups of ``field`` with the steps a header's ``storage`` entry records."""
    groups = parameter_groups(field)
    table_step, mlp_steps = storage.table_step, storage.mlp_steps
    mlp_groups = [g for g in groups if g.kind == "mlp"]
    if len(mlp_steps) != len(mlp_groups):
        raise ValueError(f"{len(mlp_steps)} MLP steps for {len(mlp_groups)} MLP layers")
    if not all(np.isfinite(v) and v > 0 for v in [table_step, *mlp_steps]):
        raise ValueError("quantisation steps must be positive and finite")
    n_max = max((g.size for g in groups if g.kind == "table"), default=1)
    for g in groups:
        if g.kind == "table":
            g.step = float(table_step * np.sqrt(g.size / n_max))
    for g, step in zip(mlp_groups, mlp_steps):
        g.step = step
    return groups


def quantise(groups: list[Group], flat: dict[str, np.ndarray], deadzone: float = 0.0) -> np.ndarray:
    """All groups' symbols, concatenated in group order, as int8 when they fit, else int16.

    ``deadzone`` (0 to 0.5) rounds table values toward zero unless they are that far past
    the midpoint between two steps: fewer bits for an error of at most ``2 * deadzone``
    squared steps more per changed value (see budget.quantise_for_good)."""
    parts = []
    for g in groups:
        values = flat[g.tensor][g.start:g.stop].astype(np.float64)
        if g.step <= 0:
            q = np.zeros_like(values)
        elif deadzone and g.kind == "table":
            x = values / g.step
            q = np.sign(x) * np.floor(np.abs(x) + (0.5 - deadzone))
        else:
            q = np.rint(values / g.step)
        parts.append(np.clip(q, -SYMBOL_LIMIT, SYMBOL_LIMIT).astype(np.int32))
    symbols = np.concatenate(parts) if parts else np.zeros(0, np.int32)
    small = symbols.size == 0 or (symbols.min() >= -128 and symbols.max() <= 127)
    return symbols.astype(np.int8 if small else np.int16)


def dequantise(groups: list[Group], symbols: np.ndarray, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """Flat float32 tensors rebuilt from symbols: ``step * q`` per group."""
    out = {name: np.zeros(n, dtype=np.float32) for name, n in sizes.items()}
    pos = 0
    for g in groups:
        q = symbols[pos:pos + g.size].astype(np.float32)
        out[g.tensor][g.start:g.stop] = np.float32(g.step) * q
        pos += g.size
    return out


def step_tensors(field: NeuralField, groups: list[Group]) -> list[torch.Tensor]:
    """Per parameter tensor (table, MLP matrices, output bias), the step of every entry.

    Built once per plan so that fake quantisation is a few element-wise kernels per
    tensor, not a few per group (on a GPU, launches are what a training step costs).
    """
    table = field.encoding.table
    table_steps = torch.ones(table.numel(), dtype=table.dtype)
    mlp_steps = []
    for g in groups:
        if g.tensor == "encoding":
            table_steps[g.start:g.stop] = g.step
        else:
            mlp_steps.append(g.step)
    params = list(field.weights) + [field.output_bias]
    # MLP group k is weight matrix k; the output bias shares the last matrix's group.
    per_param = mlp_steps[:len(field.weights)] + mlp_steps[-1:]
    out = [table_steps.reshape(table.shape).to(table.device)]
    out += [torch.full_like(p, step) for p, step in zip(params, per_param)]
    return out


def _parameters(field: NeuralField) -> list[torch.Tensor]:
    return [field.encoding.table] + list(field.weights) + [field.output_bias]


@contextmanager
def quantised_weights(field: NeuralField, steps: list[torch.Tensor]):
    """Inside, the network's parameters hold their quantised values; outside, the float ones.

    ``steps`` comes from :func:`step_tensors`. Gradients computed inside are those at the
    quantised point; applying them to the float weights afterwards is the straight-through
    estimator of quantisation-aware training.
    """
    params = _parameters(field)
    saved = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, step in zip(params, steps):
            p.copy_(torch.round(p / step).clamp_(-SYMBOL_LIMIT, SYMBOL_LIMIT).mul_(step))
    try:
        yield
    finally:
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
