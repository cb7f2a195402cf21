"""The byte budget: every allowance, reserve and search that keeps a file within its size.

One home for the sizing of an `.nvc` file:

* :func:`byte_budget` turns a ratio, bits per voxel or size into bytes;
* header planning: a worst-case training summary and storage entry (:func:`.records.worst_case_training`,
  :func:`worst_case_storage`) size the header before fitting (:func:`header_bytes`), with a
  margin (:func:`header_margin`), and :func:`plan_architecture` picks the largest network
  whose file fits. It lives here, not in compress, because it is a loop over header sizes;
* rate control: :func:`coded_size` (the coders' size, never under what they write, with the
  slack constants it charges), :func:`steps_for_budget` (the finest quantisation steps that
  fit), and :class:`BudgetQuantiser`, the ``quantiser`` that :func:`neuralvol.fitting.fit`
  uses for quantisation-aware training: it re-plans the steps as the weights move, at steps
  doubling apart, until :meth:`BudgetQuantiser.settle` fixes them for QAT's last half;
  :func:`quantise_for_good` fixes the final steps (those settled on, when they fit).
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch

from .. import quantise
from ..architecture import choose_architecture_for, choose_architecture_with_outputs
from ..errors import InputError
from ..model import ModelConfig, NeuralField
from ..quantise import (Group, dequantise, flat_tensors, parameter_groups, quantised_weights, segmentations,
                        step_tensors)
from . import container, entropy, schema
from .records import StorageEntry, TrainingSummary

if TYPE_CHECKING:  # at run time imported where used: volume -> schema -> container -> entropy -> budget
    from .. import volume

DEFAULT_RATIO = 100.0
STORED_BYTES_PER_PARAM = 2  # float16
HEADER_MARGIN = 64          # slack for header fields whose length is only known after fitting
# ... but at most this share of a small budget: compact (version 3) headers are sized from
# a worst case, so little slack is needed, and on a 100-byte file every byte counts (a
# larger real header is caught after fitting: the coded parameters then get less room).
HEADER_MARGIN_SHARE = 1 / 32
# Quantised storage: the network is sized for this many coded bits per parameter; rate
# control then sets the quantisation steps so the coded parameters fill the budget.
# Measured with benchmarks/bits_per_param.py (30 s fits, 100:1 and 400:1, headsq, hydrogen,
# viscous fingers): 2.7 and 4 bits lose 1-8 dB; 5.3 wins on headsq and viscous fingers
# (up to +4 dB over 8 bits), 6.5-8 on hydrogen (+1.4-2.7 dB); 5.5 is the compromise.
TARGET_BITS_PER_PARAM = 5.5
# Bytes the coded parameters get less during quantisation-aware training than at the end
# (the final coding may choose other segments for the adaptive coder).
QAT_HEADER_SLACK = 2
# Below this many bytes the fitting curve (~80 header bytes) is left out of quantised
# files: there it would cost over 1 % of the parameters' bytes. Since stop 29 the rest of
# the training record but the PSNR is left out too (recorded_training).
CURVE_MIN_BUDGET = 8 * 1024
# Planning for such a file without the curve's bytes gives a larger network than planning
# with them did (as every file was planned before), whose parameters get fewer coded bits
# each. With a time budget neuralvol.compress fits both briefly and continues the better.
# 60 s, benchmarks/plan_curve.py, each network alone: the larger won by 0.9-1.5 dB on
# neghip 400:1 and 800:1 and head_mr_small 400:1 (5.9-6.0 bits against 7.8-11); on
# hydrogen 400:1 the smaller won by 2.5 dB in one run and lost by 1.7 dB in the next.
# Rate control's allowance for the adaptive coder's flush (its output is within two bytes
# of the estimate) and for each stored segment length.
ADAPTIVE_SLACK_BYTES = 2
SEGMENT_BYTES = entropy.SEGMENT_BYTES
# Header reserves are measured on all-zero symbols, which code as two segments (table and
# MLP), so rate control charges only the segments beyond those.
RESERVED_SEGMENTS = 2


def byte_budget(native_bytes: int, n_voxels: int, ratio=None, bpv=None, size=None) -> int:
    given = [name for name, v in (("ratio", ratio), ("bpv", bpv), ("size", size)) if v is not None]
    if len(given) > 1:
        raise InputError(f"give only one of ratio, bpv or size (got {' and '.join(given)})")
    if size is not None:
        budget = int(size)
    elif bpv is not None:
        if not bpv > 0:
            raise InputError(f"bpv must be positive, got {bpv}")
        budget = int(math.floor(float(bpv) * n_voxels / 8))
    else:
        ratio = DEFAULT_RATIO if ratio is None else float(ratio)
        if not ratio > 0:
            raise InputError(f"ratio must be positive, got {ratio}")
        budget = int(math.floor(native_bytes / ratio))
    if budget <= 0:
        raise InputError(f"the size budget is {budget} bytes; ask for a lower ratio or a larger size")
    return budget


def carries_curve(budget: int, precision: str) -> bool:
    """Whether a file of ``budget`` bytes keeps its fitting curve and the rest of its
    training record (float16 files always do)."""
    return precision != "quantised" or budget >= CURVE_MIN_BUDGET


def recorded_training(summary: TrainingSummary, budget: int, precision: str) -> TrainingSummary:
    """What a file of ``budget`` bytes records of ``summary``: all of it, or, under
    :data:`CURVE_MIN_BUDGET`, the PSNR alone (a brief record, no curve).

    The steps, seconds, stop reason, device and seed take 10-13 header bytes: on
    head_mr_small at 800:1 (a 156-byte budget, 79 bytes of coded parameters) that is a
    sixth of the parameters' bytes."""
    if carries_curve(budget, precision):
        return summary
    return dataclasses.replace(summary, curve=[], brief=True)


