"""The smallest file that reaches a target PSNR: a search over the compression ratio.

PSNR falls roughly linearly in log(ratio) (a few dB per doubling, measured on every shared
volume), so the search steps in log2(ratio) by ``(psnr - target) / slope``, with the slope
re-estimated from the two trials that bracket the target (a secant step). Each trial is a
full compression with an equal share of the time budget; the result is the trial with the
highest ratio that reached the target, or, when none did, the one with the highest PSNR,
marked as having missed (``training.target_reached = False``).
"""
from __future__ import annotations

import math
from typing import Callable

from .errors import InputError
from .volume import NeuralVolume

TRIALS = 4
FIRST_RATIO = 100.0
DB_PER_DOUBLING = 3.0     # first guess of the slope, before two trials measure it
MIN_DB_PER_DOUBLING = 1.0
MAX_STEP_DOUBLINGS = 3.0  # never jump more than 8x in ratio in one trial
CLOSE_ENOUGH = 1.05       # stop when the passing and failing ratios are this close
AIM_ABOVE_DB = 0.25       # aim this far above the target: trials are noisy by a few tenths of a dB
MIN_STEP_DOUBLINGS = 0.25  # a failing trial moves the ratio down by at least this


def _psnr_of(vol: NeuralVolume) -> float:
    if vol.training.exact:
        return math.inf
    value = vol.training.psnr
    return float(value) if isinstance(value, (int, float)) else -math.inf


def smallest_file_for_psnr(fit_at: Callable[[float, int], NeuralVolume], target: float,
                           trials: int = TRIALS) -> NeuralVolume:
    """Search ratios with ``fit_at(ratio, trial_index)``; returns the chosen volume.

    ``fit_at`` may raise InputError for a ratio whose budget cannot hold a file; that
    trial counts as missing the target.
    """
    tried: list[tuple[float, float, NeuralVolume | None]] = []  # (log2 ratio, psnr, volume)
    log_ratio = math.log2(FIRST_RATIO)
    for i in range(trials):
        try:
            vol = fit_at(2.0 ** log_ratio, i)
            reached = _psnr_of(vol)
        except InputError:
            vol, reached = None, -math.inf
        tried.append((log_ratio, reached, vol))
        if math.isinf(reached) and reached > 0:
            break  # exact: no larger ratio is needed to tell
        passing = [t for t in tried if t[1] >= target]
        failing = [t for t in tried if t[1] < target]
        best_pass = max(passing, key=lambda t: t[0], default=None)
        worst_fail = min((t for t in failing if best_pass is None or t[0] > best_pass[0]),
                         key=lambda t: t[0], default=None)
        if best_pass and worst_fail and 2.0 ** (worst_fail[0] - best_pass[0]) <= CLOSE_ENOUGH:
            break
        log_ratio = _next_log_ratio(tried, target, best_pass, worst_fail)
    return _choose(tried, target)


def _next_log_ratio(tried, target, best_pass, worst_fail) -> float:
    last_log, last_psnr, _ = tried[-1]
    slope = DB_PER_DOUBLING
    finite = [t for t in tried if math.isfinite(t[1])]
    if len(finite) >= 2:  # secant through the two trials nearest the target
        a, b = sorted(finite, key=lambda t: abs(t[1] - target))[:2]
        if a[0] != b[0]:
            measured = (b[1] - a[1]) / (a[0] - b[0])
            if measured > 0:  # a noisy pair can measure a flat slope: never trust under 1 dB
                slope = max(measured, MIN_DB_PER_DOUBLING)
    if not math.isfinite(last_psnr):
        step = -MAX_STEP_DOUBLINGS  # no file at that ratio: go much lower
    else:
        step = max(-MAX_STEP_DOUBLINGS, min(MAX_STEP_DOUBLINGS, (last_psnr - target - AIM_ABOVE_DB) / slope))
        if last_psnr < target:
            step = min(step, -MIN_STEP_DOUBLINGS)
    proposal = last_log + step
    # stay strictly inside the bracket once there is one
    if best_pass and worst_fail:
        lo, hi = best_pass[0], worst_fail[0]
        if not lo < proposal < hi:
            proposal = 0.5 * (lo + hi)
    return proposal


def _choose(tried, target: float) -> NeuralVolume:
    made = [t for t in tried if t[2] is not None]
    if not made:
        raise InputError(f"no file could be made at any ratio tried "
                         f"({', '.join(f'{2 ** t[0]:.0f}:1' for t in tried)}); the volume may be too small")
    passing = [t for t in made if t[1] >= target]
    chosen = max(passing, key=lambda t: t[0]) if passing else max(made, key=lambda t: t[1])
    vol = chosen[2]
    vol.training.target_psnr = float(target)
    vol.training.target_reached = bool(passing)
    vol.invalidate_size()
    vol.search = [(round(2.0 ** t[0], 2), t[1]) for t in tried]
    return vol
