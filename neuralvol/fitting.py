"""Fitting a network to a volume: Adam, decaying learning rate, random voxel batches, MSE.

Stopping: whichever comes first of ``steps``, ``time_budget`` seconds (which include the
final whole-volume measurement and the caller's ``after_fit_s``), or the whole-volume PSNR
(measured with the weights as they will be stored) reaching ``psnr_target``.
"""
from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, ContextManager

import numpy as np
import torch

from .bitstream.records import TrainingSummary
from .errors import FitCancelled
from .evaluate import evaluate_grid, unit_axis
from .metrics import psnr_from_normalised_mse
from .quantise import SYMBOL_LIMIT
from .model import NeuralField

BATCH_SIZE = 1 << 13
# A GPU step is bound by kernel launches (~15 ms on an H100 whatever the batch up to
# 2^16, measured), so there a step takes 32x the samples for about the same time.
CUDA_BATCH_SIZE = 1 << 18
LEARNING_RATE = 2e-2
FINAL_LR_FACTOR = 0.05
CURVE_POINTS = 8
PROGRESS_INTERVAL_S = 0.1
# The time budget covers the final whole-volume measurement too: after a few steps (past
# torch's first-call costs) a slab of z-slices, at least this share of the grid, is
# evaluated and timed, and the whole grid's time, with a margin, is set aside. It is
# measured, not derived from the training step's cost: the old estimate (0.4 of a training
# step per voxel) set aside 1.1 s on headsq_quarter where the decode took 1.2-2.0 s, and
# 10.6 s, capped to half the budget, on a 128^3 crop where it took 5-9 s (2 loaded cores).
# The margin covers what the slab misses (the decode's cast and the PSNR's pass over the
# volume, jitter): on headsq_quarter the decode took 1.2-1.35x the slab's estimate.
TIMING_STEPS = 10
TIMING_SLAB_SHARE = 1 / 16
EVAL_MARGIN = 1.5
# The fit keeps at least this share of the budget, whatever the reserve (it was half: a
# decode longer than half the budget then broke the promise, 18.7 s for 10 s on 128^3).
MIN_FIT_SHARE = 0.1


@dataclass(frozen=True)
class FitProgress:
    """What a progress callback receives. Returning ``False`` from the callback cancels."""

    fraction: float      # 0..1 of the step/time budget used
    psnr: float          # running estimate of the whole-volume PSNR (dB) from recent batches
    elapsed: float       # seconds since fitting started
    step: int


# What a caller may ask for: "auto" picks CUDA when torch sees a GPU ("cuda:N" is accepted too).
DEVICES = ("auto", "cpu", "cuda")

