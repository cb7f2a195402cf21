"""Compressing an array: validate, pick the network for the byte budget, fit, measure."""
from __future__ import annotations

import dataclasses
import math
from time import perf_counter   # (compress has a parameter named ``time``)
from typing import Callable, Sequence

import numpy as np
import torch

from .bitstream import budget as sizing
from .bitstream.budget import BudgetQuantiser, byte_budget, header_bytes, plan_architecture, quantise_for_good
from .bitstream.records import TrainingSummary, worst_case_training
from .bitstream.schema import VALUE_DTYPES
from .encodings import ENCODING_KINDS
from .errors import InputError
from .fitting import FitProgress, fit, import_optimiser_machinery, resolve_device
from .importance import importance_weights
from .metrics import psnr
from .model import ModelConfig, NeuralField
from .quantise import storage_entry
from .volume import NeuralVolume, VolumeInfo
from . import fields, postfilter
from .evaluate import evaluate_grid, unit_axis

DEFAULT_TIME_BUDGET = 60.0
PRECISIONS = ("quantised", "float16")
# The last part of the fit trains through the quantiser (straight-through estimator).
QAT_FRACTION = 0.25
# The time budget covers the whole call. After fitting, quantising for good and writing the
# file cost about this many codings of the parameters (one is timed before fitting, when the
# header is sized): measured 16x on headsq_quarter at 100:1 (0.35 s; QAT's steps kept) and
# 26x on a 128^3 crop of embryo (0.94 s; a fresh rate-control plan of ~20 trial codings).
FINISH_CODINGS = 24
# Whole-grid evaluations the fit leaves time for where a post filter may be fitted: the plain
# file's measurement, the network's decode the kernels are fitted to, and up to two filtered
# files' measurements (_post_filter_candidates); the kernels' normal equations are timed on
# their own (postfilter.fit_seconds).
FILTER_EVALUATIONS = 4.0


def validate_array(array) -> np.ndarray:
    """A [z, y, x] array ready to compress, or an InputError naming the problem."""
    if not isinstance(array, np.ndarray):
        try:
            array = np.asarray(array)
        except Exception:
            raise InputError(f"cannot turn {type(array).__name__} into a numpy array") from None
    if array.dtype.name not in VALUE_DTYPES:
        raise InputError(f"dtype {array.dtype} is not supported; use an integer or float array "
                         f"({', '.join(VALUE_DTYPES)})")
    if array.size == 0:
        raise InputError(f"empty volume (shape {array.shape}): nothing to compress")
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 1:
        array = array[None, None]
    elif array.ndim == 4:
        fields.check_components(array.shape)
    elif array.ndim != 3:
        raise InputError(f"expected a [z, y, x] array or a [z, y, x, C] array of C components, got "
                         f"{array.ndim} dimensions (shape {array.shape})")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            n_nan = int(np.isnan(array).sum())
            raise InputError(f"input has {n_nan} NaN and {int(bad.sum()) - n_nan} infinite values; replace them "
                             f"(e.g. numpy.nan_to_num) before compressing")
    return np.ascontiguousarray(array)


def check_time_budget(time_budget) -> float | None:
    """``time_budget`` as seconds (None stays None), or an InputError: a budget must be a finite
    number >= 0 (``float("inf")`` would never end a fit; leave it out, or give ``steps``)."""
    if time_budget is None:
        return None
    try:
        seconds = float(time_budget)
    except (TypeError, ValueError):
        raise InputError(f"time budget must be a number of seconds, got {time_budget!r}") from None
    if not (seconds >= 0 and math.isfinite(seconds)):
        raise InputError(f"time budget must be a finite number of seconds >= 0, got {time_budget}; leave it out "
                         f"for the default ({DEFAULT_TIME_BUDGET:g} s), or give steps")
    return seconds