def worst_case_storage(config: ModelConfig, precision: str) -> StorageEntry | None:
    return None if precision == "float16" else StorageEntry.worst_case(len(config.mlp_shapes()))


def header_margin(budget: int) -> int:
    return min(HEADER_MARGIN, max(2, int(budget * HEADER_MARGIN_SHARE)))


def header_length(vol: "volume.NeuralVolume") -> int:
    """Bytes of ``vol``'s file that are not coded parameters (preamble, header, CRC)."""
    return container.header_size(schema.to_bytes([vol]))


def header_bytes(info: "volume.VolumeInfo", config: ModelConfig, training: TrainingSummary,
                 precision: str = "float16") -> int:
    # all-zero parameters: the coded section's metadata comes out as rate control assumes
    # (coded_size), whatever the weights
    network = NeuralField(config)
    with torch.no_grad():
        for p in network.parameters():
            p.zero_()
    from ..volume import NeuralVolume
    return header_length(NeuralVolume(network, info, training, worst_case_storage(config, precision)))


def smallest_network(encoding: str, dims) -> ModelConfig:
    for n_params in (10, 100, 1000, 10_000):
        try:
            return choose_architecture_for(encoding, dims, n_params)
        except InputError:
            continue
    return choose_architecture_for(encoding, dims, 100_000)


