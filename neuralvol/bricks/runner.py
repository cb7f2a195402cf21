"""Running brick tasks: on ``dask.distributed`` (a LocalCluster or a scheduler address) or in-process.

Tasks are submitted with ``retries``; a worker that dies mid-task has its task rescheduled
by the scheduler (its results are only gathered on success), so the file is still complete.
"""
from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import sys
from typing import Callable, Sequence

from ..errors import FitCancelled, InputError

TASK_RETRIES = 2

# glibc's mallopt parameter, and the ceiling glibc's own dynamic mmap threshold grows to on 64-bit
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20


def restore_mmap_threshold() -> bool:
    """Undo a side effect of dask's worker environment on fitting speed; True where it applied.

    Dask's nanny starts workers with ``MALLOC_TRIM_THRESHOLD_=65536``
    (``distributed.nanny.pre-spawn-environ``). Setting any such tunable also stops glibc from
    raising its mmap threshold as a process's allocations grow, so every tensor of more than
    128 KiB is mapped and unmapped afresh each step: a 130^3 fit made 674-678 steps in 10 s
    with the variable set against 953-1060 without, and 256^3 bricks of 128 on two workers lost
    1-2 dB each. Putting the threshold where glibc's dynamic one would go (32 MiB) gave 1084
    steps with the variable set, and leaves the trimming dask asked for in place. Nothing is
    changed where the variable is absent, where ``MALLOC_MMAP_THRESHOLD_`` is set (someone
    chose one) or off glibc.
    """
    if "MALLOC_TRIM_THRESHOLD_" not in os.environ or "MALLOC_MMAP_THRESHOLD_" in os.environ \
            or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    except (OSError, AttributeError):
        return False


def peak_rss_bytes() -> int:
    """Peak resident memory of this process.

    Linux: ``VmHWM`` of ``/proc/self/status``, the high-water mark of this process's own
    memory. ``ru_maxrss`` survives ``execve``, so a Dask worker spawned by a client that had
    just made a 512^3 field reported the client's 2275 MiB as its own peak. Elsewhere
    ``ru_maxrss`` (KiB on Linux, bytes on macOS).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    maxrss = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return maxrss if sys.platform == "darwin" else maxrss * 1024


@contextlib.contextmanager
def dask_client(workers: int | None = None, scheduler: str | None = None, client=None):
    """A ``distributed.Client``: ``client`` as given, one to ``scheduler``, or a new LocalCluster
    of ``workers`` processes with one thread each (closed on exit)."""
    if client is not None:
        yield client
        return
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InputError("bricked compression on Dask needs dask.distributed: pip install 'neuralvol[large]' "
                         "(or pass workers=0 to fit the bricks in this process)") from None
    if scheduler is not None:
        try:
            c = Client(scheduler, timeout="10s")
        except (OSError, TimeoutError) as exc:
            raise InputError(f"cannot reach the Dask scheduler at {scheduler!r} ({exc}); start one "
                             f"(dask scheduler) or drop --scheduler") from None
        with c:
            yield c
        return
    with LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as c:
        yield c


def warm_up(client=None) -> None:
    """Import torch's optimiser machinery and load the kernels in this process (``client`` None)
    or on every worker, as :func:`neuralvol.compress` does before starting its clock."""
    from ..fitting import import_optimiser_machinery
    if client is None:
        import_optimiser_machinery()
    else:
        client.run(import_optimiser_machinery)


def slots(client=None) -> int:
    """How many brick fits run at once: one in this process, else the workers' threads."""
    if client is None:
        return 1
    return max(1, sum(client.nthreads().values()))


def run(fn: Callable, arguments: Sequence[tuple], client=None, on_result: Callable | None = None,
        key: str = "neuralvol") -> list:
    """``[fn(*a) for a in arguments]``, as Dask tasks on ``client`` (in-process when None).

    ``on_result(done, total, result)`` is called as each finishes; returning ``False`` cancels
    (raises :class:`FitCancelled`)."""
    total = len(arguments)
    results = [None] * total
    if client is None:
        for i, args in enumerate(arguments):
            results[i] = fn(*args)
            if on_result is not None and on_result(i + 1, total, results[i]) is False:
                raise FitCancelled("bricked compression cancelled")
        return results
    from distributed import as_completed
    futures = [client.submit(fn, *args, retries=TASK_RETRIES, pure=False, key=f"{key}-{i}")
               for i, args in enumerate(arguments)]
    order = {f.key: i for i, f in enumerate(futures)}
    try:
        for done, fut in enumerate(as_completed(futures), start=1):
            results[order[fut.key]] = fut.result()
            if on_result is not None and on_result(done, total, results[order[fut.key]]) is False:
                raise FitCancelled("bricked compression cancelled")
    finally:
        client.cancel([f for f in futures if not f.done()])
    return results


def worker_peak_rss(client) -> dict:
    """Peak RSS (bytes) of every live worker process, by address."""
    if client is None:
        return {}
    return client.run(peak_rss_bytes)