# Quantisation-aware training's last steps keep the float weights whose *quantised* values
# scored best. Each Adam step moves weights across quantisation boundaries, so the quantised
# network jitters from step to step, and where a fit happened to stop decided the file: on
# hydrogen 100:1 (2500 steps, seeds 0, 1, 2) the quantised PSNR during QAT averaged ~55 dB
# while the stopping step gave 60.99, 51.92 and 58.48. Scored on fixed voxels (all of a
# small volume) every KEEP_BEST_EVERY steps over the last KEEP_BEST_SHARE of QAT, and only
# since the quantiser's last re-plan: the checkpoint must quantise with the file's steps.
KEEP_BEST_SHARE = 0.5
KEEP_BEST_EVERY = 16
KEEP_BEST_VOXELS = 1 << 17
# What competes there: moving averages of the float weights over that window (decays per
# step; the first is what the periodic checks score), and at the end the last step's weights
# and every average. Averaging smooths Adam's step noise before quantising. Measured on the
# same trajectories (60 s, 1 thread, the best score on the checked voxels, dB): the last-step
# and periodic raw checks alone against these candidates gave carotid 100:1 35.47 / 35.70,
# carotid 200:1 33.16 / 33.33, isabel 100:1 40.67 / 40.78, viscous fingers 100:1 49.73 /
# 50.47, hydrogen 200:1 52.88 / 53.37, nucleon 100:1 44.12 / 44.33 and 40.70 / 41.55 (a
# trial fit), neghip 800:1 +0.00-0.02. Decays of 0.99 and 0.997 won no check (they lag
# the decaying learning rate); scoring the raw weights as well every 16 steps added <= 0.02.
KEEP_BEST_AVERAGES = (0.9, 0.97)
# Coordinate-descent sweeps over the output layer's symbols at the end (most fits stop moving
# after 2-4).
OUTPUT_POLISH_SWEEPS = 8
# Error-driven sampling (ErrorSampler), for volumes of at least ERROR_MIN_VOXELS voxels: a 60 s
# fit of a 64^3 volume sees each voxel hundreds of times, and there the weights cost more than
# the better-placed samples gain (60 s, one thread, uniform / error-driven: neghip 400:1 28.62
# / 28.16 dB, 800:1 24.70 / 24.61, carotid 100:1 35.45 / 35.63). Blocks of 8^3 (4^3 would
# leave most blocks without a sample between two re-plans); a quarter of each batch uniform.
ERROR_MIN_VOXELS = 1 << 22
ERROR_BLOCK = 8
ERROR_UNIFORM_SHARE = 0.25
ERROR_REPLAN_STEPS = 64
ERROR_DECAY = 0.7
ERROR_FLOOR = 0.01  # of the mean block variance, so that no block starts at probability u alone
ERROR_GUIDE = 8     # guide entries per block
ERROR_GROUP = 8     # voxels drawn from each block drawn


def import_optimiser_machinery() -> None:
    """Import what a process's first torch optimiser imports (torch._dynamo), and load the C++
    kernels (compiling them the first time on this machine), once.

    The import takes 1.5-6 s on 2 loaded cores, once per process, and the kernels' first build
    5.5 s on an idle one: :func:`neuralvol.compress` does both before starting its clock, so a
    budget is not spent on them. (Built inside it, the first of neghip 800:1's 8 s trial fits
    got 519 steps instead of ~2100 and lost the trial; stop 28.)"""
    import torch._dynamo  # noqa: F401

    from .kernels import build
    build.library()


def resolve_device(device: str | torch.device | None) -> torch.device:
    name = str(device or "auto")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        from .errors import InputError
        raise InputError("device 'cuda' requested but torch sees no CUDA GPU; use --device cpu or auto")
    if name not in ("cpu",) and not name.startswith("cuda"):
        from .errors import InputError
        raise InputError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


@contextmanager
def stored_precision(field: NeuralField, dtype: torch.dtype = torch.float16):
    """Temporarily round the parameters to their storage precision (for honest PSNR)."""
    saved = [p.detach().clone() for p in field.parameters()]
    with torch.no_grad():
        for p in field.parameters():
            p.copy_(p.to(dtype).to(p.dtype))
    try:
        yield field
    finally:
        with torch.no_grad():
            for p, s in zip(field.parameters(), saved):
                p.copy_(s)


def whole_volume_mse(field: NeuralField, target: np.ndarray, device: torch.device) -> float:
    nz, ny, nx = target.shape[:3]
    out = evaluate_grid(field, unit_axis(nx, 0, nx - 1), unit_axis(ny, 0, ny - 1), unit_axis(nz, 0, nz - 1),
                        device=device)
    diff = out.astype(np.float64) - target
    return float(np.mean(diff * diff))


@contextmanager
def deterministic_kernels(device: torch.device):
    """CUDA's scatter-adds use atomics, so the same seed would give different files run to run.

    Deterministic kernels (and cuBLAS's fixed workspace, which must be named before the
    first cuBLAS call) make a fixed seed give the same bytes on the same GPU, as on CPU.
    """
    if torch.device(device).type != "cuda":
        yield
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def fit(field: NeuralField, target: np.ndarray, **kwargs) -> TrainingSummary:
    """Fit ``field`` to ``target``; see ``_fit``. Deterministic on every device."""
    with deterministic_kernels(kwargs.get("device", torch.device("cpu"))):
        return _fit(field, target, **kwargs)


