"""Several inputs into one `.nvc` file: time series (warm-started fits) and several arrays.

A time series is one model per step, each carrying its original time value (from a ``.pvd``
collection, the VTK ``TimeValue`` field data, or the step index); each step's fit starts
from the previous step's weights (``warm_start``), which reaches the same PSNR in fewer steps
than a fresh start (``benchmarks/time_series.py``). Several arrays of one image are one
model each, named like the arrays. The reader (VTK, ParaView, pyvista) exposes the steps as
time steps and the arrays as point arrays.
"""
from __future__ import annotations

import glob
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .errors import InputError

GLOB_CHARS = "*?["


@dataclass
class Step:
    """One input file of a series and its time value (None: not known from the file)."""

    path: str
    time: float | None = None


def expand_inputs(inputs: Sequence[str]) -> list[Step]:
    """Input paths, globs (sorted by name) and ``.pvd`` collections as a list of steps."""
    steps: list[Step] = []
    for item in inputs:
        item = os.fspath(item)
        if any(ch in item for ch in GLOB_CHARS) and not os.path.exists(item):
            matches = sorted(glob.glob(item))
            if not matches:
                raise InputError(f"no file matches {item!r}")
            steps += [Step(m) for m in matches]
        elif item.lower().endswith(".pvd"):
            steps += read_pvd(item)
        else:
            steps.append(Step(item))
    return steps