def _vec3(value, what: str, positive: bool) -> tuple[float, float, float]:
    try:
        v = tuple(float(x) for x in value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be three numbers (x, y, z), got {value!r}") from None
    if len(v) != 3 or not all(math.isfinite(x) for x in v) or (positive and not all(x > 0 for x in v)):
        raise InputError(f"{what} must be three finite{' positive' if positive else ''} numbers (x, y, z), got {value!r}")
    return v


def _round_training(summary: TrainingSummary, record_timings: bool) -> TrainingSummary:
    def r(v, nd):
        return None if v is None or not math.isfinite(v) else round(float(v), nd)
    return dataclasses.replace(summary, seconds=r(summary.seconds, 3) if record_timings else None,
                               curve=[[r(t, 2) if record_timings else None, int(s), r(p, 2)]
                                      for t, s, p in summary.curve])


def compress(array, spacing: Sequence[float] = (1.0, 1.0, 1.0), origin: Sequence[float] = (0.0, 0.0, 0.0),
             array_name: str = "values", *, ratio: float | None = None, bpv: float | None = None,
             size: int | None = None, time_budget: float | None = None, steps: int | None = None,
             psnr: float | None = None, seed: int = 0, device: str = "auto",
             progress: Callable[[FitProgress], bool | None] | None = None, time: float | None = None,
             record_timings: bool = True, config: ModelConfig | None = None,
             encoding: str = "auto", grad_weight: float = 0.0, preset: str | None = None,
             init=None, precision: str = "quantised", max_error: float | None = None,
             importance=None, roi: Sequence[Sequence[int]] | None = None,
             roi_weight: float | None = None, component_names: Sequence[str] | None = None,
             warm_start: NeuralVolume | None = None, post_filter: bool = True) -> NeuralVolume:
    """Fit a network to ``array`` and return the compressed volume.

    The whole `.nvc` file is at most ``native bytes / ratio`` (or ``bpv`` bits per voxel,
    or ``size`` bytes; default ratio 100). Fitting stops after ``steps``, ``time_budget``
    seconds (default 60 when neither is given) or when the PSNR reaches ``psnr`` dB.
    A quantised file under 8 KiB (``CURVE_MIN_BUDGET``) with a planned network and a time
    budget is first fitted briefly with two networks of different sizes (more coded bits per
    parameter in the smaller), each for a fifth of the time, and the one of higher PSNR goes
    on from there for the rest: there the best bit depth depends on the field. Not with
    ``steps`` (one network fits them all), a ``psnr`` target, importance weights or a
    constant array. Such a file records its PSNR alone of the fit (``training.brief``); the
    volume returned still holds the steps, seconds, device and seed.

    Parameters
    ----------
    array : array_like, shape [z, y, x] or [z, y, x, C]
        A volume of integers or finite floats (a 2D ``[y, x]`` or 1D array is taken as one
        slice or one row); a 4-D array is a field of ``C`` components (a vector, RGB, a
        tensor), fitted by one network with ``C`` outputs, each normalised on its own.
    spacing, origin : 3 floats, default (1, 1, 1) and (0, 0, 0)
        Physical placement of the grid, x, y, z; spacings must be positive.
    array_name : str, default "values"
        Name of the field (the point-data array name in VTK, pyvista and ParaView).
    ratio, bpv, size : float, float, int, optional
        The byte budget of the whole file, at most one of them: compression ratio over
        the array's bytes, bits per voxel, or bytes.
    time_budget : float, optional
        Seconds of fitting (default 60 when ``steps`` is not given either). Once per process
        the clock starts after torch's optimiser imports and after loading the C++ kernels,
        which the first call on a machine also compiles (~5 s; see
        :func:`neuralvol.fitting.import_optimiser_machinery`).
    steps : int, optional
        Optimiser steps; with a fixed ``seed`` and ``record_timings=False`` they make
        byte-identical files.
    psnr : float, optional
        Target PSNR (dB). With no budget, no ``preset``, ``init`` or ``config``: the
        smallest file reaching it (trial fits at searched ratios share the time budget);
        otherwise fitting stops early once it is reached.
    seed : int, default 0
        Seeds the network's initialisation and the sampling of training points.
    device : str, default "auto"
        "auto" (CUDA if torch sees a GPU), "cpu" or "cuda".
    progress : callable, optional
        Receives a :class:`FitProgress` now and then; returning ``False`` cancels.
    time : float, optional
        Time value stored with the model (a time step of a series file).
    record_timings : bool, default True
        ``False`` leaves wall-clock times out of the file, so that a fixed ``seed`` and
        ``steps`` give byte-identical files.
    config : ModelConfig, optional
        An explicit network instead of one sized to the budget.
    encoding : str, default "auto"
        The input encoding: "hashgrid" (trilinear levels, tiny-cuda-nn's), "hashgrid_quadratic",
        "hashgrid_cubic" (B-spline levels), "frequency", "triangle_wave", "dense_grid" or
        "identity"; every kind is sized to the same byte budget. "auto": "hashgrid_quadratic"
        under a time budget on the CPU (under 512 bytes a trial against the "hashgrid" plan),
        else "hashgrid" (see ``AUTO_WITH_TIME_BUDGET``).
    grad_weight : float, default 0
        Weight (>= 0) of a loss on finite-difference gradients (see :func:`fitting.fit`).
    preset : str, optional
        A network from :mod:`neuralvol.presets` instead of one sized to the budget; the
        file is then as large as the preset makes it.
    init : str, os.PathLike or neuralvol.meta.MetaInit, optional
        A meta-learned initialisation (a `.nvinit` file) to start fitting from; implies
        its preset.
    precision : str, default "quantised"
        "quantised" (entropy-coded integer parameters, sized to fill the budget, trained
        through the quantiser at the end) or "float16" (format version 1).
    max_error : float, optional
        Guarantee ``|decoded - original| <= max_error`` at every voxel of the original grid
        (decoded in the original dtype, whole or any region; ``0`` on integer data is
        lossless): voxels the network misses by more get stored corrections (format
        version 4, see :mod:`neuralvol.error_bound`). The network gets the budget given;
        with none, a short search over ratios keeps the smallest file. Decoding at other
        ``dims`` and :meth:`NeuralVolume.sample` are not bounded.
    importance : array_like, optional
        Non-negative weights of the array's shape: the fit draws training voxels in
        proportion to them, so bytes go where the weights are high (see
        :mod:`neuralvol.importance`).
    roi : sequence of 6-int boxes, optional
        Inclusive index extents ``x0, x1, y0, y1, z0, z1`` weighted ``roi_weight``
        (default 10) against 1 elsewhere; instead of ``importance``.
    roi_weight : float, optional
        Weight of the ``roi`` boxes (> 0; default 10).
    component_names : sequence of str, optional
        Names of a multi-component array's components (VTK's component names).
    warm_start : NeuralVolume, optional
        Start fitting from this volume's network (the previous step of a time series);
        its network shape is kept, so the budget is the one it was sized for.

    post_filter : bool, default True
        Fit a 3x3x3 and a 5x5x5 filter to the quantised network's output and store the one
        that gains most over its 15-55 header bytes, where the file measures better with it
        (scalar fields, quantised files; see :mod:`neuralvol.postfilter`): +1-2.5 dB on
        smooth simulation fields, ~0.1-0.3 on CT, nothing on some. Its bytes are held back
        when quantisation-aware training settles its steps. A file with one decodes its
        original grid (any region) as fast as without; other grids and scattered points
        also evaluate the original grid's nodes around them. ``False`` evaluates the network
        only at the decoded points. Not with ``importance`` or ``roi`` weights (the kernel is
        judged by the plain MSE).

    Returns
    -------
    NeuralVolume
        Not yet written: call :meth:`NeuralVolume.save` (or :func:`save_models`).

    Raises
    ------
    InputError
        If the array is empty, not numeric, not finite or has more than three
        dimensions, an option is out of range or
        contradicts another (two budgets, an unknown encoding, preset, precision or
        device, "cuda" without a GPU), or the budget is too small for the file's header,
        or smaller than ``preset``/``init`` needs, ``max_error`` is negative, not finite or
        below what the dtype can be guaranteed to, or ``importance``/``roi`` do not fit the
        array (shape, negative or non-finite weights, boxes outside the grid).
    FormatError
        If ``init`` is not a valid `.nvinit` file.
    FitCancelled
        If ``progress`` returned ``False``.

    Examples
    --------
    >>> vol = nv.compress(ct, spacing=(3.2, 3.2, 1.5), ratio=100, time_budget=60)  # doctest: +SKIP
    >>> vol.save("head.nvc")                                                      # doctest: +SKIP
    """
    import_optimiser_machinery()   # once per process, outside the budget (see there)
    started = perf_counter()
    data = validate_array(array)
    time_budget = check_time_budget(time_budget)
    weights = importance_weights(data.shape[:3], importance, roi, roi_weight)  # one weight per voxel
    if max_error is not None:
        if data.ndim == 4:
            raise InputError(f"max_error needs a scalar [z, y, x] field, got {data.shape[3]} components; "
                             f"compress each component with its own bound")
        from .error_bound import compress_bounded
        return compress_bounded(compress, data, max_error, spacing=spacing, origin=origin, array_name=array_name,
                                ratio=ratio, bpv=bpv, size=size, time_budget=time_budget, steps=steps, psnr=psnr,
                                seed=seed, device=device, progress=progress, time=time,
                                record_timings=record_timings, config=config, encoding=encoding,
                                grad_weight=grad_weight, preset=preset, init=init, precision=precision,
                                importance=weights, warm_start=warm_start, post_filter=post_filter)
    spacing = _vec3(spacing, "spacing", positive=True)
    origin = _vec3(origin, "origin", positive=False)
    if steps is not None and int(steps) < 0:
        raise InputError(f"steps must be >= 0, got {steps}")
    if steps is None and time_budget is None:
        time_budget = DEFAULT_TIME_BUDGET
    if not (float(grad_weight) >= 0 and math.isfinite(float(grad_weight))):
        raise InputError(f"grad weight must be a finite number >= 0, got {grad_weight}")
    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if encoding != AUTO_ENCODING and encoding not in ENCODING_KINDS:  # the list names "auto" too
        raise InputError(f"unknown encoding {encoding!r}; use one of {', '.join((AUTO_ENCODING,) + tuple(ENCODING_KINDS))}")
    torch_device = resolve_device(device)
    nz, ny, nx = data.shape[:3]
    lo, hi = float(np.min(data)), float(np.max(data))
    info = VolumeInfo(dims=(nx, ny, nz), spacing=spacing, origin=origin, array_name=str(array_name),
                      dtype=data.dtype.name, value_range=(lo, hi), time=time,
                      components=fields.component_ranges(data, component_names))
    if warm_start is not None:
        config = fields.warm_start_config(warm_start, info, config, init, preset)
    explicit_budget = any(v is not None for v in (ratio, bpv, size))
    if psnr is not None and not explicit_budget and preset is None and init is None and config is None:
        return _compress_to_psnr(data, float(psnr), time_budget, steps, progress, spacing=spacing, origin=origin,
                                 array_name=array_name, seed=seed, device=device, time=time,
                                 record_timings=record_timings, encoding=encoding, grad_weight=grad_weight,
                                 precision=precision, importance=weights, component_names=component_names,
                                 post_filter=post_filter)
    budget = byte_budget(data.nbytes, data.size, ratio, bpv, size)
    # planned with the seconds' bytes reserved whether or not they are recorded, so that the
    # same seed gives the same network (and parameters) either way
    worst = worst_case_training(torch_device, record_timings=True, seed=seed)
    meta_init = None
    if init is not None:
        from .meta import load_init
        meta_init = load_init(init)
        if preset is not None and preset != meta_init.preset:
            raise InputError(f"the initialisation is for preset {meta_init.preset!r}, not {preset!r}; "
                             f"drop --preset or use an init learned for {preset!r}")
        if config is not None and config != meta_init.config:
            raise InputError(f"the initialisation is for preset {meta_init.preset!r}, which does not match "
                             f"the requested network")
        if info.n_components > 1:
            raise InputError(f"the initialisation is for a one-component network; a {info.n_components}-component "
                             f"field cannot start from it: drop --init")
        preset = meta_init.preset
        config = meta_init.config
    elif preset is not None:
        from .presets import preset_config
        config = dataclasses.replace(preset_config(preset), n_outputs=info.n_components)
    if preset is not None:
        # quantised parameters can be coded down to ~1 bit each; float16 ones take 2 bytes
        per_param = sizing.STORED_BYTES_PER_PARAM if precision == "float16" else 1 / 8
        needed = header_bytes(info, config, dataclasses.replace(worst, curve=[]), precision) + int(config.n_params * per_param)
        if explicit_budget and needed > budget:
            raise InputError(f"preset {preset!r} needs about {needed} bytes, more than the requested {budget}; "
                             f"use a smaller preset or a lower ratio")
        budget = max(budget, needed + sizing.HEADER_MARGIN + 4096) if not explicit_budget else budget
    trial_configs = []
    auto = encoding == AUTO_ENCODING
    if auto:
        encoding = AUTO_WITH_TIME_BUDGET if steps is None and torch_device.type == "cpu" else AUTO_WITH_STEPS
    if config is None:
        # A file that carries no fitting curve (_finish_quantised drops it) must not be
        # planned with its ~110 bytes reserved: at neghip 400:1 (718 bytes) that reserve cut
        # the network from 841 to 649 parameters, coded at 7.8 bits each instead of the
        # planned 5.5 (benchmarks/plan_curve.py measures what it costs).
        with_curve = sizing.carries_curve(budget, precision)
        # Planned with the record's other fields reserved even where the file is brief
        # (recorded_training): the bytes they free go to finer steps, not to a larger network.
        # 60 s, seeds side by side, planned brief / planned so: neghip 800:1 23.68 / 24.45
        # and 23.76 / 24.39 dB, head_mr_small 400:1 23.82 / 24.11, 800:1 22.34 / 22.22.
        planning = worst if with_curve else dataclasses.replace(worst, curve=[])
        config = _plan(info, budget, planning, encoding, precision)
        # trials split a time budget (``steps`` promise that many steps of one network) and
        # are judged by plain PSNR: not for a PSNR target, a constant or a weighted fit
        if not with_curve and steps is None and psnr is None and hi > lo and weights is None:
            # the other candidate: the network planned with the curve's reserve, as before
            # (fewer parameters, more bits each; see CURVE_MIN_BUDGET in neuralvol.bitstream.budget)
            smaller = _plan(info, budget, worst, encoding, precision)
            trial_configs = [config, smaller] if smaller != config else [config]
            if auto and encoding != AUTO_WITH_STEPS and budget < TRILINEAR_TRIAL_BELOW:  # see there
                trial_configs.append(_plan(info, budget, planning, AUTO_WITH_STEPS, precision))
            trial_configs = trial_configs if len(trial_configs) > 1 else []
    if trial_configs:
        remaining = max(0.0, float(time_budget) - (perf_counter() - started))
        return _best_trial(trial_configs, remaining, progress, lambda c, seconds, report, start_from: compress(
            data, spacing=spacing, origin=origin, array_name=array_name, size=budget, time_budget=seconds,
            seed=seed, device=device, progress=report, time=time, record_timings=record_timings, config=c,
            encoding=encoding, grad_weight=grad_weight, precision=precision, component_names=component_names,
            warm_start=start_from, post_filter=post_filter))
    if config.n_outputs != info.n_components:
        raise InputError(f"the network has {config.n_outputs} output(s) but the array has {info.n_components} "
                         f"component(s); give a config with n_outputs={info.n_components}")
    quantised = precision == "quantised"
    quantiser = None
    coding_s = 0.0
    if quantised:
        timed = worst_case_training(torch_device, record_timings=True, seed=seed)  # same budget either way
        # The final header is no longer (the same fields, the real step count, the fitting
        # curve where the file carries one), so the steps QAT trains on can be kept when
        # quantising for good. Reserving no curve here (before stop 22) gave QAT ~80 bytes
        # more than the final coding at every budget of 8 KiB or more: its steps never fitted
        # and were planned afresh, rounding the settled weights anew (viscous fingers 100:1,
        # 20-28 s fits: 46.09-47.72 dB, the trained steps kept in none of 5 runs).
        timed = sizing.recorded_training(timed, budget, precision)
        coding_start = perf_counter()
        reserve = header_bytes(info, config, timed, precision) + sizing.QAT_HEADER_SLACK
        coding_s = perf_counter() - coding_start
        quantiser = BudgetQuantiser(max(1, budget - reserve))
    # the post filter's fit decodes the original grid once more before the final measurement.
    # Not for a weighted fit: the kernel is fitted, and kept, by the plain MSE, which could
    # trade the region the user weighted for the rest.
    filtering = post_filter and quantised and info.n_components == 1 and hi > lo and weights is None
    network = meta_init.network(seed) if meta_init is not None else NeuralField(config, seed=seed)
    if warm_start is not None:
        network.load_tensors(warm_start.network.named_tensors())
    torch.manual_seed(int(seed))
    if hi > lo:
        target = fields.normalised_target(data, info)
        if filtering and quantiser is not None:
            quantiser.settle_reserve = _settle_filter_reserve(target, budget, torch_device, quantiser)
        finish_s = FINISH_CODINGS * coding_s
        if filtering and time_budget is not None:
            finish_s += postfilter.fit_seconds(target)   # the kernels' normal equations
        # the fit gets what planning left of the budget, and leaves room for finishing
        remaining = None if time_budget is None else max(0.0, float(time_budget) - (perf_counter() - started))
        summary = fit(network, target, steps=None if steps is None else int(steps), time_budget=remaining,
                      psnr_target=psnr, seed=seed, device=torch_device, progress=progress,
                      grad_weight=float(grad_weight), quantiser=quantiser,
                      qat_fraction=QAT_FRACTION if quantised else 0.0, after_fit_s=finish_s,
                      importance=weights, evaluations=FILTER_EVALUATIONS if filtering else 1.0)
    else:  # constant volume: the normalisation alone reproduces it exactly
        summary = TrainingSummary(steps=0, seconds=0.0, stopped="constant", curve=[])
        with torch.no_grad():  # the network is unused: zeros cost (almost) nothing to store
            for p in network.parameters():
                p.zero_()
    network.to("cpu")
    summary.device, summary.seed = str(torch_device), int(seed)
    if quantised:
        return _finish_quantised(network, info, data, summary, budget, record_timings, torch_device, quantiser,
                                 filtering=filtering)
    with torch.no_grad():
        for p in network.parameters():
            p.copy_(p.to(torch.float16).to(torch.float32))
    vol = NeuralVolume(network, info)
    _record_psnr(vol, data, summary, record_timings, torch_device)
    _fit_header_into_budget(vol, budget)
    return vol


def _plan(info: VolumeInfo, budget: int, worst: TrainingSummary, encoding: str, precision: str) -> ModelConfig:
    try:
        return plan_architecture(info, budget, worst, encoding, precision)
    except InputError:
        pass
    # Tight budget: plan without the fitting curve (it is dropped from the file later). Outside
    # the handler, so that its own error is not shown chained to the first attempt's.
    return plan_architecture(info, budget, dataclasses.replace(worst, curve=[]), encoding, precision)


# encoding="auto" (the default). Under a time budget, the quadratic B-spline hash grid:
# measured against the trilinear one (60 s each, 1 thread, two processes side by side;
# trilinear / quadratic dB) it won nucleon 100:1 39.48 / 44.14, hydrogen 100:1 62.39 /
# 65.02, viscous fingers 100:1 48.11 / 50.26, neghip 800:1 23.11 / 24.43, head_mr 200:1,
# headsq 800:1 and isabel 800:1 by ~0.5 dB, and lost viscous fingers 400:1 40.82 / 40.08,
# walnut 100:1 33.26 / 32.52, headsq 100:1 32.88 / 32.52 and isabel 100:1 by 0.13 (its
# steps cost ~2x: fewer of them in the time). Trial fits of both for a fifth of the time
# each did not predict the 60 s winner (viscous fingers 100:1: -1.93 dB for quadratic at
# 12 s, +2.15 at 60 s), so there is no trial between them. With ``steps``, the trilinear grid:
# the same steps in about half the time, and the files of earlier versions. On CUDA too:
# only the trilinear grid has Triton kernels (B-spline levels take PyTorch ops there, which
# are launch-bound; not measured on a GPU).
AUTO_ENCODING = "auto"
AUTO_WITH_TIME_BUDGET = "hashgrid_quadratic"
AUTO_WITH_STEPS = "hashgrid"
# Files under CURVE_MIN_BUDGET already trial two plans; under TRILINEAR_TRIAL_BELOW bytes
# "auto" adds the trilinear grid's as a third. Those tiny networks get far more steps
# (nucleon 800:1: 57k in 60 s), so a trial says more, and there the quadratic grid lost
# head_mr_small 800:1 (156 bytes) 21.59 / 22.06 dB and nucleon 400:1 (172 bytes) 29.92 /
# 30.55 (the trial picked trilinear: 30.11) but won nucleon 200:1 40.81 / 36.81 (rd.py, 60 s).
# Not for larger files: up to 8 KiB (stop 25) the trilinear plan won the 8 s trials where it
# lost at 60 s, and hydrogen 200-800:1 (5.2-1.3 KiB) fell from 59.30 / 55.05 / 53.46 dB to
# 56.61 / 52.90 / 50.41, isabel 200:1 from 39.00 to 38.47 (rd.py, 60 s).
TRILINEAR_TRIAL_BELOW = 512
# Share of the time budget that the candidate networks' trial fits get together (split
# evenly: a fifth each for two); the best one then continues from its trial's weights.
TRIALS_SHARE = 0.4


def _best_trial(configs: list[ModelConfig], time_budget: float, progress, fit_one: Callable) -> NeuralVolume:
    """The best of ``configs``: each fitted by ``fit_one(config, seconds, report, warm_start)``
    for ``TRIALS_SHARE / len(configs)`` of ``time_budget``, the one of higher PSNR (the first
    on a tie) then continued from its trial's weights for the rest. See ``CURVE_MIN_BUDGET``
    in :mod:`neuralvol.bitstream.budget`."""
    start = perf_counter()
    share = TRIALS_SHARE / len(configs)

    def reporter(first: float, span: float):
        def report(p: FitProgress):
            if progress is not None:
                return progress(FitProgress(first + span * p.fraction, p.psnr, p.elapsed, p.step))
        return report

    best = None
    for i, config in enumerate(configs):
        vol = fit_one(config, share * time_budget, reporter(i * share, share), None)
        reached = math.inf if vol.training.exact else (vol.training.psnr or -math.inf)
        if best is None or reached > best[0]:
            best = (reached, vol)
    if best[0] == math.inf:
        return best[1]
    done = TRIALS_SHARE
    rest = max(0.0, time_budget - (perf_counter() - start))
    final = fit_one(best[1].config, rest, reporter(done, 1.0 - done), best[1])
    # a restart at the full learning rate could end below the trial it started from
    return final if (final.training.psnr or -math.inf) >= best[0] else best[1]


def _compress_to_psnr(data: np.ndarray, target: float, time_budget, steps, progress, **kwargs) -> NeuralVolume:
    """The smallest file reaching ``target`` dB: trials at searched ratios, each with an equal
    share of the time budget (or the full ``steps``); see :mod:`neuralvol.target_psnr`."""
    from .target_psnr import TRIALS, smallest_file_for_psnr
    share = None if time_budget is None else float(time_budget) / TRIALS

    def fit_at(trial_ratio: float, index: int) -> NeuralVolume:
        def report(p: FitProgress):
            if progress is not None:
                return progress(FitProgress((index + p.fraction) / TRIALS, p.psnr, p.elapsed, p.step))
        return compress(data, ratio=trial_ratio, time_budget=share, steps=steps, progress=report, **kwargs)

    return smallest_file_for_psnr(fit_at, target, TRIALS)


def _record_psnr(vol: NeuralVolume, data: np.ndarray, summary: TrainingSummary, record_timings: bool, device) -> None:
    reached = psnr_of(vol, data, device)
    vol.network.to("cpu")  # what compress returns lives on the CPU, wherever it was fitted and measured
    summary.psnr, summary.exact = None if math.isinf(reached) else round(reached, 4), math.isinf(reached)
    vol.training = _round_training(summary, record_timings)


def _finish_quantised(network: NeuralField, info: VolumeInfo, data: np.ndarray, summary: TrainingSummary, budget: int,
                      record_timings: bool, device, trained: BudgetQuantiser | None = None,
                      filtering: bool = False) -> NeuralVolume:
    """Quantise for good with the finest steps whose whole file fits ``budget``; PSNR after
    that. With ``filtering``, the same again with a post filter's bytes held back, where the
    filter promises more than those bytes cost, and the file of higher PSNR is kept."""
    summary = sizing.recorded_training(summary, budget, "quantised")
    floats = {k: v.clone() for k, v in network.named_tensors().items()}
    # The reserve comes from a worst-case summary *with* timings, whatever is recorded, so
    # that the parameters get the same bytes (and decode the same) with and without them.
    worst = sizing.recorded_training(worst_case_training(device, record_timings=True, seed=summary.seed,
                                                         steps=summary.steps), budget, "quantised")
    if not summary.curve:
        worst.curve = []
    reserve = header_bytes(info, network.config, worst, "quantised")
    plain, reserve = _quantised_file(network, floats, info, data, summary, budget, record_timings, device, trained,
                                     reserve)
    if plain is None:
        raise InputError(f"could not fit the file into {budget} bytes; ask for a lower ratio or a larger size")
    # bytes QAT's settled steps already left free for a kernel cost the plain file nothing more
    # (it keeps those steps): a kernel within them is kept for any gain. Judged as if paid for,
    # kernels were declined where the bytes had been held back, and files of 359-1310 bytes
    # came out 25-51 bytes (2-7 %) short (neghip, hydrogen, Marschner-Lobb 800:1; 60 s).
    free = getattr(trained, "held_back", 0)
    kernels = (_post_filter_candidates(plain, data, budget, device, free) if filtering and not plain.training.exact
               else [])
    if not kernels:
        return plain
    # The filter's bytes come off the network's: quantise again (QAT's steps where they still
    # fit, as they do when its 0.5 % slack holds the filter) and keep the filter (the network
    # moved by a few symbols; a refit took another decode). Each candidate kernel is tried; a
    # file that does not fit, or measures lower than the best so far, is dropped, so the plain
    # file stays unless a filtered one measures higher. The files share the network: the
    # kept one's tensors are restored at the end.
    best = plain
    best_tensors = {k: v.clone() for k, v in network.named_tensors().items()}
    best_training = dataclasses.replace(plain.training)
    for kernel in kernels:
        if best_training.exact:   # nothing measures higher
            break
        filtered, _ = _quantised_file(network, floats, info, data, summary, budget, record_timings, device, trained,
                                      reserve + kernel.header_bytes(), kernel)
        # the plain file is not exact (checked above), so the best PSNR so far is a number
        if filtered is not None and (filtered.training.exact or filtered.training.psnr > best_training.psnr):
            best, best_training = filtered, dataclasses.replace(filtered.training)
            best_tensors = {k: v.clone() for k, v in network.named_tensors().items()}
    network.load_tensors(best_tensors)
    best.training = best_training
    best.invalidate_size()
    return best


def _quantised_file(network: NeuralField, floats: dict, info: VolumeInfo, data: np.ndarray, summary: TrainingSummary,
                    budget: int, record_timings: bool, device, trained: BudgetQuantiser | None, reserve: int,
                    post_filter: postfilter.PostFilter | None = None) -> tuple[NeuralVolume | None, int]:
    """(the file quantised into ``budget`` less ``reserve`` header bytes, with ``post_filter``;
    the reserve that fitted), or (None, _) after four tries."""
    for _ in range(4):
        network.load_tensors(floats)
        groups, table_step = quantise_for_good(network, max(1, budget - reserve), trained)
        vol = NeuralVolume(network, info, storage=storage_entry(groups, table_step))
        vol.post_filter = post_filter
        _record_psnr(vol, data, summary, record_timings, device)
        _fit_header_into_budget(vol, budget, strict=False)
        if vol.nbytes <= budget:
            return vol, reserve
        reserve += vol.nbytes - budget  # the coder is adaptive: take the excess off and retry
        trained = None
    return None, reserve


# Bytes held back for a post filter when QAT settles its steps, past the kernel's header
# bytes then: the final kernel's integers may be a little longer.
FILTER_RESERVE_MARGIN = 4


def _settle_filter_reserve(target: np.ndarray, budget: int, device,
                           quantiser: BudgetQuantiser) -> Callable[[NeuralField], int]:
    """For :attr:`BudgetQuantiser.settle_reserve`: the header bytes of the post filter that
    the network quantised now would keep (0 if none), so that QAT's settled steps leave them
    free. Held back only after the plain file's steps had settled, a 5x5x5 kernel's ~50 bytes
    were more than the steps' 0.5 % margin: the filtered file was planned afresh and measured
    below the plain one (hydrogen 400:1, isabel 400:1, carotid 100:1; 60 s)."""
    def reserve(field: NeuralField) -> int:
        with quantiser.current(field):
            kernel = _best_kernel(field, target, budget, device)
        return 0 if kernel is None else kernel.header_bytes() + FILTER_RESERVE_MARGIN
    return reserve


def _post_filter_candidates(plain: NeuralVolume, data: np.ndarray, budget: int, device,
                            held_back: int = 0) -> list[postfilter.PostFilter]:
    """The post filters worth trying on ``plain``'s quantised network (none where none is worth
    its bytes): the best within the ``held_back`` bytes QAT's settled steps left for one, and
    the best within all the bytes the plain file leaves unused, where that differs. The
    second is a finer rounding where the held-back bytes were a little short: viscous fingers
    200:1 (60 s) kept a 5x5x5 kernel at 2^-10 (47.74 dB) where its 2^-13 rounding gave 48.22,
    ~10 bytes longer, in a file with 43 of its 5242 bytes unused."""
    fitted = _fitted_kernels(plain.network, fields.normalised_target(data, plain.info), device)
    plain.network.to("cpu")
    kernels = []
    for free in (held_back, max(held_back, budget - plain.nbytes)):
        kernel = postfilter.best_kernel(fitted, budget, free)
        if kernel is not None and kernel not in kernels:
            kernels.append(kernel)
    return kernels


def _fitted_kernels(network: NeuralField, target: np.ndarray, device) -> dict[int, postfilter.FittedKernel]:
    """:func:`postfilter.fit_kernels` for ``network``'s values on the original grid against
    ``target`` (:func:`fields.normalised_target`)."""
    nz, ny, nx = target.shape[:3]
    raw = evaluate_grid(network, unit_axis(nx, 0, nx - 1), unit_axis(ny, 0, ny - 1), unit_axis(nz, 0, nz - 1),
                        device=str(device))
    return postfilter.fit_kernels(raw, target)


def _best_kernel(network: NeuralField, target: np.ndarray, budget: int, device,
                 free_bytes: int = 0) -> postfilter.PostFilter | None:
    """The kernel of :func:`postfilter.best_kernel` for ``network``'s values on the original grid
    against ``target`` (:func:`fields.normalised_target`)."""
    return postfilter.best_kernel(_fitted_kernels(network, target, device), budget, free_bytes)


def psnr_of(vol: NeuralVolume, original: np.ndarray, device: torch.device | str = "cpu") -> float:
    # float32: the recorded PSNR is the exact decode's (an "auto" decode is measured against it)
    return psnr(original, vol.decode(device=str(device), compute="float32"))


def _fit_header_into_budget(vol: NeuralVolume, budget: int, strict: bool = True) -> None:
    """Thin the fitting curve if the real header came out longer than reserved."""
    while vol.nbytes > budget and vol.training.curve:
        curve = vol.training.curve
        vol.training.curve = curve[::2] if len(curve) > 1 else []
        vol.invalidate_size()
    if vol.nbytes > budget and strict:
        raise RuntimeError(f"internal error: file of {vol.nbytes} bytes exceeds the budget of {budget}")
