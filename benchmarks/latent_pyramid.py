"""A candidate representation for #12, measured against SPERR: a dense latent pyramid with a learned entropy model.

Not part of the codec: this script fits, rounds and sizes the representation, and writes no
file. It answers whether the representation issue #12 asks about ("dense multi-resolution
latent grids where spatial context helps more than hashing", as in Cool-chic) beats SPERR per
byte where the hash grid does not, and at what compute.

The representation (per volume, values normalised to [0, 1]):
- K dense latent grids, one value per node, level k at ceil(n / 2^k) nodes per axis, node-aligned
  with the volume's grid; each is read at any point by trilinear interpolation, so region and
  any-resolution decoding stay local, as with the hash grid;
- a synthesis MLP (K -> HID -> HID -> 1, ReLU) plus a linear path maps the K interpolated latents
  to the value, and a 3x3x3 convolution of that volume is added to it (``--no-refine``: none);
- every latent is rounded to an integer and coded under a Laplace distribution whose mean and
  scale a small MLP predicts from its context: the next coarser level interpolated at the node,
  and, for the nodes of odd parity (x + y + z), their six face neighbours (even parity, decoded
  first): a checkerboard, so each half of a level decodes in parallel.

Fitting (PyTorch, whole-volume steps): loss = MSE + lambda * latent bits / voxels, latents plus
uniform noise for the first 80 % of the time and rounded with a straight-through gradient after
it, Adam with a cosine learning rate. Every 20 steps lambda is steered multiplicatively: by
default on the loss's own rate towards ``--noisy-target`` times the budget while the latents are
noisy (their rounded rate is ~20 % lower), then towards the budget; ``--steer rounded`` steers on
the rounded latents' rate to the budget throughout.

Sizes: the latents' ideal code length under the model (an arithmetic coder with the same model
lands within a few bytes of it), plus one byte per network parameter (each tensor quantised to
8 bits over its own range, the PSNR measured with those weights; the float networks' PSNR is
printed too), plus a header estimate of 16 + 2 bytes per tensor. SPERR is run on the same volume
at the pyramid's own byte count and at the ratio's budget, in ``.venv-baselines`` as
``benchmarks/rd.py`` runs it (``benchmarks/setup_baselines.sh`` makes it); ``--with-neuralvol``
also runs ``neuralvol.compress`` at the ratio for the same seconds.

Measured (carotid 100:1, one thread; docs/RATE_DISTORTION.md, stop 37): with the defaults, 600 s
(3 768 whole-volume steps) gave 36.91 dB in 5 901 bytes, where SPERR gives 36.28 in those bytes
and 36.80 in the whole 6 703; at 60 s (~400 steps) it is 1-3 dB below the hash grid. lambda's
steering (FIRST_LAMBDA, STEER_GAIN) was set on carotid: on headsq_quarter it used 46 % of the
budget and on neghip it collapsed to 40 non-zero latents, so rate control is the first thing to
replace.

    .venv/bin/python benchmarks/latent_pyramid.py --volumes carotid --ratios 100 --seconds 60 600
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from rd import VOLUMES, run_neuralvol, run_wasm_codecs

from neuralvol.metrics import psnr
from neuralvol.volume import cast_to_dtype

NOISE_SHARE = 0.8          # then rounding with a straight-through gradient
STEER_EVERY = 20           # steps between lambda updates
STEER_GAIN = 0.15
LATENT_LR, NETWORK_LR = 1e-2, 5e-3
FIRST_LAMBDA = 3e-4        # dMSE/dbits per voxel near 36 dB: 2 ln 2 * MSE
MIN_SCALE = 1e-3
MIN_PROBABILITY = 2.0 ** -20
FACES = ((-1, 0, 0), (1, 0, 0), (0, -1, 0), (0, 1, 0), (0, 0, -1), (0, 0, 1))


class LatentPyramid(torch.nn.Module):
    """The latents, the synthesis (MLP, linear path, optional convolution) and the entropy model."""

    def __init__(self, shape: tuple[int, int, int], levels: int, hidden: int, seed: int, refine: bool = True):
        super().__init__()
        torch.manual_seed(seed)
        self.shape = shape
        self.level_shapes = [tuple(math.ceil(n / 2 ** k) for n in shape) for k in range(levels)]
        self.latents = torch.nn.ParameterList(torch.nn.Parameter(torch.zeros(s)) for s in self.level_shapes)
        self.synthesis = torch.nn.Sequential(torch.nn.Linear(levels, hidden), torch.nn.ReLU(),
                                             torch.nn.Linear(hidden, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
        self.prior = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
        self.level_scale = torch.nn.Parameter(torch.zeros(levels))
        # a linear path from the latents to the value, beside the MLP (see start_from_pyramid)
        self.skip = torch.nn.Parameter(torch.zeros(levels))
        # a 3x3x3 convolution of the synthesised volume, added to it, fitted with everything else
        # (zero at first); like the codec's post filter, but trained jointly with the latents
        self.refine = None
        if refine:
            self.refine = torch.nn.Conv3d(1, 1, 3, padding=1, padding_mode="replicate")
            torch.nn.init.zeros_(self.refine.weight)
            torch.nn.init.zeros_(self.refine.bias)
        self.odd = [self._parity(s) for s in self.level_shapes]

    def start_from_pyramid(self, x: torch.Tensor, step: float) -> None:
        """Latents from a Laplacian pyramid of ``x`` in units of ``step``, read out by the linear path.

        Coarsest first, each level is the residual so far sampled at its nodes, so the sum of all
        levels interpolated to the full grid is ``x`` exactly; the MLP's output layer starts at
        zero. Fitting then starts where a pyramid codec would, instead of from zero latents."""
        with torch.no_grad():
            residual = x.clone()
            for k in reversed(range(len(self.latents))):
                s = self.level_shapes[k]
                level = residual if k == 0 else F.interpolate(residual[None, None], size=s, mode="trilinear",
                                                              align_corners=True)[0, 0]
                self.latents[k].copy_(level / step)
                residual = residual - F.interpolate(level[None, None], size=self.shape, mode="trilinear",
                                                    align_corners=True)[0, 0]
            self.skip.fill_(step)
            self.synthesis[-1].weight.zero_()
            self.synthesis[-1].bias.zero_()

    @staticmethod
    def _parity(s):
        z, y, x = (torch.arange(n) for n in s)
        return ((z[:, None, None] + y[None, :, None] + x[None, None, :]) % 2 == 1)

    def network_tensors(self) -> list[torch.nn.Parameter]:
        refine = [] if self.refine is None else list(self.refine.parameters())
        return [*self.synthesis.parameters(), *self.prior.parameters(), self.level_scale, self.skip, *refine]

    def coded(self, mode: str) -> list[torch.Tensor]:
        if mode == "noise":
            return [v + torch.rand_like(v) - 0.5 for v in self.latents]
        if mode == "straight_through":
            return [v + (torch.round(v) - v).detach() for v in self.latents]
        return [torch.round(v) for v in self.latents]

    def bits(self, coded: list[torch.Tensor]) -> torch.Tensor:
        """The latents' code length under the checkerboard Laplace model."""
        total = 0.0
        for k, q in enumerate(coded):
            s = self.level_shapes[k]
            coarse = (torch.zeros(s) if k + 1 == len(coded) else
                      F.interpolate(coded[k + 1][None, None], size=s, mode="trilinear", align_corners=True)[0, 0])
            padded = F.pad(q[None, None], (1, 1, 1, 1, 1, 1))[0, 0]
            faces = [padded[1 + dz:1 + dz + s[0], 1 + dy:1 + dy + s[1], 1 + dx:1 + dx + s[2]] for dz, dy, dx in FACES]
            odd = self.odd[k]
            context = torch.stack([coarse, *(f * odd for f in faces), odd.float()], -1)
            mean, log_scale = self.prior(context).unbind(-1)
            scale = torch.exp(torch.clamp(log_scale + self.level_scale[k], -6, 6)) + MIN_SCALE

            def cdf(t):
                d = t - mean
                return 0.5 - 0.5 * torch.sign(d) * torch.expm1(-d.abs() / scale)
            total = total - torch.log2((cdf(q + 0.5) - cdf(q - 0.5)).clamp_min(MIN_PROBABILITY)).sum()
        return total

    def decode(self, coded: list[torch.Tensor]) -> torch.Tensor:
        features = torch.stack([F.interpolate(q[None, None], size=self.shape, mode="trilinear", align_corners=True)[0, 0]
                                for q in coded]).reshape(len(coded), -1).t()
        out = (self.synthesis(features).squeeze(1) + features @ self.skip).reshape(self.shape)
        return out if self.refine is None else out + self.refine(out[None, None])[0, 0]