def plan_architecture(info: "volume.VolumeInfo", budget: int, training: TrainingSummary, encoding: str = "hashgrid",
                      precision: str = "float16") -> ModelConfig:
    """The largest network of ``encoding`` kind whose whole file fits ``budget`` bytes.

    Float16 parameters cost 2 bytes each; quantised ones are planned at
    ``TARGET_BITS_PER_PARAM`` (rate control makes them fit exactly after fitting).
    """
    bits = 16.0 if precision == "float16" else TARGET_BITS_PER_PARAM
    if precision != "float16" and choose_architecture_for(encoding, info.dims, 10_000).encoding.n_params == 0:
        bits = 8.0  # MLP-only networks: every parameter is an 8-bit MLP weight
    # from the smallest network's header up: a larger network's header is never shorter
    overhead = header_bytes(info, smallest_network(encoding, info.dims), training, precision) + header_margin(budget)
    for _ in range(5):
        max_params = int((budget - overhead) * 8 // bits)
        if max_params <= 0:
            raise InputError(f"the size budget of {budget} bytes is smaller than the file header "
                             f"(~{overhead} bytes); ask for a lower ratio or a larger size")
        config = choose_architecture_with_outputs(encoding, info.dims, max_params, info.n_components)
        needed = header_bytes(info, config, training, precision) + header_margin(budget)
        if needed <= overhead:
            return config
        overhead = needed
    return config


def coded_size(symbols: np.ndarray, segmentations=()) -> int:
    """About the bytes :func:`entropy.encode` would produce, never less (used by rate control): the
    adaptive coder's size is estimated, LZMA's is exact."""
    size = len(entropy.lzma_coded(symbols))
    adaptive = entropy.best_segments(symbols, segmentations)
    if adaptive is not None:
        extra = SEGMENT_BYTES * max(0, len(adaptive[1]) - RESERVED_SEGMENTS)
        size = min(size, int(np.ceil(adaptive[0])) + extra + ADAPTIVE_SLACK_BYTES)
    return size


def groups_coded_size(groups: list[Group], flat: dict[str, np.ndarray], deadzone: float = 0.0) -> int:
    """:func:`coded_size` of ``flat`` quantised with ``groups``' steps (and ``deadzone``)."""
    return coded_size(quantise.quantise(groups, flat, deadzone), segmentations(groups))


def steps_for_budget(groups: list[Group], flat: dict[str, np.ndarray], budget: int,
                     mlp_bits: int = quantise.MLP_BITS, iterations: int = 24) -> float | None:
    """The finest global table step whose coded symbols fit ``budget`` bytes; None if none does.

    Assigns the steps to ``groups`` and returns the table step. Coded size falls as the step
    grows (not strictly, LZMA is adaptive), so a bisection in log(step) brackets it.
    """
    fine = quantise.short_float(quantise.finest_table_step(groups, flat), up=True)
    coarse = quantise.short_float(max(fine * 4, quantise.coarsest_table_step(groups, flat)))

    def size_at(step):
        quantise.assign_steps(groups, flat, step, mlp_bits)
        return groups_coded_size(groups, flat)

    if size_at(fine) <= budget:
        return fine
    if size_at(coarse) > budget:
        return None
    for _ in range(iterations):
        mid = quantise.short_float(np.sqrt(fine * coarse))
        if not fine < mid < coarse:
            break
        if size_at(mid) <= budget:
            coarse = mid
        else:
            fine = mid
        if coarse / fine < 1.01:
            break
    quantise.assign_steps(groups, flat, coarse, mlp_bits)
    return coarse


# MLP weights are kept at 8 bits unless the budget is too small to hold them so.
MLP_BITS_TRIED = (8, 6, 4)
# Re-plan at QAT steps 0, 8, 24, 56, ... (gaps doubling): often while the weights still
# move, a handful of times in all (each plan is ~20 trial codings), and the same steps on
# every run, so a fixed seed still gives the same file.
FIRST_REPLAN_GAP = 8
# As the weights settle onto the last steps their coded size drifts by a few bytes either way
# (hydrogen, carotid, viscous fingers 100:1, 3 seeds: -11 to +19 bytes of 6.6-10 KB); a size
# over the budget made the final coding plan afresh and round the weights anew (0.3-3.6 dB).
SETTLE_MARGIN = 0.005


class BudgetQuantiser:
    """Quantisation steps that keep ``field``'s coded parameters within ``budget`` bytes."""

    def __init__(self, budget: int):
        self.budget = int(budget)
        self.groups: list[Group] | None = None
        self.table_step: float | None = None
        self._calls = 0
        self._next_plan = 0
        self._gap = FIRST_REPLAN_GAP
        self._steps: list[torch.Tensor] | None = None
        self.plans = 0  # how many times the steps were planned (fitting's best checkpoint resets on a new plan)
        # Bytes the final file will need besides the parameters' and the header reserved
        # already (a post filter's), asked for when the steps are settled: field -> bytes.
        self.settle_reserve: Callable[[NeuralField], int] | None = None
        self.held_back = 0   # what it asked for

    def plan(self, field: NeuralField, flat: dict | None = None) -> list[Group]:
        """Steps for the current weights; InputError when even the coarsest steps do not fit."""
        flat = flat_tensors(field) if flat is None else flat
        groups = parameter_groups(field)
        for mlp_bits in MLP_BITS_TRIED:
            step = steps_for_budget(groups, flat, self.budget, mlp_bits)
            if step is not None:
                break
        if step is None:
            raise InputError(f"the parameters cannot be coded into {self.budget} bytes even at the coarsest "
                             f"quantisation; ask for a lower ratio or a larger size")
        self.groups, self.table_step = groups, step
        self.plans += 1
        return groups

    def __call__(self, field: NeuralField):
        """Context in which ``field`` holds its quantised values (re-planned now and then)."""
        if self.groups is None or self._calls >= self._next_plan:
            self.plan(field)
            self._steps = step_tensors(field, self.groups)
            self._next_plan = self._calls + self._gap
            self._gap *= 2
        self._calls += 1
        return quantised_weights(field, self._steps)

    def settle(self, field: NeuralField) -> None:
        """Plan once more for the current weights, :data:`SETTLE_MARGIN` inside the budget
        less what :attr:`settle_reserve` asks for, and keep these steps to the end: the last
        part of quantisation-aware training settles the weights onto them, and the margin
        lets the file keep them."""
        budget = self.budget
        held = 0 if self.settle_reserve is None else max(0, int(self.settle_reserve(field)))
        self.held_back = held
        self.budget = max(1, int((budget - held) * (1.0 - SETTLE_MARGIN)))
        try:
            self.plan(field)
        finally:
            self.budget = budget
        self._steps = step_tensors(field, self.groups)
        self._next_plan = math.inf

    def output_step(self) -> float:
        """The current step of the output layer's group (its weights and the output bias)."""
        return float([g for g in self.groups if g.kind == "mlp"][-1].step)

    def fits(self, field: NeuralField) -> bool:
        """Whether ``field``'s weights, quantised with the current steps, code into the budget."""
        return groups_coded_size(self.groups, flat_tensors(field)) <= self.budget

    def current(self, field: NeuralField):
        """Context in which ``field`` holds its values quantised with the current steps: an
        evaluation, which neither counts towards nor triggers a re-plan."""
        return quantised_weights(field, self._steps)


# The largest rounding deadzone the final coding uses to keep the trained steps. A deadzone d
# moves a share ~d of the table's values by one step, adding ~d^2 squared steps of error per
# value on average; past 1/4 that nears a fresh rounding's 1/12, and planning afresh is no worse.
MAX_DEADZONE = 0.25


def deadzone_for_budget(groups: list[Group], flat: dict[str, np.ndarray], budget: int,
                        iterations: int = 8) -> float | None:
    """The smallest rounding deadzone (:func:`quantise.quantise`, at most :data:`MAX_DEADZONE`)
    at which ``groups``' symbols code into ``budget`` bytes; 0 when plain rounding fits, None
    when none does."""
    def fits(deadzone):
        return groups_coded_size(groups, flat, deadzone) <= budget

    if fits(0.0):
        return 0.0
    lo, hi = 0.0, MAX_DEADZONE
    if not fits(hi):
        return None
    for _ in range(iterations):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi


def quantise_for_good(field: NeuralField, budget: int, trained: BudgetQuantiser | None = None
                      ) -> tuple[list[Group], float]:
    """Fix the final steps and load the decoded values into ``field`` (what a reader will get).

    The steps quantisation-aware training last used (``trained``) are kept when they still
    fit: the weights have settled onto that grid, and a step even 1 % different would
    round them afresh (measured: 2.5 dB lost on hydrogen at 100:1 without QAT). When the
    settled weights code a little over the budget (their size drifts after the steps are
    settled; a 400-step headsq fit at 12 000 bytes ended 10 bytes over), table values just
    past a rounding midpoint are rounded toward zero instead (:func:`deadzone_for_budget`):
    29.99 dB there against 29.98 for planning afresh. Otherwise the finest steps that fit
    are searched again.
    """
    flat = flat_tensors(field)
    groups, table_step, deadzone = None, None, 0.0
    if trained is not None and trained.groups is not None:
        deadzone = deadzone_for_budget(trained.groups, flat, budget)
        if deadzone is not None:
            groups, table_step = trained.groups, trained.table_step
    if groups is None:
        quantiser = BudgetQuantiser(budget)
        groups, table_step, deadzone = quantiser.plan(field, flat), quantiser.table_step, 0.0
    decoded = dequantise(groups, quantise.quantise(groups, flat, deadzone), {k: v.size for k, v in flat.items()})
    field.load_tensors({"encoding": torch.from_numpy(decoded["encoding"]).reshape(field.encoding.table.shape),
                        "mlp": torch.from_numpy(decoded["mlp"])})
    return groups, float(table_step)
