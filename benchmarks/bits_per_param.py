"""How many coded bits per parameter to plan for: PSNR after quantisation at equal file size.

The network is sized for ``budget * 8 / bits`` parameters; rate control then sets the
quantisation steps to fill the budget. Fewer bits per parameter buy a larger network with
coarser weights. Prints one row per (volume, ratio) and one PSNR column per bits value.

    .venv/bin/python benchmarks/bits_per_param.py --volumes headsq_quarter hydrogen --ratios 100 400 --bits 2.7 4 5.3
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

import neuralvol as nv
from neuralvol.bitstream import budget

VOLUMES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "volumes"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", nargs="+", default=["headsq_quarter", "hydrogen", "viscous_fingers_t99"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[100, 400])
    parser.add_argument("--bits", nargs="+", type=float, default=[2.7, 4.0, 5.3, 8.0])
    parser.add_argument("--time-budget", type=float, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print("| volume | ratio | " + " | ".join(f"{b:g} bits: PSNR (params)" for b in args.bits) + " |")
    print("|---|---|" + "---|" * len(args.bits))
    for name in args.volumes:
        data = np.load(VOLUMES / f"{name}.npy")
        for ratio in args.ratios:
            cells = []
            for bits in args.bits:
                budget.TARGET_BITS_PER_PARAM = bits
                try:
                    vol = nv.compress(data, ratio=ratio, time_budget=args.time_budget, seed=0)
                    cells.append(f"{vol.training.psnr:.2f} ({vol.config.n_params}, {vol.training.steps} st)")
                except nv.NeuralVolError as exc:
                    cells.append(f"— ({str(exc)[:30]})")
            print(f"| {name} | {ratio:g} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
