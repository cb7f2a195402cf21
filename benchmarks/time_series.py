"""Time to equal PSNR on a time series: warm start vs from scratch vs the meta-learned init.

The 10-step viscous-fingers series (``../shared/data/vti/viscous_fingers_run01_090..099.vti``,
64^3 float32). All three starts fit the same network (the ``small`` preset of
``data/inits/simulation.nvinit``, quantised storage as the codec writes it). For every step
after the first: the from-scratch fit runs ``--steps`` steps and reaches some PSNR P; then a
fit from the meta-learned init and one warm-started from the previous step's (warm-started)
model each run until they reach P (checked on the whole volume, through the quantiser, every
50 steps after the running estimate passes P) or ``--steps``. Prints steps and fitting
seconds to P per start, and the speed-ups.

    python benchmarks/time_series.py --quick          # 3 steps, 300 steps cap
    python benchmarks/time_series.py                  # all 10 steps, 1500 steps cap
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import neuralvol as nv
from neuralvol.volume_io import read_volume

REPO = Path(__file__).resolve().parents[1]
SERIES = sorted((REPO.parent / "shared" / "data" / "vti").glob("viscous_fingers_run01_0*.vti"))
INIT = REPO / "data" / "inits" / "simulation.nvinit"


def fit(array, t, seed, **kw):
    return nv.compress(array, time=t, seed=seed, device="cpu", record_timings=True, **kw)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--steps", type=int, help="steps of the from-scratch fit (default 300 quick, 1500 full)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if len(SERIES) < 2:
        raise SystemExit(f"viscous fingers series not found next to the repository ({REPO.parent}/shared/data/vti)")
    files = SERIES[:3] if args.quick else SERIES
    cap = args.steps or (300 if args.quick else 1500)
    steps = [read_volume(f) for f in files]
    print(f"viscous fingers, {len(files)} steps of 64^3, preset 'small' (simulation.nvinit), cap {cap} steps, "
          f"{args.threads} thread(s)")
    print(f"{'step':>4} {'target dB':>9} | {'scratch':>13} | {'meta init':>13} | {'warm start':>13} | "
          f"{'speed-up vs scratch / meta (steps)':>34}")
    previous = fit(steps[0].array, 0.0, args.seed, preset="small", steps=cap)
    rows = []
    for i in range(1, len(steps)):
        a = steps[i].array
        scratch = fit(a, float(i), args.seed, preset="small", steps=cap)
        target = scratch.training.psnr
        meta = fit(a, float(i), args.seed, init=INIT, steps=cap, psnr=target)
        warm = fit(a, float(i), args.seed, warm_start=previous, steps=cap, psnr=target)
        previous = warm
        cells = []
        for v in (scratch, meta, warm):
            # stopped on the target (the in-fit check, through the quantiser) or reached it
            reached = v.training.stopped == "psnr" or v.training.psnr >= target - 1e-9
            cells.append(f"{v.training.steps:>5}{'' if reached else '*'} {v.training.seconds:6.1f}s")
        rows.append((scratch.training.steps, meta.training.steps, warm.training.steps))
        print(f"{i:>4} {target:9.2f} | " + " | ".join(f"{c:>13}" for c in cells) +
              f" | {scratch.training.steps / warm.training.steps:>14.2f}x / {meta.training.steps / warm.training.steps:.2f}x")
    s, m, w = (np.mean([r[k] for r in rows]) for k in range(3))
    print(f"mean steps to target: scratch {s:.0f}, meta init {m:.0f}, warm start {w:.0f} "
          f"(speed-up {s / w:.2f}x vs scratch, {m / w:.2f}x vs meta init); * = target not reached within the cap "
          f"(PSNR is checked every 50 steps once the running estimate passes the target)")


if __name__ == "__main__":
    main()