def quantise_networks(model: LatentPyramid) -> None:
    """Each network tensor rounded to 8 bits over its own range (what the file would hold)."""
    with torch.no_grad():
        for t in model.network_tensors():
            peak = float(t.abs().max())
            if peak > 0:
                step = peak / 127
                t.copy_(torch.round(t / step) * step)


def fit(target: np.ndarray, budget: int, seconds: float, levels: int, hidden: int, seed: int,
        pyramid_step: float | None = None, noisy_target: float | None = 1.25, refine: bool = True) -> dict:
    """Fit for ``seconds``, lambda steered on the loss's rate to ``noisy_target`` times ``budget``
    while the latents are noisy, then to the budget; with ``noisy_target`` None, on the rounded
    latents' rate to the budget throughout."""
    lo, hi = float(target.min()), float(target.max())
    x = torch.tensor((target.astype(np.float64) - lo) / ((hi - lo) or 1.0), dtype=torch.float32)
    model = LatentPyramid(tuple(x.shape), levels, hidden, seed, refine)
    if pyramid_step:
        model.start_from_pyramid(x, pyramid_step)
    n_network = sum(t.numel() for t in model.network_tensors())
    fixed_bytes = n_network + 16 + 2 * len(model.network_tensors())
    budget_bits = 8.0 * (budget - fixed_bytes)
    if budget_bits <= 0:
        return {"error": f"{budget} bytes do not hold the networks' {fixed_bytes}"}
    optimiser = torch.optim.Adam([{"params": list(model.latents), "lr": LATENT_LR},
                                  {"params": model.network_tensors(), "lr": NETWORK_LR}])
    lam, step, start = FIRST_LAMBDA, 0, time.perf_counter()
    while (fraction := (time.perf_counter() - start) / seconds) < 1.0:
        for group, lr in zip(optimiser.param_groups, (LATENT_LR, NETWORK_LR)):
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * fraction))
        coded = model.coded("noise" if fraction < NOISE_SHARE else "straight_through")
        bits = model.bits(coded)
        loss = F.mse_loss(model.decode(coded), x) + lam * bits / x.numel()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        step += 1
        if step % STEER_EVERY == 0:
            if noisy_target:   # on the loss's own rate: noisy, then rounded (to the budget itself)
                goal = noisy_target if fraction < NOISE_SHARE else 1.0
                lam *= math.exp(STEER_GAIN * (float(bits.detach()) / (goal * budget_bits) - 1.0))
            else:
                with torch.no_grad():
                    lam *= math.exp(STEER_GAIN * (float(model.bits(model.coded("round"))) / budget_bits - 1.0))
    fit_s = time.perf_counter() - start

    def measured():
        with torch.no_grad():
            coded = model.coded("round")
            decoded = model.decode(coded).double().numpy() * (hi - lo) + lo
            return psnr(target, cast_to_dtype(decoded, target.dtype)), float(model.bits(coded)), coded
    float_psnr, float_bits, _ = measured()
    quantise_networks(model)
    final_psnr, bits, coded = measured()
    nonzero = sum(int((q != 0).sum()) for q in coded)
    return {"psnr": final_psnr, "float_networks_psnr": float_psnr, "float_networks_latent_bytes": math.ceil(float_bits / 8),
            "bytes": math.ceil(bits / 8) + fixed_bytes, "latent_bytes": math.ceil(bits / 8), "network_bytes": fixed_bytes,
            "steps": step, "seconds": fit_s, "nonzero": nonzero, "latents": sum(q.numel() for q in coded)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", nargs="+", default=["carotid"])
    parser.add_argument("--ratios", nargs="+", type=float, default=[100])
    parser.add_argument("--seconds", nargs="+", type=float, default=[60.0], help="fitting seconds (each is a run)")
    parser.add_argument("--levels", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steer", choices=["noisy", "rounded"], default="noisy",
                        help="lambda steered on the loss's own (noisy) rate, or on the rounded latents' rate")
    parser.add_argument("--noisy-target", type=float, default=1.25,
                        help="--steer noisy: the noisy rate's target, times the budget (default 1.25)")
    parser.add_argument("--pyramid-step", type=float, help="start from a Laplacian pyramid of the volume, latents in "
                        "units of this step (normalised values); default: zero latents")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--refine", action=argparse.BooleanOptionalAction, default=True,
                        help="a 3x3x3 convolution on the output, fitted jointly (default: on)")
    parser.add_argument("--with-neuralvol", action="store_true", help="also neuralvol.compress at the ratio, same seconds")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    manifest = {e["name"]: e for e in json.loads((VOLUMES / "manifest.json").read_text())}
    header = ("volume", "ratio", "s", "steps", "pyramid bytes", "pyramid PSNR", "float networks: PSNR, latent bytes",
              "SPERR at those bytes",
              "budget", "SPERR at budget", "neuralvol at budget", "latents nonzero")
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header), flush=True)
    rows = []
    for name in args.volumes:
        original = np.load(VOLUMES / manifest[name]["file"])
        for ratio in args.ratios:
            budget = int(original.nbytes // ratio)
            for seconds in args.seconds:
                row = {"volume": name, "ratio": ratio, "budget": budget, "seconds": seconds,
                       "pyramid": fit(original, budget, seconds, args.levels, args.hidden, args.seed,
                                             args.pyramid_step,
                                             args.noisy_target if args.steer == "noisy" else None, args.refine)}
                sizes = sorted({budget, *([row["pyramid"]["bytes"]] if "bytes" in row["pyramid"] else [])})
                sperr = run_wasm_codecs(original, sizes, ["sperr"])["sperr"]
                row["sperr"] = {str(b): sperr[b]["sperr_psnr"] for b in sizes}
                if args.with_neuralvol:
                    row["neuralvol"] = run_neuralvol(original, ratio, seconds, manifest[name].get("spacing_xyz"), args.seed)
                rows.append(row)
                p = row["pyramid"]
                cells = (name, f"{ratio:g}", f"{p.get('seconds', 0):.0f}", p.get("steps", "—"), p.get("bytes", "—"),
                         f"{p['psnr']:.2f}" if "psnr" in p else p.get("error"),
                         f"{p['float_networks_psnr']:.2f}, {p['float_networks_latent_bytes']}" if "psnr" in p else "—",
                         f"{row['sperr'][str(p['bytes'])]:.2f}" if "bytes" in p else "—", budget,
                         f"{row['sperr'][str(budget)]:.2f}",
                         f"{row['neuralvol']['psnr']:.2f}" if "psnr" in row.get("neuralvol", {}) else "—",
                         f"{p.get('nonzero', 0)}/{p.get('latents', 0)}")
                print("| " + " | ".join(map(str, cells)) + " |", flush=True)
                if args.json:
                    args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
