"""Trilinear against B-spline hash-grid levels: the same bytes, the same time (or steps).

For each volume and ratio, ``compress`` with each hash-grid kind (``hashgrid``,
``hashgrid_quadratic``, ``hashgrid_cubic``; see ``neuralvol.encodings.hashgrid.INTERPOLATIONS``)
at the same byte budget, for the same time budget or the same number of steps, and prints
PSNR, steps and seconds per kind. This is the measurement behind ``encoding="auto"``
(``neuralvol.compress.AUTO_WITH_TIME_BUDGET``); docs/RATE_DISTORTION.md quotes its tables.

    .venv/bin/python benchmarks/interpolation.py viscous_fingers_t99 carotid --ratios 100 400 --threads 1
    .venv/bin/python benchmarks/interpolation.py nucleon --steps 2000 --kinds hashgrid hashgrid_quadratic

Run two of these side by side on a 2-core machine (one thread each), as the tables were.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import neuralvol as nv
from neuralvol.encodings import HASHGRID_CONFIGS
from neuralvol.metrics import psnr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rd  # noqa: E402  (the volume folder)

KINDS = tuple(config.kind for config in HASHGRID_CONFIGS.values())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("volumes", nargs="+", help=f"names in {rd.VOLUMES}")
    parser.add_argument("--ratios", nargs="+", type=float, default=[100.0])
    parser.add_argument("--kinds", nargs="+", default=list(KINDS[:2]), choices=KINDS)
    parser.add_argument("--time-budget", type=float, default=60.0, help="seconds per compress call (default 60)")
    parser.add_argument("--steps", type=int, help="the same steps for every kind instead of the same time")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--data", type=Path, default=rd.VOLUMES)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    budget = f"{args.steps} steps" if args.steps else f"{args.time_budget:g} s"
    print(f"{budget} per call, {torch.get_num_threads()} torch thread(s); PSNR dB (steps, seconds of the call)")
    print("| volume | ratio | bytes | " + " | ".join(args.kinds) + " | best |")
    print("|---|---|---|" + "---|" * (len(args.kinds) + 1))
    for name in args.volumes:
        data = np.load(args.data / f"{name}.npy")
        for ratio in args.ratios:
            cells, scores, nbytes = [], [], 0
            for kind in args.kinds:
                start = time.perf_counter()
                vol = nv.compress(data, ratio=ratio, encoding=kind, seed=args.seed, steps=args.steps,
                                  time_budget=None if args.steps else args.time_budget)
                seconds = time.perf_counter() - start
                value = psnr(data, vol.decode())
                nbytes = max(nbytes, vol.nbytes)
                scores.append(value)
                cells.append(f"{value:.2f} ({vol.training.steps}, {seconds:.0f} s)")
            best = args.kinds[int(np.argmax(scores))]
            print(f"| {name} | {ratio:g} | {nbytes} | " + " | ".join(cells) + f" | {best} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
