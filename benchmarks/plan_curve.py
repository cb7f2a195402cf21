"""Small quantised files: the planned network, the bit depth trials, and what they replaced.

A quantised file under ``CURVE_MIN_BUDGET`` bytes carries no fitting curve, yet planning used
to reserve the curve's header bytes, so the network came out smaller than the budget allowed
and its parameters were coded at 6-11 bits instead of the planned 5.5. Now such files are
fitted twice, with the network planned without the reserve and the old one, half the time
each, and the better is kept. Per cell, one after the other in one run, at the same bytes and
time: each network alone with the whole time, ``compress`` as it now is (the whole call), and SPERR at
the same bytes (when ``.venv-baselines`` exists, see ``benchmarks/setup_baselines.sh``):

    .venv/bin/python benchmarks/plan_curve.py --threads 1 --ratios 400 --volumes neghip carotid
    .venv/bin/python benchmarks/plan_curve.py --threads 1     # every shared volume whose budget is that small
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np
import torch

import neuralvol as nv
from neuralvol.bitstream import budget as sizing
from neuralvol.bitstream.records import worst_case_training
from neuralvol.compress import _plan
from neuralvol.metrics import psnr

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rd  # noqa: E402  (SPERR's worker and the volume folder)


def networks(data: np.ndarray, budget: int):
    """(old plan, plan without the curve's reserve) for ``budget`` bytes: the two candidates
    ``compress`` plans (the old one reserved the curve's bytes where they left room)."""
    info = nv.compress(data, size=budget, steps=1, seed=0).info
    worst = worst_case_training("cpu", record_timings=True, seed=0)
    return tuple(_plan(info, budget, w, "hashgrid", "quantised") for w in (worst, dataclasses.replace(worst, curve=[])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", nargs="+", default=None, help=f"names of .npy files in {rd.VOLUMES}")
    parser.add_argument("--ratios", type=float, nargs="+", default=[100, 200, 400, 800])
    parser.add_argument("--time-budget", type=float, default=60)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    names = args.volumes or sorted(p.stem for p in rd.VOLUMES.glob("*.npy"))
    sperr = rd.BASELINES_PYTHON.exists()
    print(f"{torch.get_num_threads()} torch threads, {args.time_budget:g} s per fit; files under "
          f"{sizing.CURVE_MIN_BUDGET} bytes whose two plans differ; params (bits/param) PSNR" +
          ("" if sperr else "; no .venv-baselines, so no SPERR column"))
    print("\n| volume | ratio | budget | old plan | plan without the reserve | compress now | its s | "
          "now - old dB | SPERR PSNR |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in names:
        data = np.load(rd.VOLUMES / f"{name}.npy")
        for ratio in args.ratios:
            budget = int(data.nbytes // ratio)
            if budget >= sizing.CURVE_MIN_BUDGET:
                continue
            plans = networks(data, budget)
            if plans[0] == plans[1]:
                continue
            cells = []
            for config in plans:
                vol = nv.compress(data, size=budget, time_budget=args.time_budget, seed=0, config=config)
                bits = 8 * (vol.nbytes - sizing.header_length(vol)) / config.n_params
                cells.append((config.n_params, bits, psnr(data, vol.decode())))
            start = time.perf_counter()
            vol = nv.compress(data, size=budget, time_budget=args.time_budget, seed=0)
            seconds = time.perf_counter() - start
            now = psnr(data, vol.decode())
            cells.append((vol.config.n_params, 8 * (vol.nbytes - sizing.header_length(vol)) / vol.config.n_params, now))
            sperr_psnr = ""
            if sperr:
                row = rd.run_wasm_codecs(data, [budget], ["sperr"])["sperr"][budget]
                sperr_psnr = "" if row["sperr_psnr"] is None else f"{row['sperr_psnr']:.2f}"
            text = " | ".join(f"{p} ({b:.1f}) {q:.2f}" for p, b, q in cells)
            print(f"| {name} | {ratio:g} | {budget} | {text} | {seconds:.1f} | {now - cells[0][2]:+.2f} | "
                  f"{sperr_psnr} |", flush=True)


if __name__ == "__main__":
    main()
