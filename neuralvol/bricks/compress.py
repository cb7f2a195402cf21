"""Bricked compression: split, measure, allocate the global budget, fit bricks as Dask tasks, write once.

1. A statistics task per brick reads it (lazily, on a worker) and returns its range, variance
   and gradient energy; the client derives the whole volume's range from them.
2. :func:`neuralvol.bricks.allocate.allocate` splits the file budget over the bricks.
3. A fit task per brick runs :func:`neuralvol.compress` on its extent with its byte share and
   returns the brick's one-model `.nvc` bytes (no pickled torch objects cross the wire).
4. The client assembles the bricked file; if its header came out larger than reserved the
   largest bricks are refitted with the excess taken off, so the file never exceeds the budget.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time as _time
from typing import Callable, Sequence

import numpy as np

from ..bitstream import schema
from ..bitstream.budget import byte_budget
from ..bitstream.records import TrainingSummary
from ..errors import InputError
from ..volume import VolumeInfo
from . import allocate, runner
from .lazy import as_brick_source, is_lazy
from .layout import BrickLayout
from .volume import BrickedVolume

# Volumes above this many voxels are bricked when no brick size is asked for: a 256^3 fit
# already takes ~300 s on 2 cores (issue 14), and 128^3 bricks give such a volume >= 8 tasks.
AUTO_BRICK_VOXELS = 256 ** 3
DEFAULT_BRICK = 128
# Voxels each brick's model is fitted beyond its core, blended linearly (see layout.py).
# benchmarks/large.py --quick (64^3 turbulence crop, 8 bricks of 32, 200:1, 30 steps), PSNR
# within 2 voxels of brick faces / interior / all: overlap 0: 19.59 / 20.77 / 20.54 (a seam);
# 2: 20.52 / 20.39 / 20.41; 4: 21.12 / 20.14 / 20.30 (an earlier run with ~20 % fewer bytes:
# 20.50 / 21.15 / 21.03, 21.09 / 20.88 / 20.91, 21.03 / 20.48 / 20.57). Overlap 2 removes the
# seam for the least loss (more overlap = more voxels for the same bytes and steps).
DEFAULT_OVERLAP = 2
# The bricked file's bytes beyond the sum of its bricks' one-model files (each brick's budget
# covers its own header): measured +191 bytes for 8 bricks (64^3, 19.7 kB) and -190 for 16
# (32^3, 3.2 kB; the shared JSON header compresses repeated keys). The exact size is checked
# after fitting, and bricks are refitted smaller if it is over (compress_bricked).
HEADER_BYTES_PER_BRICK = 16
HEADER_BYTES_FIXED = 320
REFIT_ROUNDS = 3
# A time budget is the whole call's, as for a single model: its clock starts once every worker
# has imported torch's optimiser machinery and loaded the kernels (compress's own clock starts
# after them too), and the bricks' fits share what the statistics leave, in waves of as many
# bricks as there are worker threads. FINISH_SHARE of it is kept for assembling the file and
# for the fit tasks' overrun (reading the brick, coding it, the compress call's own ~1-3 %):
# embryo 256^3 in 8 bricks of 128 on 2 workers, 200:1, 120 s: 4 % kept, 118.6 s (tasks of
# 28.2-30.0 s for 28.55 each); 6 % kept, 115.4 s; plus ~3 s for the cluster's start and the
# workers' imports before the clock starts.
FINISH_SHARE = 0.04
# Below this a brick's fit is mostly planning, quantisation and its final measurement: a budget
# that would give less is refused with the fix, rather than kept by fits that learn nothing.
MIN_BRICK_SECONDS = 2.0
# max_error: a per-brick bound would not hold across the blended overlaps; importance/roi:
# boxes and weights are in whole-grid coordinates, which no brick fit translates yet.
UNSUPPORTED = ("psnr", "preset", "init", "config", "max_error", "importance", "roi", "roi_weight", "warm_start")


def brick_seconds(time_budget: float, elapsed: float, bricks: int, slots: int) -> float:
    """Each of ``bricks`` fits' seconds, in waves on ``slots`` worker threads, when ``elapsed``
    seconds of ``time_budget`` are spent (:data:`FINISH_SHARE` of it kept back)."""
    return (time_budget * (1.0 - FINISH_SHARE) - elapsed) / math.ceil(bricks / slots)


def time_budget_for(seconds: float, bricks: int, slots: int) -> float:
    """The time budget that gives each of ``bricks`` fits ``seconds`` on ``slots`` worker
    threads before anything is spent (:func:`brick_seconds` the other way round)."""
    return seconds * math.ceil(bricks / slots) / (1.0 - FINISH_SHARE)


def needs_bricks(shape) -> bool:
    return math.prod(int(n) for n in shape) > AUTO_BRICK_VOXELS


def _read(source, slices) -> np.ndarray:
    block = source[slices]
    return np.ascontiguousarray(np.asarray(block))


def statistics_task(source, slices) -> dict:
    return allocate.brick_statistics(_read(source, slices))


def fit_task(source, slices, extent, origin, spacing, array_name, size, options) -> dict:
    """Fit one brick; returns its single-model `.nvc` bytes and what the run reports."""
    import torch
    from ..compress import compress
    torch.set_num_threads(1)   # one thread per worker: the cluster provides the parallelism
    runner.restore_mmap_threshold()
    started = _time.perf_counter()
    block = _read(source, slices)
    vol = compress(block, spacing=spacing, origin=origin, array_name=array_name, size=int(size), **options)
    vol.info = dataclasses.replace(vol.info, extent=tuple(int(v) for v in extent))
    vol.training = dataclasses.replace(vol.training, curve=[])   # per-brick curves cost header bytes
    vol.invalidate_size()
    return {"data": schema.to_bytes([vol], compact=False), "psnr": vol.training.psnr, "exact": vol.training.exact,
            "steps": vol.training.steps, "seconds": _time.perf_counter() - started,
            "device": vol.training.device, "peak_rss": runner.peak_rss_bytes()}


def compress_bricked(array, brick=DEFAULT_BRICK, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                     origin: Sequence[float] = (0.0, 0.0, 0.0), array_name: str = "values", *,
                     ratio: float | None = None, bpv: float | None = None, size: int | None = None,
                     overlap: int = DEFAULT_OVERLAP, allocation: str = "variance", workers: int | None = 0,
                     scheduler: str | None = None, client=None,
                     progress: Callable[[int, int, dict], bool | None] | None = None,
                     time: float | None = None, **options) -> BrickedVolume:
    """Compress ``array`` as bricks of about ``brick`` voxels per axis, one model each.

    Parameters
    ----------
    array : numpy array or lazy array-like, shape [z, y, x]
        A lazy object (``shape``, ``dtype``, ``__getitem__`` of slices returning numpy,
        picklable without its data) is read brick by brick, on the workers.
    brick : int or 3 ints (x, y, z)
        Brick core size in voxels.
    ratio, bpv, size :
        The byte budget of the whole file (default ratio 100); the file never exceeds it.
    overlap : int, default 2
        Voxels each model covers beyond its core on each side, blended linearly on decode.
    allocation : str, default "variance"
        Difficulty used to share the budget: "variance" (of the brick's values), "gradient"
        (mean squared finite difference) or "equal" (see :mod:`.allocate` for the measurements).
    workers : int, default 0
        0: fit in this process; W > 0: a new ``LocalCluster`` of W one-thread worker processes.
    scheduler : str, optional
        Address of a running Dask scheduler instead of a new cluster.
    client : distributed.Client, optional
        An existing client (it is not closed).
    progress : callable, optional
        ``progress(done, total, brick)`` after each brick fit (``brick``: its index, PSNR,
        seconds); returning ``False`` cancels (:class:`FitCancelled`).
    **options :
        Passed to :func:`neuralvol.compress` for every brick (``steps``, ``seed``,
        ``encoding``, ``record_timings``, ``device``, ...), except ``time_budget``: the seconds
        of the whole call, as for a single model (its clock starts once the workers have
        loaded torch and the kernels). The bricks' fits share what the statistics leave, in
        waves of as many as there are worker threads, and a budget that would leave a brick
        under ``MIN_BRICK_SECONDS`` is refused. With neither ``time_budget`` nor ``steps``
        each brick fits for :func:`neuralvol.compress`'s default 60 s.

    Returns
    -------
    BrickedVolume
        (a plain NeuralVolume when the volume fits in one brick: the same file as
        :func:`neuralvol.compress` makes). Not yet written: call ``save(path)``. ``report`` holds the peak memory, the bytes
        and PSNR of each brick.
    """
    for key in UNSUPPORTED:
        if options.get(key) is not None:
            raise InputError(f"{key} is not supported with bricks yet; compress without --brick"
                             + (", or give a ratio/size instead" if key == "psnr" else ""))
    shape = tuple(int(n) for n in array.shape)
    if len(shape) != 3:
        raise InputError(f"bricked compression needs a [z, y, x] volume, got shape {shape}")
    dtype = np.dtype(array.dtype)
    if dtype.name not in schema.VALUE_DTYPES:
        raise InputError(f"dtype {dtype} is not supported; use an integer or float array "
                         f"({', '.join(schema.VALUE_DTYPES)})")
    if not is_lazy(array) and not isinstance(array, np.ndarray):
        array = np.asarray(array)
    if workers is not None and int(workers) < 0:
        raise InputError(f"workers must be >= 0, got {workers}")
    from ..compress import _vec3, check_time_budget
    spacing, origin = _vec3(spacing, "spacing", positive=True), _vec3(origin, "origin", positive=False)
    dims = (shape[2], shape[1], shape[0])
    layout = BrickLayout.for_volume(dims, brick, overlap)
    voxels = math.prod(shape)
    budget = byte_budget(voxels * dtype.itemsize, voxels, ratio, bpv, size)
    if len(layout) == 1:   # one brick: exactly the file an unbricked compress makes
        from ..compress import compress
        return compress(np.asarray(array[:, :, :]), spacing=spacing, origin=origin, array_name=array_name,
                        ratio=ratio, bpv=bpv, size=size, time=time, **options)
    time_budget = check_time_budget(options.pop("time_budget", None))   # the whole call's: the bricks' fits share it
    reserve = HEADER_BYTES_FIXED + HEADER_BYTES_PER_BRICK * len(layout)
    if budget < reserve + len(layout) * allocate.MIN_BRICK_BYTES:
        raise InputError(f"a budget of {budget} bytes is too small for {len(layout)} bricks (each needs about "
                         f"{allocate.MIN_BRICK_BYTES + HEADER_BYTES_PER_BRICK}); use larger bricks (--brick) "
                         f"or a lower ratio")
    source = as_brick_source(array)
    use_dask = client is not None or scheduler is not None or (workers or 0) > 0
    with (runner.dask_client(workers, scheduler, client) if use_dask else _no_client()) as c:
        runner.warm_up(c)
        started = _time.perf_counter()
        slots = runner.slots(c)

        def seconds_each(bricks: int) -> float | None:
            """Each of ``bricks`` fits' share of what is left of the time budget."""
            if time_budget is None:
                return None
            return brick_seconds(time_budget, _time.perf_counter() - started, bricks, slots)

        # numpy inputs travel as their bricks; lazy ones as themselves (each worker reads its brick)
        sources = [source if is_lazy(source) else _scatter(c, source[layout.slices(i)]) for i in range(len(layout))]
        whole = [(slice(None),) * 3] * len(layout)
        slices = [layout.slices(i) if is_lazy(source) else whole[i] for i in range(len(layout))]
        stats = runner.run(statistics_task, list(zip(sources, slices)), c, key="neuralvol-stats")
        for s in stats:
            if not (math.isfinite(s["min"]) and math.isfinite(s["max"])):
                raise InputError("input has NaN or infinite values; replace them (e.g. numpy.nan_to_num) "
                                 "before compressing")
        value_range = (min(s["min"] for s in stats), max(s["max"] for s in stats))
        core = [layout.core_voxels(i) for i in range(len(layout))]
        sizes = allocate.allocate(budget - reserve, core, allocate.difficulties(stats, allocation))
        info = VolumeInfo(dims=dims, spacing=spacing, origin=origin, array_name=str(array_name),
                          dtype=dtype.name, value_range=value_range, time=time)

        def brick_args(i, seconds):
            e = layout.extent(i)
            o = tuple(origin[a] + spacing[a] * e[2 * a] for a in range(3))
            fit_options = options if seconds is None else {**options, "time_budget": seconds}
            return (sources[i], slices[i], e, o, spacing, str(array_name), sizes[i], fit_options)

        def report(done, total, result):
            if progress is not None:
                return progress(done, total, {k: result[k] for k in ("psnr", "seconds", "steps")})

        seconds = seconds_each(len(layout))
        if seconds is not None and seconds < MIN_BRICK_SECONDS:
            raise InputError(f"a time budget of {time_budget:g} s leaves {max(seconds, 0.0):.1f} s for each of "
                             f"{len(layout)} bricks on {slots} worker thread(s), under the {MIN_BRICK_SECONDS:g} s a "
                             f"fit needs; give a longer time budget, more workers or larger bricks (--brick)")
        results = runner.run(fit_task, [brick_args(i, seconds) for i in range(len(layout))], c, report,
                             key="neuralvol-fit")
        for _ in range(REFIT_ROUNDS):
            vol = _assemble(results, layout, info, stats, core)
            excess = vol.nbytes - budget
            if excess <= 0:
                break
            # take the excess (and a little) off the largest bricks and fit them again
            order = sorted(range(len(layout)), key=lambda i: -sizes[i])
            redo = order[:max(1, len(order) // 4)]
            cut = math.ceil(1.25 * excess / len(redo)) + 8
            for i in redo:
                sizes[i] = max(allocate.MIN_BRICK_BYTES, sizes[i] - cut)
            # a refit past the budget's end still gets the shortest useful fit (the file must fit)
            again = seconds_each(len(redo))
            again = None if again is None else max(again, MIN_BRICK_SECONDS)
            redone = runner.run(fit_task, [brick_args(i, again) for i in redo], c, key="neuralvol-refit")
            for i, r in zip(redo, redone):
                results[i] = r
        else:
            vol = _assemble(results, layout, info, stats, core)
            if vol.nbytes > budget:
                raise InputError(f"could not fit {len(layout)} bricks into {budget} bytes; use larger bricks "
                                 f"(--brick) or a lower ratio")
        rss = runner.worker_peak_rss(c)
    vol.report = {"bricks": len(layout), "budget": budget, "sizes": sizes,
                  "brick_bytes": [len(r["data"]) for r in results], "brick_psnr": [r["psnr"] for r in results],
                  "brick_seconds": [r["seconds"] for r in results], "difficulty": stats,
                  "peak_rss_task_max": max(r["peak_rss"] for r in results),
                  "peak_rss_workers": rss, "peak_rss_client": runner.peak_rss_bytes(),
                  "seconds": _time.perf_counter() - started, "time_budget": time_budget,
                  "brick_time_budget": seconds, "worker_threads": slots}
    return vol


@contextlib.contextmanager
def _no_client():
    yield None


def _scatter(client, block):
    block = np.ascontiguousarray(block)
    return block if client is None else client.scatter(block, hash=False)


def _assemble(results, layout, info, stats, core) -> BrickedVolume:
    bricks = [schema.volumes_from_bytes(r["data"], source=f"brick {i}")[0] for i, r in enumerate(results)]
    ranges = [s["max"] - s["min"] for s in stats]
    est = allocate.estimated_psnr([math.inf if r["exact"] else r["psnr"] for r in results], ranges, core,
                                  info.value_range)
    exact = est is not None and math.isinf(est)
    training = TrainingSummary(steps=max((r["steps"] or 0) for r in results), stopped=None,
                               device=results[0]["device"], psnr=None if est is None or exact else round(est, 4),
                               exact=exact)
    return BrickedVolume(bricks, layout, info, training)
