"""What bfloat16 decoding costs in PSNR and gains in time, volume by volume, and what "auto" picks.

Each volume is fitted at one ratio for a fixed number of steps (the models are only decoded,
so they need not be the best), then decoded on the original grid with ``compute="float32"``
and ``compute="bfloat16"``:

    .venv/bin/python benchmarks/compute_precision.py --threads 2
    .venv/bin/python benchmarks/compute_precision.py --volumes embryo --steps 300

"share" is :func:`neuralvol.evaluate.bf16_error` over the model's RMS error, the quantity
``compute="auto"`` compares with ``BF16_ERROR_SHARE``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import neuralvol as nv
from neuralvol import evaluate
from neuralvol.metrics import psnr

from speed import VOLUMES, load  # python puts this script's folder first on sys.path

DEFAULT = ["headsq_quarter", "carotid", "marschner_lobb_64", "viscous_fingers_t99", "nucleon", "hydrogen", "embryo"]


def best_seconds(fn, repeat: int = 2) -> float:
    fn()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", nargs="+", default=DEFAULT, help=f"names of .npy files in {VOLUMES}")
    parser.add_argument("--ratio", type=float, default=100)
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{torch.get_num_threads()} torch threads; bf16 native here: {evaluate.bf16_is_native('cpu')}; "
          f"auto takes bf16 at share <= {evaluate.BF16_ERROR_SHARE}")
    print("\n| volume | dims | ratio | steps | PSNR fp32 | PSNR bf16 | loss dB | share | auto | "
          "decode s fp32 | decode s bf16 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.volumes:
        data = load(name)
        vol = nv.compress(data, ratio=args.ratio, steps=args.steps, seed=0)
        exact, low = vol.decode(compute="float32"), vol.decode(compute="bfloat16")
        p32, p16 = psnr(data, exact), psnr(data, low)
        share = evaluate.bf16_error(vol.network) / 10.0 ** (-vol.training.psnr / 20.0)
        auto = "bf16" if vol.mlp_dtype("auto") == torch.bfloat16 else "fp32"
        s32 = best_seconds(lambda: vol.decode(dtype=np.float32, compute="float32"))
        s16 = best_seconds(lambda: vol.decode(dtype=np.float32, compute="bfloat16"))
        nz, ny, nx = data.shape
        print(f"| {name} | {nx}x{ny}x{nz} | {args.ratio:g} | {args.steps} | {p32:.3f} | {p16:.3f} | {p32 - p16:.3f} | "
              f"{share:.4f} | {auto} | {s32:.2f} | {s16:.2f} |", flush=True)


if __name__ == "__main__":
    main()
