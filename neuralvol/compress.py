"""Compressing an array: validate, pick the network for the byte budget, fit, measure."""
from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch

from .architecture import choose_architecture_for
from .errors import InputError
from .fitting import FitProgress, fit, resolve_device
from .metrics import psnr
from .model import ModelConfig, NeuralField
from .volume import VALUE_DTYPES, NeuralVolume, VolumeInfo, to_bytes

DEFAULT_RATIO = 100.0
DEFAULT_TIME_BUDGET = 60.0
STORED_BYTES_PER_PARAM = 2  # float16
HEADER_MARGIN = 64          # slack for header fields whose length is only known after fitting


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
    elif array.ndim != 3:
        raise InputError(f"expected a [z, y, x] array, got {array.ndim} dimensions (shape {array.shape}); "
                         f"multi-component arrays are not supported yet: compress one component at a time")
    if array.dtype.kind == "f":
        bad = ~np.isfinite(array)
        if bad.any():
            n_nan = int(np.isnan(array).sum())
            raise InputError(f"input has {n_nan} NaN and {int(bad.sum()) - n_nan} infinite values; replace them "
                             f"(e.g. numpy.nan_to_num) before compressing")
    return np.ascontiguousarray(array)


def _vec3(value, what: str, positive: bool) -> tuple[float, float, float]:
    try:
        v = tuple(float(x) for x in value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be three numbers (x, y, z), got {value!r}") from None
    if len(v) != 3 or not all(math.isfinite(x) for x in v) or (positive and not all(x > 0 for x in v)):
        raise InputError(f"{what} must be three finite{' positive' if positive else ''} numbers (x, y, z), got {value!r}")
    return v


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


def _worst_case_training(device: torch.device, record_timings: bool) -> dict:
    """A training summary at least as long as any real one (sizes the header reserve)."""
    curve = [[12345.67, 1234567, 123.45]] * 9
    return {"psnr": 123.4567, "steps": 12345678, "seconds": 123456.789 if record_timings else None,
            "stopped": "time_budget", "device": str(device), "seed": 2 ** 31, "curve": curve, "exact": False}


def _header_bytes(info: VolumeInfo, config: ModelConfig, training: dict) -> int:
    probe = NeuralVolume(NeuralField(config), info, training)
    return len(to_bytes([probe])) - config.n_params * STORED_BYTES_PER_PARAM


def plan_architecture(info: VolumeInfo, budget: int, training: dict, encoding: str = "hashgrid") -> ModelConfig:
    """The largest network of ``encoding`` kind whose whole file fits ``budget`` bytes."""
    overhead = _header_bytes(info, choose_architecture_for(encoding, info.dims, 10_000), training) + HEADER_MARGIN
    for _ in range(3):
        max_params = (budget - overhead) // STORED_BYTES_PER_PARAM
        if max_params <= 0:
            raise InputError(f"the size budget of {budget} bytes is smaller than the file header "
                             f"(~{overhead} bytes); ask for a lower ratio or a larger size")
        config = choose_architecture_for(encoding, info.dims, max_params)
        needed = _header_bytes(info, config, training) + HEADER_MARGIN
        if needed <= overhead:
            return config
        overhead = needed
    return config


def _round_training(summary: dict, record_timings: bool) -> dict:
    def r(v, nd):
        return None if v is None or not math.isfinite(v) else round(float(v), nd)
    out = dict(summary)
    out["seconds"] = r(out.get("seconds"), 3) if record_timings else None
    out["curve"] = [[r(t, 2) if record_timings else None, int(s), r(p, 2)] for t, s, p in out.get("curve", [])]
    return out


def compress(array, spacing: Sequence[float] = (1.0, 1.0, 1.0), origin: Sequence[float] = (0.0, 0.0, 0.0),
             array_name: str = "values", *, ratio: float | None = None, bpv: float | None = None,
             size: int | None = None, time_budget: float | None = None, steps: int | None = None,
             psnr: float | None = None, seed: int = 0, device: str = "auto",
             progress: Callable[[FitProgress], bool | None] | None = None, time: float | None = None,
             record_timings: bool = True, config: ModelConfig | None = None,
             encoding: str = "hashgrid", grad_weight: float = 0.0, preset: str | None = None,
             init=None) -> NeuralVolume:
    """Fit a network to ``array`` ([z, y, x]) and return the compressed volume.

    The whole `.nvc` file is at most ``native bytes / ratio`` (or ``bpv`` bits per voxel,
    or ``size`` bytes; default ratio 100). Fitting stops after ``steps``, ``time_budget``
    seconds (default 60 when neither is given) or when the PSNR reaches ``psnr`` dB.
    ``progress`` receives :class:`FitProgress` and may return ``False`` to cancel.
    ``encoding`` picks the input encoding (``hashgrid``, ``frequency``, ``triangle_wave``,
    ``dense_grid``, ``identity``); every kind is sized to the same byte budget.
    ``grad_weight`` > 0 adds a loss on finite-difference gradients (see :func:`fitting.fit`).
    ``record_timings=False`` leaves wall-clock times out of the file, so that a fixed
    ``seed`` and ``steps`` give byte-identical files.
    ``preset`` (a name from :mod:`neuralvol.presets`) fixes the network instead of sizing it to
    the budget; ``init`` (a `.nvinit` path or :class:`neuralvol.meta.MetaInit`) starts fitting
    from a meta-learned initialisation and implies its preset. With either, the file is as large
    as the preset makes it; an explicit ratio/bpv/size it would exceed is an error.
    """
    data = validate_array(array)
    spacing = _vec3(spacing, "spacing", positive=True)
    origin = _vec3(origin, "origin", positive=False)
    if steps is not None and int(steps) < 0:
        raise InputError(f"steps must be >= 0, got {steps}")
    if time_budget is not None and not float(time_budget) >= 0:
        raise InputError(f"time budget must be >= 0 seconds, got {time_budget}")
    if steps is None and time_budget is None:
        time_budget = DEFAULT_TIME_BUDGET
    if not (float(grad_weight) >= 0 and math.isfinite(float(grad_weight))):
        raise InputError(f"grad weight must be a finite number >= 0, got {grad_weight}")
    torch_device = resolve_device(device)
    nz, ny, nx = data.shape
    lo, hi = float(np.min(data)), float(np.max(data))
    info = VolumeInfo(dims=(nx, ny, nz), spacing=spacing, origin=origin, array_name=str(array_name),
                      dtype=data.dtype.name, value_range=(lo, hi), time=time)
    explicit_budget = any(v is not None for v in (ratio, bpv, size))
    budget = byte_budget(data.nbytes, data.size, ratio, bpv, size)
    worst = _worst_case_training(torch_device, record_timings)
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
        preset = meta_init.preset
        config = meta_init.config
    elif preset is not None:
        from .presets import preset_config
        config = preset_config(preset)
    if preset is not None:
        needed = _header_bytes(info, config, dict(worst, curve=[])) + config.n_params * STORED_BYTES_PER_PARAM
        if explicit_budget and needed > budget:
            raise InputError(f"preset {preset!r} needs about {needed} bytes, more than the requested {budget}; "
                             f"use a smaller preset or a lower ratio")
        budget = max(budget, needed + HEADER_MARGIN + 4096) if not explicit_budget else budget
    if config is None:
        try:
            config = plan_architecture(info, budget, worst, encoding)
        except InputError:
            # Tight budget: plan without the fitting curve (it is dropped from the file later).
            config = plan_architecture(info, budget, dict(worst, curve=[]), encoding)
    network = meta_init.network(seed) if meta_init is not None else NeuralField(config, seed=seed)
    torch.manual_seed(int(seed))
    if hi > lo:
        target = ((data.astype(np.float64) - lo) / (hi - lo)).astype(np.float32)
        summary = fit(network, target, steps=None if steps is None else int(steps),
                      time_budget=None if time_budget is None else float(time_budget),
                      psnr_target=psnr, seed=seed, device=torch_device, progress=progress,
                      grad_weight=float(grad_weight))
    else:  # constant volume: the normalisation alone reproduces it exactly
        summary = {"steps": 0, "seconds": 0.0, "stopped": "constant", "curve": []}
    network.to("cpu")
    with torch.no_grad():
        for p in network.parameters():
            p.copy_(p.to(torch.float16).to(torch.float32))
    vol = NeuralVolume(network, info, {})
    reached = psnr_of(vol, data, torch_device)
    summary.update(psnr=None if math.isinf(reached) else round(reached, 4), exact=math.isinf(reached),
                   device=str(torch_device), seed=int(seed))
    vol.training = _round_training(summary, record_timings)
    _fit_header_into_budget(vol, budget)
    return vol


def psnr_of(vol: NeuralVolume, original: np.ndarray, device: torch.device | str = "cpu") -> float:
    return psnr(original, vol.decode(device=str(device)))


def _fit_header_into_budget(vol: NeuralVolume, budget: int) -> None:
    """Thin the fitting curve if the real header came out longer than reserved."""
    while vol.nbytes > budget and vol.training.get("curve"):
        curve = vol.training["curve"]
        vol.training["curve"] = curve[::2] if len(curve) > 1 else []
        vol._nbytes = None
    if vol.nbytes > budget:
        raise RuntimeError(f"internal error: file of {vol.nbytes} bytes exceeds the budget of {budget}")