def _fit(field: NeuralField, target: np.ndarray, *, steps: int | None, time_budget: float | None,
        psnr_target: float | None = None, seed: int = 0, device: torch.device = torch.device("cpu"),
        progress: Callable[[FitProgress], bool | None] | None = None,
        batch_size: int | None = None, learning_rate: float | None = None, grad_weight: float = 0.0,
        quantiser: Callable[[NeuralField], ContextManager] | None = None, qat_fraction: float = 0.0,
        after_fit_s: float = 0.0, importance: np.ndarray | None = None,
        evaluations: float = 1.0) -> TrainingSummary:
    """Fit ``field`` to ``target`` (normalised float32 ``[z, y, x]``); returns a training summary.

    ``grad_weight`` > 0 adds ``grad_weight * mean |D f - D v|^2``: central differences of one
    voxel step of the network ``f`` and of the volume ``v`` along each axis (with at least 3
    voxels), on a quarter-size batch of interior voxels, in normalised units per voxel.

    ``quantiser(field)`` gives a context in which the parameters hold their stored
    (quantised) values. The last ``qat_fraction`` of the fit computes its gradients there and
    applies them to the float weights (straight-through quantisation-aware training), and a
    PSNR target is checked there, so what is measured is what the file will decode to.

    ``time_budget`` counts from this call; the fit stops early enough to leave ``evaluations``
    whole-volume evaluations (timed on a slab after ``TIMING_STEPS`` steps) and ``after_fit_s``
    seconds (the caller's own finishing work) inside it.

    ``importance`` (non-negative weights of ``target``'s shape, see :mod:`neuralvol.importance`)
    draws training voxels with probability proportional to their weight instead of uniformly,
    so the loss is the importance-weighted MSE in expectation (the gradient loss stays uniform).
    Without it, a large volume draws its training voxels where the fit's error is, weighted
    so that the loss is still the plain MSE in expectation (:class:`ErrorSampler`).
    """
    start = time.perf_counter()
    stored = quantiser or stored_precision
    if steps is None and time_budget is None:
        raise ValueError("fit needs steps or time_budget")
    batch_size = batch_size or (CUDA_BATCH_SIZE if torch.device(device).type == "cuda" else BATCH_SIZE)
    learning_rate = learning_rate or LEARNING_RATE
    field.to(device).train()
    nz, ny, nx = target.shape[:3]
    # [voxels] for a scalar field, [voxels, C] for C components (target [z, y, x, C])
    flat_shape = (-1,) if target.ndim == 3 else (nz * ny * nx, target.shape[3])
    target_t = torch.as_tensor(np.ascontiguousarray(target, dtype=np.float32).reshape(flat_shape), device=device)
    axes = [torch.as_tensor(unit_axis(n, 0, n - 1), dtype=torch.float32, device=device) for n in (nx, ny, nz)]
    n_voxels = target_t.shape[0]
    batch = min(batch_size, max(1, n_voxels))
    generator = torch.Generator(device=device).manual_seed(int(seed) + 1)
    cdf = None
    if importance is not None:  # float64: a float32 running sum stalls past 2^24 voxels
        cdf = torch.as_tensor(np.cumsum(importance.reshape(-1), dtype=np.float64), device=device)
        cdf /= cdf[-1].clone()
    sampler = error_sampler(target, device) if cdf is None else None
    optimiser = torch.optim.Adam(field.parameters(), lr=learning_rate, betas=(0.9, 0.99), eps=1e-15)

    last_report = -math.inf
    ema_mse = None
    step = 0
    stopped = "steps"
    curve: list[list[float]] = []
    next_curve_fraction = 0.0
    next_psnr_check = 0
    fit_budget = time_budget
    grad_axes = [a for a, n in enumerate((nx, ny, nz)) if n >= 3]
    best = None
    if quantiser is not None and qat_fraction > 0 and hasattr(quantiser, "current"):
        best = _BestQuantised(quantiser, target_t, axes, (nx, ny, nz), seed, device)
    while True:
        elapsed = time.perf_counter() - start
        fraction = 0.0
        if steps is not None:
            fraction = max(fraction, step / max(steps, 1))
        if time_budget is not None:
            if step == TIMING_STEPS and time_budget > 0:
                reserve = EVAL_MARGIN * evaluations * grid_evaluation_seconds(field, (nz, ny, nx), device) + after_fit_s
                fit_budget = max(MIN_FIT_SHARE * time_budget, time_budget - reserve)
                elapsed = time.perf_counter() - start
            fraction = max(fraction, elapsed / fit_budget if fit_budget > 0 else 1.0)
        if fraction >= 1.0:
            stopped = "steps" if steps is not None and step >= steps else "time_budget"
            break
        for group in optimiser.param_groups:
            group["lr"] = learning_rate * FINAL_LR_FACTOR ** fraction

        weights = None
        if sampler is not None:
            flat, weights = sampler.draw(batch, generator)
        elif cdf is None:
            flat = torch.randint(0, n_voxels, (batch,), generator=generator, device=device)
        else:  # voxel i where cdf[i-1] <= u < cdf[i]: never one of weight 0
            u = torch.rand(batch, generator=generator, device=device, dtype=torch.float64)
            flat = torch.searchsorted(cdf, u, right=True).clamp_(max=n_voxels - 1)
        x = flat % nx
        y = (flat // nx) % ny
        z = flat // (nx * ny)
        coords = torch.stack([axes[0][x], axes[1][y], axes[2][z]], dim=1)
        optimiser.zero_grad(set_to_none=True)
        in_qat = quantiser is not None and fraction >= 1.0 - qat_fraction
        with (stored(field) if in_qat else nullcontext()):
            squared = (field(coords) - target_t[flat]) ** 2
            if weights is None:
                loss = torch.mean(squared)
            else:  # the sampler's draw: per-voxel squared errors, weighted, and observed by it
                per_voxel = squared.view(batch, -1).mean(1)
                loss = torch.mean(weights * per_voxel)
                sampler.observe(per_voxel)
            if grad_weight > 0 and grad_axes:
                loss = loss + grad_weight * _gradient_loss(field, target_t, axes, (nx, ny, nz), grad_axes,
                                                           max(1, batch // 4), generator, device)
            loss.backward()
        optimiser.step()
        step += 1
        if best is not None and in_qat and fraction >= 1.0 - qat_fraction * KEEP_BEST_SHARE:
            if best.plan is None:   # the window opens: the last plan, then the first score
                quantiser.settle(field)
                best.check(field)
            best.track(field)
            if step % KEEP_BEST_EVERY == 0:
                best.check(field, best.averages[KEEP_BEST_AVERAGES[0]])

        mse = float(loss.detach())
        ema_mse = mse if ema_mse is None else 0.9 * ema_mse + 0.1 * mse
        estimate = psnr_from_normalised_mse(ema_mse)
        if fraction >= next_curve_fraction:
            curve.append([elapsed, step, estimate])
            next_curve_fraction += 1.0 / CURVE_POINTS
        if psnr_target is not None and estimate >= psnr_target and step >= next_psnr_check:
            field.eval()
            with stored(field):
                reached = psnr_from_normalised_mse(whole_volume_mse(field, target, device))
            field.train()
            if reached >= psnr_target:
                stopped = "psnr"
                break
            next_psnr_check = step + 50
        now = time.perf_counter()
        if progress is not None and now - last_report >= PROGRESS_INTERVAL_S:
            last_report = now
            if progress(FitProgress(min(fraction, 1.0), estimate, now - start, step)) is False:
                raise FitCancelled("fitting cancelled by the progress callback; nothing was written")
    if best is not None and best.plan is not None and stopped != "psnr":
        best.finish(field)
    field.eval()
    seconds = time.perf_counter() - start
    if ema_mse is not None:
        curve.append([seconds, step, psnr_from_normalised_mse(ema_mse)])
    if progress is not None:
        if progress(FitProgress(1.0, psnr_from_normalised_mse(ema_mse or 0.0), seconds, step)) is False:
            raise FitCancelled("fitting cancelled by the progress callback; nothing was written")
    return TrainingSummary(steps=step, seconds=seconds, stopped=stopped, curve=curve)


class _BestQuantised:
    """The float weights whose values quantised with the quantiser's current steps gave the
    lowest MSE on fixed voxels, since its last re-plan (see :data:`KEEP_BEST_SHARE`); it also
    keeps the moving averages of the weights that compete (:data:`KEEP_BEST_AVERAGES`)."""

    def __init__(self, quantiser, target_t: torch.Tensor, axes, dims, seed: int, device):
        nx, ny, nz = dims
        n = target_t.shape[0]
        if n <= KEEP_BEST_VOXELS:
            flat = torch.arange(n, device=device)
        else:  # its own generator: the training batches stay those of a fit without it
            generator = torch.Generator(device=device).manual_seed(int(seed) + 2)
            flat = torch.randint(0, n, (KEEP_BEST_VOXELS,), generator=generator, device=device)
        self.coords = torch.stack([axes[0][flat % nx], axes[1][(flat // nx) % ny], axes[2][flat // (nx * ny)]], dim=1)
        self.values = target_t[flat]
        self.quantiser = quantiser
        self.plan, self.mse, self.weights = None, math.inf, None
        self.averages: dict[float, list[torch.Tensor]] = {}
        self._averaged_plan = None

    @torch.no_grad()
    def track(self, field: NeuralField) -> None:
        """Fold the field's weights into the moving averages (restarted by a re-plan)."""
        if self._averaged_plan != self.quantiser.plans:
            self._averaged_plan = self.quantiser.plans
            self.averages = {d: [p.detach().clone() for p in field.parameters()] for d in KEEP_BEST_AVERAGES}
            return
        for decay, averaged in self.averages.items():
            for a, p in zip(averaged, field.parameters()):
                a.lerp_(p, 1.0 - decay)

    @torch.no_grad()
    def check(self, field: NeuralField, weights: list[torch.Tensor] | None = None) -> None:
        """Score ``weights`` (default: the field's own), quantised, on the fixed voxels; keep
        them if they beat the best so far. The field's own weights are left as they were."""
        if self.quantiser.plans != self.plan:  # new steps: earlier checkpoints quantise otherwise
            self.plan, self.mse, self.weights = self.quantiser.plans, math.inf, None
        own = None
        if weights is not None:
            own = [p.detach().clone() for p in field.parameters()]
            _load(field, weights)
        was_training = field.training
        field.eval()
        with self.quantiser.current(field):
            mse = float(torch.mean((field(self.coords) - self.values) ** 2))
        field.train(was_training)
        if mse < self.mse:
            self.mse, self.weights = mse, [p.detach().clone() for p in field.parameters()]
        if own is not None:
            _load(field, own)

    def finish(self, field: NeuralField) -> None:
        """The last step's weights and every average compete; the field then holds the best,
        its output layer polished (:meth:`polish_output_layer`)."""
        self.check(field)
        for averaged in self.averages.values():
            self.check(field, averaged)
        self.restore(field)
        self.polish_output_layer(field)
        self.restore(field)

    @torch.no_grad()
    def polish_output_layer(self, field: NeuralField) -> None:
        """Move the output layer's quantised symbols to lower the MSE on the fixed voxels.

        The output layer is linear in its inputs, so with the rest of the network fixed at
        its quantised values the MSE is a quadratic in the layer's symbols: coordinate
        descent, one input column at a time (the exact best move for that column, rounded
        to whole steps), until a sweep moves nothing. The result competes like any
        checkpoint, and only if it still codes into the budget (if free symbols do not, the
        layer's symbols are kept within its largest magnitude and tried again). QAT's
        straight-through gradients leave this layer a few steps off: measured after 20 s
        fits, neghip 800:1 (MLP 8 wide) +0.03-0.10 dB, carotid 100:1 (32 wide) +0.00-0.05.
        """
        if self.weights is None:
            return
        step = self.quantiser.output_step()
        with self.quantiser.current(field):
            inputs = field.output_layer_inputs(self.coords).double()
            layer = torch.cat([field.weights[-1], field.output_bias[:, None]], 1).double()
        inputs = torch.cat([inputs, inputs.new_ones(1, inputs.shape[1])])   # [I + 1, K]: the bias's input
        values = self.values.double().reshape(inputs.shape[1], -1).t()      # [C, K]
        start = torch.round(layer / step)                                    # [C, I + 1]
        own = [p.detach().clone() for p in field.parameters()]
        # free symbols first; if those no longer code into the budget, within the layer's peak
        for limit in (float(SYMBOL_LIMIT), float(start.abs().max())):
            layer_values = _descend(start.clone(), inputs, values, step, limit) * step
            field.weights[-1].copy_(layer_values[:, :-1])
            field.output_bias.copy_(layer_values[:, -1])
            fits = self.quantiser.fits(field)
            polished = [p.detach().clone() for p in field.parameters()]
            _load(field, own)
            if fits:
                self.check(field, polished)
                return

    @torch.no_grad()
    def restore(self, field: NeuralField) -> None:
        _load(field, self.weights or [])


def _descend(symbols: torch.Tensor, inputs: torch.Tensor, values: torch.Tensor, step: float,
             limit: float) -> torch.Tensor:
    """Coordinate descent on a linear layer's integer ``symbols`` [C, I] (weights ``symbols *
    step``) for the least squares of ``weights @ inputs`` [I, K] against ``values`` [C, K]:
    each column in turn takes its best whole-step move, until a sweep moves none."""
    residual = (symbols * step) @ inputs - values
    norms = (inputs * inputs).sum(1)
    for _ in range(OUTPUT_POLISH_SWEEPS):
        moved = False
        for j in torch.nonzero(norms > 0).flatten().tolist():
            target = torch.round(symbols[:, j] - (residual @ inputs[j]) / (step * norms[j])).clamp_(-limit, limit)
            move = target - symbols[:, j]
            if bool(move.any()):
                symbols[:, j] = target
                residual += (move * step)[:, None] * inputs[j][None]
                moved = True
        if not moved:
            break
    return symbols


@torch.no_grad()
def _load(field: NeuralField, weights: list[torch.Tensor]) -> None:
    for p, w in zip(field.parameters(), weights):
        p.copy_(w)


def grid_evaluation_seconds(field: NeuralField, shape: tuple[int, int, int], device: torch.device) -> float:
    """Seconds one evaluation of the whole ``[nz, ny, nx]`` grid will take, from a timed slab of z-slices."""
    nz, ny, nx = shape
    slices = min(nz, max(1, math.ceil(nz * TIMING_SLAB_SHARE)))
    was_training = field.training
    field.eval()
    start = time.perf_counter()
    evaluate_grid(field, unit_axis(nx, 0, nx - 1), unit_axis(ny, 0, ny - 1), unit_axis(nz, 0, nz - 1)[:slices],
                  device=device)
    seconds = time.perf_counter() - start
    field.train(was_training)
    return seconds * nz / slices


class ErrorSampler:
    """Training voxels drawn where the error is, weighted so that the loss is still the plain
    MSE in expectation (importance sampling).

    The volume is cut into blocks of :data:`ERROR_BLOCK`^3 voxels. Block b, of ``n_b`` voxels,
    is picked with probability ``u * n_b / N + (1 - u) * sqrt(mse_b) * n_b / sum(sqrt(mse) * n)``
    (u = :data:`ERROR_UNIFORM_SHARE`), and :data:`ERROR_GROUP` voxels uniformly inside it
    (fewer block-sized operations per batch: 0.5 instead of 0.9 ms per 8192 draws); a sample's loss
    weight is its uniform probability over its own, at most ``1 / u``. ``mse_b`` starts as
    the block's variance and follows the squared residuals the fit itself measures there
    (:meth:`observe`), a running mean re-planned every :data:`ERROR_REPLAN_STEPS` draws.
    Sampling in proportion to the residual's magnitude is what minimises the variance of the
    loss's estimate: on a 60 s embryo 400:1 fit, 94 % of the squared error sat in 10 % of the
    4^3 blocks, and with 8^3 blocks this variance was 0.21 of uniform sampling's (0.65 with
    half of each batch from the foreground, its predecessor).

    Used for large volumes (:func:`error_sampler`), where a 300 s fit sees each voxel only
    about 6 times. One thread, uniform half / foreground half (stop 29's sampler) / this:
    embryo 400:1 at 60 s 35.78 / 36.15 dB, Richtmyer–Meshkov 400:1 34.83 / 35.58; at 300 s
    embryo 100:1 37.59 / 38.03, 200:1 36.99 / 37.31 (stop 29's table against this).
    """

    def __init__(self, target: np.ndarray, device):
        nz, ny, nx = target.shape
        b = ERROR_BLOCK
        self.dims = (nx, ny, nz)
        self.blocks = tuple(-(-n // b) for n in (nx, ny, nz))
        bx, by, bz = self.blocks
        sizes = [np.minimum(b, n - b * np.arange(m)) for n, m in zip((nx, ny, nz), self.blocks)]
        counts = sizes[2][:, None, None] * sizes[1][None, :, None] * sizes[0][None, None, :]
        variance = np.empty((bz, by, bx))
        for k in range(bz):  # a slab of blocks at a time: float64 copies of a whole volume are large
            slab = np.zeros((b, by * b, bx * b))
            slab[:sizes[2][k], :ny, :nx] = target[k * b:(k + 1) * b]
            slab = slab.reshape(b, by, b, bx, b)
            mean = slab.sum(axis=(0, 2, 4)) / counts[k]
            variance[k] = np.maximum((slab ** 2).sum(axis=(0, 2, 4)) / counts[k] - mean ** 2, 0.0)
        # the target is in the fit's normalised units, as the residuals observe() will see
        self.mse = torch.as_tensor(variance.reshape(-1) + ERROR_FLOOR * variance.mean() + 1e-12, device=device)
        self.counts = torch.as_tensor(counts.reshape(-1), dtype=torch.float64, device=device)
        self.size = [torch.as_tensor(v, device=device) for v in sizes]
        self.n_voxels = nx * ny * nz
        self.sums = torch.zeros_like(self.mse)
        self.seen = torch.zeros_like(self.mse)
        self.device = device
        self.draws = 0
        self.last_block = None
        self._plan()

    def _plan(self) -> None:
        rms = torch.sqrt(self.mse) * self.counts
        u = ERROR_UNIFORM_SHARE
        block_p = u * self.counts / self.n_voxels + (1.0 - u) * rms / rms.sum()
        self.cdf = torch.cumsum(block_p, 0)
        self.cdf /= self.cdf[-1].clone()
        # weight of a voxel of block b: (1 / N) / (P_b / n_b)
        self.weight = (self.counts / (self.n_voxels * block_p)).to(torch.float32)
        # A guide table (Chen and Asau's inverse-CDF index): guide[k] is the first block whose
        # cdf passes k / M, so a draw starts at most a block or two early. torch.searchsorted
        # took 0.9 ms per 8192 draws over 32k blocks (one core), 7 % of a 400:1 step on embryo.
        n, m = self.cdf.numel(), ERROR_GUIDE * self.cdf.numel()
        first = torch.ceil(self.cdf * m).long().clamp_(0, m)
        self.guide = (torch.cumsum(torch.bincount(first, minlength=m + 1), 0)[:m] - 1).clamp_(0, n - 1)

    def draw(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(flat voxel indices, their loss weights) for one batch."""
        if self.draws and self.draws % ERROR_REPLAN_STEPS == 0:
            seen = self.seen > 0
            fresh = self.sums[seen] / self.seen[seen]
            self.mse[seen] = ERROR_DECAY * self.mse[seen] + (1.0 - ERROR_DECAY) * fresh
            self.sums.zero_()
            self.seen.zero_()
            self._plan()
        self.draws += 1
        groups = -(-batch // ERROR_GROUP)
        u = torch.rand(groups, generator=generator, device=self.device, dtype=torch.float64)
        block = self.guide[(u * self.guide.numel()).long().clamp_(max=self.guide.numel() - 1)]
        while True:  # on to the first block with cdf > u: torch.searchsorted(cdf, u, right=True)
            behind = self.cdf[block] <= u
            if not bool(behind.any()):
                break
            block += behind
        bx, by, _ = self.blocks
        corner = torch.stack([block % bx, (block // bx) % by, block // (bx * by)])
        size = torch.stack([self.size[a][corner[a]] for a in range(3)])
        corner = corner.repeat_interleave(ERROR_GROUP, dim=1)[:, :batch]
        size = size.repeat_interleave(ERROR_GROUP, dim=1)[:, :batch]
        offsets = (torch.rand((3, batch), generator=generator, device=self.device) * size).long()
        x, y, z = corner * ERROR_BLOCK + offsets
        nx, ny, _ = self.dims
        self.last_block = block
        return x + nx * (y + ny * z), self.weight[block].repeat_interleave(ERROR_GROUP)[:batch]

    def observe(self, squared: torch.Tensor) -> None:
        """The squared residuals (``[batch]``) of the voxels :meth:`draw` gave last, in its order."""
        n = squared.shape[0]
        groups = self.last_block.numel()
        per_block = torch.zeros(groups * ERROR_GROUP, dtype=self.sums.dtype, device=self.device)
        per_block[:n] = squared.detach()
        counts = torch.full((groups,), float(ERROR_GROUP), dtype=self.sums.dtype, device=self.device)
        counts[-1] = n - (groups - 1) * ERROR_GROUP
        self.sums.index_add_(0, self.last_block, per_block.view(groups, ERROR_GROUP).sum(1))
        self.seen.index_add_(0, self.last_block, counts)


def error_sampler(target: np.ndarray, device, min_voxels: int = ERROR_MIN_VOXELS) -> ErrorSampler | None:
    """An :class:`ErrorSampler` for a scalar, non-constant volume of at least ``min_voxels``
    voxels, else None (uniform sampling)."""
    if target.ndim != 3 or target.size < max(1, min_voxels):
        return None
    flat = target.reshape(-1)
    if np.all(flat == flat[0]):
        return None
    return ErrorSampler(target, device)


def _gradient_loss(field: NeuralField, target_t: torch.Tensor, axes, dims, grad_axes, batch: int,
                   generator: torch.Generator, device) -> torch.Tensor:
    """Mean squared difference of central differences (one voxel step) of network and volume."""
    nx, ny, nz = dims
    idx = []
    for a, n in enumerate(dims):
        lo, hi = (1, n - 1) if a in grad_axes else (0, n)
        idx.append(torch.randint(lo, hi, (batch,), generator=generator, device=device))
    pts, vals = [], []
    for a in grad_axes:
        for step in (1, -1):
            shifted = [i + step if b == a else i for b, i in enumerate(idx)]
            pts.append(torch.stack([axes[b][shifted[b]] for b in range(3)], dim=1))
            vals.append(target_t[shifted[0] + nx * (shifted[1] + ny * shifted[2])])
    out = field(torch.cat(pts)).view(len(grad_axes), 2, batch, -1)   # -1: components
    ref = torch.stack(vals).view(len(grad_axes), 2, batch, -1)
    return torch.mean(((out[:, 0] - out[:, 1]) - (ref[:, 0] - ref[:, 1])) ** 2 / 4.0) * len(grad_axes)
