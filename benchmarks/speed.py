"""Training and decode throughput of the codec on one device (CPU or CUDA).

Prints a table per volume: steps/s of fitting (batch 2^13), seconds for a fixed number
of steps, full-grid decode Mvox/s and random-point sample Mpts/s, and the PSNR reached.

    .venv/bin/python benchmarks/speed.py --device cuda --volumes headsq_quarter embryo --steps 2000
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

import neuralvol as nv
from neuralvol.evaluate import evaluate_grid_per_voxel, unit_axis

VOLUMES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "volumes"
DATA = Path(__file__).resolve().parents[1] / "data"


def load(name: str, extra: Path | None = None) -> np.ndarray:
    for folder in ([extra] if extra else []) + [VOLUMES, DATA]:
        if (folder / f"{name}.npy").exists():
            return np.load(folder / f"{name}.npy")
    raise SystemExit(f"no volume {name!r} in {VOLUMES} or {DATA}")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--volumes", nargs="+", default=["headsq_quarter"])
    parser.add_argument("--ratio", type=float, default=100)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--volume-dir", type=Path, default=None, help="look here first for NAME.npy")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"device {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else ""))
    print("| volume | ratio | params | steps | fit s | steps/s | PSNR dB | decode s | decode Mvox/s | per-voxel decode s | sample Mpts/s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.volumes:
        data = load(name, args.volume_dir)
        t0 = time.perf_counter()
        vol = nv.compress(data, ratio=args.ratio, steps=args.steps, device=args.device, seed=0)
        fit_s = time.perf_counter() - t0
        steps = vol.training.steps
        vol.decode(device=args.device, dtype=np.float32)  # warm-up
        sync(args.device)
        t0 = time.perf_counter()
        decoded = vol.decode(device=args.device, dtype=np.float32)
        sync(args.device)
        decode_s = time.perf_counter() - t0
        # The per-voxel gather the separable grid path replaced, timed in the same run.
        t0 = time.perf_counter()
        evaluate_grid_per_voxel(vol.network, *(unit_axis(n, 0, n - 1) for n in vol.dims), device=args.device)
        sync(args.device)
        old_decode_s = time.perf_counter() - t0
        points = np.random.default_rng(0).random((1 << 20, 3)) * np.asarray(vol.bounds[1::2])
        vol.sample(points, device=args.device)
        t0 = time.perf_counter()
        vol.sample(points, device=args.device)
        sample_s = time.perf_counter() - t0
        p = nv.metrics.psnr(data, decoded)
        params = sum(t.numel() for t in vol.network.parameters())
        print(f"| {name} | {args.ratio:g} | {params} | {steps} | {fit_s:.1f} | {steps / fit_s:.0f} | {p:.2f} | "
              f"{decode_s:.2f} | {data.size / decode_s / 1e6:.2f} | {old_decode_s:.2f} | {len(points) / sample_s / 1e6:.2f} |", flush=True)


if __name__ == "__main__":
    main()
