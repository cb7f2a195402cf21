"""One network with C outputs against C networks, at the same parameter count.

The vector field is the gradient (numpy central differences) of the real viscous-fingers
scalar volume (``viscous_fingers_t99``, 64^3): the shared data holds no measured vector
field, so this one is derived honestly from a real one. Both designs train with the same
Adam settings, batch, learning-rate schedule and step count, float32 parameters, values
normalised per component to [0, 1]. Prints PSNR per component, of the magnitude, and the
vector magnitude error (max and RMS of | |v| - |v'| |).

    python benchmarks/vector_design.py --quick      # 300 steps, one budget
    python benchmarks/vector_design.py              # 2000 steps, three budgets
"""
from __future__ import annotations

import argparse
import math
import os
import time

import numpy as np
import torch

from neuralvol.architecture import choose_architecture
from neuralvol.evaluate import unit_axis
from neuralvol.fitting import BATCH_SIZE, FINAL_LR_FACTOR, LEARNING_RATE
from neuralvol.metrics import psnr
from neuralvol.model import ModelConfig, NeuralField

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "..", "shared", "data", "volumes", "viscous_fingers_t99.npy")


class MultiOutputField(NeuralField):
    """The project's network with C linear outputs instead of one (benchmark only)."""

    def __init__(self, config: ModelConfig, n_outputs: int, seed: int = 0):
        super().__init__(config, seed)
        generator = torch.Generator().manual_seed(int(seed) + 7)
        fan_in = self.weights[-1].shape[1]
        bound = (6.0 / fan_in) ** 0.5
        w = torch.empty(n_outputs, fan_in).uniform_(-bound, bound, generator=generator)
        self.weights[-1] = torch.nn.Parameter(w)
        self.output_bias = torch.nn.Parameter(torch.zeros(n_outputs))

    def forward(self, x):
        h = self.encoding.encode_feature_major(x)
        for i, w in enumerate(self.weights):
            if i == 0:
                w = w[:, self._feature_major]
            h = w @ h
            if i < len(self.weights) - 1:
                h = torch.relu(h)
        return h.t() + self.output_bias          # [K, C]


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


def train(net, target, steps, seed):
    """target: [N, C] normalised values on the grid's flattened voxels."""
    torch.manual_seed(seed)
    nz, ny, nx = target.shape[:3]
    flat_t = torch.as_tensor(target.reshape(nz * ny * nx, -1))
    axes = [torch.as_tensor(unit_axis(n, 0, n - 1), dtype=torch.float32) for n in (nx, ny, nz)]
    gen = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE, betas=(0.9, 0.99), eps=1e-15)
    for step in range(steps):
        for g in opt.param_groups:
            g["lr"] = LEARNING_RATE * FINAL_LR_FACTOR ** (step / steps)
        flat = torch.randint(0, flat_t.shape[0], (BATCH_SIZE,), generator=gen)
        coords = torch.stack([axes[0][flat % nx], axes[1][(flat // nx) % ny], axes[2][flat // (nx * ny)]], 1)
        out = net(coords)
        if out.ndim == 1:
            out = out[:, None]
        loss = torch.mean((out - flat_t[flat]) ** 2)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return net


@torch.no_grad()
def evaluate(net, shape):
    nz, ny, nx = shape
    axes = [torch.as_tensor(unit_axis(n, 0, n - 1), dtype=torch.float32) for n in (nx, ny, nz)]
    z, y, x = torch.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    coords = torch.stack([x.reshape(-1), y.reshape(-1), z.reshape(-1)], 1)
    out = torch.cat([net(c) if net(c[:1]).ndim > 1 else net(c)[:, None] for c in coords.split(1 << 16)])
    return out.reshape(nz, ny, nx, -1).numpy().astype(np.float64)


def report(name, field, decoded, seconds):
    per = [psnr(field[..., c], decoded[..., c]) for c in range(field.shape[-1])]
    mag, mag_d = np.linalg.norm(field, axis=-1), np.linalg.norm(decoded, axis=-1)
    err = np.abs(mag - mag_d)
    print(f"{name:<16} " + " ".join(f"{p:6.2f}" for p in per) +
          f"  |v| {psnr(mag, mag_d):6.2f}  max||v|-|v'|| {err.max():.4g}  rms {math.sqrt(np.mean(err ** 2)):.4g}"
          f"  {seconds:6.1f} s")
    return per, psnr(mag, mag_d)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    scalar = np.load(DATA).astype(np.float64)
    gz, gy, gx = np.gradient(scalar)
    field = np.stack([gx, gy, gz], axis=-1)                     # [z, y, x, 3]: x, y, z components
    lo, hi = field.min(axis=(0, 1, 2)), field.max(axis=(0, 1, 2))
    norm = ((field - lo) / (hi - lo)).astype(np.float32)
    dims = scalar.shape[::-1]
    C = field.shape[-1]
    steps = 300 if args.quick else 2000
    budgets = [20_000] if args.quick else [8_000, 20_000, 60_000]
    print(f"gradient of viscous_fingers_t99 {dims}, {steps} steps, float32 params, 1 thread")
    print(f"{'design':<16} {'PSNR x':>6} {'y':>6} {'z':>6}")
    for P in budgets:
        sep_cfg = choose_architecture(dims, P // C)
        # one network: the same encoding ladder sized to P minus the extra output rows
        shared_cfg = choose_architecture(dims, P - (C - 1) * (sep_cfg.mlp_width + 1))
        nets = [NeuralField(sep_cfg, seed=c) for c in range(C)]
        shared = MultiOutputField(shared_cfg, C, seed=0)
        print(f"-- budget {P} params: separate {C} x {n_params(nets[0])} = {sum(map(n_params, nets))}, "
              f"shared {n_params(shared)}")
        t0 = time.perf_counter()
        dec = np.concatenate([evaluate(train(nets[c], norm[..., c:c + 1], steps, c), norm.shape[:3])
                              for c in range(C)], axis=-1)
        report(f"{C} networks", field, lo + (hi - lo) * dec, time.perf_counter() - t0)
        t0 = time.perf_counter()
        dec = evaluate(train(shared, norm, steps, 0), norm.shape[:3])
        report(f"1 net, {C} outputs", field, lo + (hi - lo) * dec, time.perf_counter() - t0)


if __name__ == "__main__":
    main()