def read_pvd(path: str) -> list[Step]:
    """The datasets of a ParaView ``.pvd`` collection with their ``timestep`` values, in time order."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise InputError(f"{path!r} does not exist") from None
    except (ET.ParseError, OSError) as exc:
        raise InputError(f"{path!r} is not a readable .pvd file ({exc})") from None
    base = os.path.dirname(os.path.abspath(path))
    steps = []
    for ds in root.iter("DataSet"):
        file = ds.get("file")
        if not file:
            raise InputError(f"{path!r}: a DataSet entry has no file attribute")
        try:
            t = float(ds.get("timestep")) if ds.get("timestep") is not None else None
        except ValueError:
            raise InputError(f"{path!r}: timestep {ds.get('timestep')!r} is not a number") from None
        steps.append(Step(os.path.join(base, file), t))
    if not steps:
        raise InputError(f"{path!r} lists no DataSet entries")
    if all(s.time is not None for s in steps):
        steps.sort(key=lambda s: s.time)
    return steps


def step_times(steps: Sequence[Step], file_times: Sequence[float | None]) -> list[float]:
    """One time value per step: the ``.pvd``'s, else the files' TimeValue, else the index."""
    times = []
    for i, (step, ft) in enumerate(zip(steps, file_times)):
        times.append(step.time if step.time is not None else ft)
    if any(t is None for t in times):
        times = [float(i) for i in range(len(steps))]
    if len(set(times)) != len(times):
        raise InputError(f"the series has repeated time values ({times}); give each step its own time "
                         f"(a .pvd file, or the files' TimeValue field data)")
    return [float(t) for t in times]


def compress_series(arrays: Sequence[np.ndarray], times: Sequence[float] | None = None, *,
                    warm_start: bool = True, progress: Callable[[int, int, object], object] | None = None,
                    **options) -> list:
    """Compress the steps of a time series, one model each, warm-starting each fit.

    Parameters
    ----------
    arrays : sequence of arrays
        The steps, all of one shape (``[z, y, x]`` or ``[z, y, x, C]``).
    times : sequence of float, optional
        Their time values (default 0, 1, 2, ...).
    warm_start : bool, default True
        Start each step's fit from the previous step's weights (the first step from
        ``options``' init, if any, else fresh).
    progress : callable, optional
        ``progress(step_index, n_steps, fit_progress)`` while fitting; returning False cancels.
    **options
        Passed to :func:`neuralvol.compress` for every step (``ratio``, ``steps``, ...).

    Returns
    -------
    list of NeuralVolume
        One per step, with its ``time``; :func:`neuralvol.save_models` writes them.

    Examples
    --------
    >>> vols = nv.compress_series([np.load(f) for f in files], ratio=50, steps=2000)  # doctest: +SKIP
    >>> nv.save_models("series.nvc", vols)                                          # doctest: +SKIP
    """
    from .compress import compress
    if not arrays:
        raise InputError("a series needs at least one step")
    times = [float(i) for i in range(len(arrays))] if times is None else [float(t) for t in times]
    if len(times) != len(arrays):
        raise InputError(f"{len(times)} time values for {len(arrays)} steps")
    shapes = {np.shape(a) for a in arrays}
    if len(shapes) != 1:
        raise InputError(f"every step of a series needs the same shape, got {sorted(shapes)}")
    volumes = []
    for i, (array, t) in enumerate(zip(arrays, times)):
        opts = dict(options)
        if warm_start and volumes:
            opts.pop("init", None)
            opts.pop("preset", None)
            opts.pop("config", None)
            opts["warm_start"] = volumes[-1]
        if progress is not None:
            opts["progress"] = (lambda p, i=i: progress(i, len(arrays), p))
        volumes.append(compress(array, time=t, **opts))
    return volumes


# -- the command line -------------------------------------------------------------------

def is_many(args) -> bool:
    """Whether ``neuralvol compress`` was given a series or several arrays."""
    inputs = args.inputs
    return (len(inputs) > 1 or len(args.array or []) > 1 or inputs[0].lower().endswith(".pvd")
            or (any(ch in inputs[0] for ch in GLOB_CHARS) and not os.path.exists(inputs[0])))


def cmd_compress_many(args, progress_bar) -> int:
    """``neuralvol compress step_*.vti series.nvc`` / ``in.vti out.nvc --array a --array b``."""
    import sys
    import time as _time

    from .compress import compress
    from .importance import load_importance
    from .volume import save_models
    from .volume_io import read_volume
    steps = expand_inputs(args.inputs)
    arrays = args.array or [None]
    if args.psnr is not None and args.ratio is None and args.bpv is None and args.size is None and len(steps) > 1:
        raise InputError("a warm-started series keeps one network size: give --ratio, --bpv or --size "
                         "with --psnr")
    opts = dict(ratio=args.ratio, bpv=args.bpv, size=args.size, time_budget=args.time_budget, steps=args.steps,
                psnr=args.psnr, seed=args.seed, device=args.device, record_timings=not args.reproducible,
                encoding=args.encoding, grad_weight=args.grad_weight, preset=args.preset, init=args.init,
                precision=args.precision, max_error=args.max_error, roi=args.roi, roi_weight=args.roi_weight,
                importance=load_importance(args.importance) if args.importance else None)
    files = [[read_volume(s.path, array_name=a, dims=args.dims, dtype=args.dtype) for a in arrays] for s in steps]
    names = [vf.array_name for vf in files[0]]
    if len(set(names)) != len(names):
        raise InputError(f"--array names repeat: {names}")
    times = step_times(steps, [row[0].time for row in files]) if len(steps) > 1 else [None]
    update, close = progress_bar(not args.quiet)
    start = _time.perf_counter()
    volumes, previous = [], {}
    n_fits = len(files) * len(arrays)

    def overall(k):  # one bar over every fit: fit k of n_fits covers [k, k + 1) / n_fits
        if update is None:
            return None
        from .fitting import FitProgress
        return lambda p: update(FitProgress((k + p.fraction) / n_fits, p.psnr, p.elapsed, p.step))
    try:
        for i, (row, t) in enumerate(zip(files, times)):
            for vf in row:
                step_opts = dict(opts)
                if vf.array_name in previous:  # warm start from this array's previous step
                    for key in ("init", "preset"):
                        step_opts.pop(key)
                    step_opts["warm_start"] = previous[vf.array_name]
                vol = compress(vf.array, spacing=vf.spacing, origin=vf.origin, array_name=vf.array_name,
                               time=t, component_names=vf.component_names, progress=overall(len(volumes)),
                               **step_opts)
                previous[vf.array_name] = vol
                volumes.append(vol)
                if not args.quiet:
                    when = "" if t is None else f" t={t:g}"
                    print(f"  {vf.array_name}{when}: PSNR {vol.training.psnr} dB, {vol.training.steps} steps",
                          file=sys.stderr)
    finally:
        close()
    save_models(args.output, volumes)
    if not args.quiet:
        total = os.path.getsize(args.output)
        native = sum(v.info.native_bytes for v in volumes)
        print(f"{args.output}: {len(volumes)} models ({len(steps)} step(s) x {len(arrays)} array(s)), "
              f"{total} bytes, ratio {native / total:.1f}:1, {_time.perf_counter() - start:.1f} s")
    return 0
