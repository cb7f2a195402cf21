"""Same bytes, other network shapes: does the planner's network win? One volume, one ratio.

Each variant is a hash-grid network of about the planner's parameter count with one thing
changed (or the parameter count itself, so the coded bits per parameter change), fitted for
the same time at the same byte budget (rate control sets the quantisation steps):

    .venv/bin/python benchmarks/network_shapes.py neghip 400 --time-budget 20 --threads 1
    .venv/bin/python benchmarks/network_shapes.py carotid 100 --only planner "width/2"
    .venv/bin/python benchmarks/network_shapes.py walnut_ct 100 --time-budget 60 --threads 1 --only planner "L=16" "L=6"

The network is the one ``compress`` plans under a time budget (``--encoding``, default
``neuralvol.compress.AUTO_WITH_TIME_BUDGET``, the quadratic grid); "L=N" variants spend the
same parameters on N levels (the level sweep behind ``architecture.BSPLINE_MAX_LEVELS``).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

import neuralvol as nv
from neuralvol.architecture import choose_architecture, fit_table_size
from neuralvol.bitstream.budget import header_length
from neuralvol.compress import AUTO_WITH_TIME_BUDGET
from neuralvol.encodings import HASHGRID_CONFIGS, hashgrid_config
from neuralvol.metrics import psnr
from neuralvol.model import ModelConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rd  # noqa: E402  (the volume folder)


def variants(data: np.ndarray, ratio: float, encoding: str) -> dict[str, ModelConfig | None]:
    base = nv.compress(data, ratio=ratio, steps=1, seed=0, encoding=encoding).network.config
    e, n = base.encoding, base.n_params
    dims = data.shape[::-1]

    def grid(levels=e.n_levels, features=e.n_features, finest=e.finest_resolution,
             width=base.mlp_width, layers=base.mlp_hidden_layers):
        return fit_table_size(ModelConfig(hashgrid_config(e.interpolation, levels, features, 8, e.base_resolution,
                                                          finest), width, layers), n)

    levels = {f"L={n_levels}": grid(levels=n_levels) for n_levels in (6, 8, 12, 16) if n_levels != e.n_levels}
    return {"planner": base,
            "x0.7 params": choose_architecture(dims, int(n * 0.7), e.interpolation),
            "x1.5 params": choose_architecture(dims, int(n * 1.5), e.interpolation),
            **levels,
            "width/2": grid(width=max(1, base.mlp_width // 2)),
            "1 hidden": grid(layers=1),
            "L/2 F*2": grid(levels=max(2, e.n_levels // 2), features=e.n_features * 2),
            "L/2": grid(levels=max(2, e.n_levels // 2)),
            "finest x1.5": grid(finest=int(e.finest_resolution * 1.5)),
            "finest /1.5": grid(finest=max(e.base_resolution + 1, int(e.finest_resolution / 1.5)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("volume", help=f"name of a .npy file in {rd.VOLUMES}")
    parser.add_argument("ratio", type=float)
    parser.add_argument("--time-budget", type=float, default=20)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--only", nargs="+", default=None, help="variant names to run")
    parser.add_argument("--encoding", default=AUTO_WITH_TIME_BUDGET,
                        choices=[c.kind for c in HASHGRID_CONFIGS.values()])
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    data = np.load(rd.VOLUMES / f"{args.volume}.npy")
    print(f"{args.volume} at {args.ratio:g}:1, {args.encoding}, {args.time_budget:g} s per fit, "
          f"{torch.get_num_threads()} torch threads\n")
    print("| variant | params | grid L x F x T, resolutions | MLP | PSNR | bits/param | bytes | s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, config in variants(data, args.ratio, args.encoding).items():
        if config is None or (args.only and name not in args.only):
            continue
        start = time.perf_counter()
        vol = nv.compress(data, ratio=args.ratio, time_budget=args.time_budget, seed=0, config=config)
        e = config.encoding
        bits = 8 * (vol.nbytes - header_length(vol)) / config.n_params
        print(f"| {name} | {config.n_params} | {e.n_levels} x {e.n_features} x {e.table_size}, "
              f"{e.base_resolution}-{e.finest_resolution} | {config.mlp_width} x {config.mlp_hidden_layers} | "
              f"{psnr(data, vol.decode()):.2f} | {bits:.2f} | {vol.nbytes} | {time.perf_counter() - start:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
