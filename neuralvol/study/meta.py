"""`neuralvol study meta`: random vs intra-domain vs inter-domain meta-learned initialisation.

For each held-out volume (tagged with its domain) and each init (random = the preset's seeded
random weights; intra = the init learned on the volume's own domain; inter = an init learned
on another domain) it measures the whole-volume PSNR after ``steps`` fitting steps and the
seconds to reach a target PSNR (capped at ``max_steps``), and draws PSNR-vs-step curves.
Single-threaded torch, CPU, fixed seed.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ..compress import compress
from ..meta import load_init


def _run(array, init, preset, steps, psnr_target, seed):
    curve = []

    def progress(p):
        curve.append([round(p.elapsed, 3), p.step, round(p.psnr, 3)])
    t = time.perf_counter()
    vol = compress(array, steps=steps, psnr=psnr_target, seed=seed, device="cpu", init=init,
                   preset=None if init is not None else preset, progress=progress)
    return vol.training, time.perf_counter() - t, curve


def run_study(volumes: list[tuple[str, str]], inits: dict[str, str], steps: int = 150,
              targets: dict[str, float] | None = None, max_steps: int = 600, seed: int = 0) -> list[dict]:
    torch.set_num_threads(1)
    from ..volume_io import read_volume
    loaded = {d: load_init(p) for d, p in inits.items()}
    presets = {m.preset for m in loaded.values()}
    if len(presets) != 1:
        raise ValueError(f"inits are for different presets: {presets}")
    preset = presets.pop()
    rows = []
    for domain, path in volumes:
        name = Path(path).stem
        array = read_volume(path).array
        plan = [("random", None)]
        plan += [("intra" if d == domain else "inter", d) for d in loaded if d == domain]
        plan += [("inter", d) for d in loaded if d != domain]
        target = (targets or {}).get(name)
        for kind, d in plan:
            init = loaded[d] if d else None
            tr, secs, curve = _run(array, init, preset, steps, None, seed)
            if target is None and kind == "random":
                target = float(tr.psnr)
            tr2, secs2, _ = _run(array, init, preset, max_steps, target, seed)
            reached = tr2.stopped == "psnr" or (tr2.psnr or 0) >= target
            rows.append({"volume": name, "domain": domain, "init": kind, "init_domain": d or "-",
                         "psnr_after_steps": tr.psnr, "steps": steps, "seconds_for_steps": round(secs, 2),
                         "target_psnr": round(target, 2), "seconds_to_target": round(secs2, 2) if reached else None,
                         "steps_to_target": tr2.steps if reached else None, "curve": curve})
            print(f"{name:24s} {kind:6s} {d or '-':10s} PSNR@{steps} {tr['psnr']:.2f} dB; "
                  f"to {target:.2f} dB: {rows[-1]['seconds_to_target']} s ({rows[-1]['steps_to_target']} steps)",
                  flush=True)
    return rows


def table(rows: list[dict]) -> str:
    steps = rows[0]["steps"] if rows else 0
    out = [f"| held-out volume | domain | init | PSNR after {steps} steps (dB) | target (dB) | "
           f"seconds to target | steps to target |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        init = r["init"] if r["init"] == "random" else f"{r['init']} ({r['init_domain']})"
        s = "not reached" if r["seconds_to_target"] is None else f"{r['seconds_to_target']:.1f}"
        n = "-" if r["steps_to_target"] is None else str(r["steps_to_target"])
        out.append(f"| {r['volume']} | {r['domain']} | {init} | {r['psnr_after_steps']:.2f} | "
                   f"{r['target_psnr']:.2f} | {s} | {n} |")
    return "\n".join(out)


def plot(rows: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(dict.fromkeys(r["volume"] for r in rows))
    fig, axes = plt.subplots(1, len(names), figsize=(3.6 * len(names), 3.0), squeeze=False)
    colours = {"random": "tab:gray", "intra": "tab:blue", "inter": "tab:orange"}
    for ax, name in zip(axes[0], names):
        for r in rows:
            if r["volume"] != name:
                continue
            c = np.array(r["curve"]) if r["curve"] else np.zeros((0, 3))
            label = r["init"] if r["init"] == "random" else f"{r['init']} ({r['init_domain']})"
            ax.plot(c[:, 1], c[:, 2], color=colours[r["init"]], label=label, lw=1.3)
        ax.set_title(f"{name} ({rows[[r['volume'] for r in rows].index(name)]['domain']})", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("PSNR estimate (dB)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(args) -> int:
    from ..errors import InputError
    vols = []
    for spec in args.volumes:
        if "=" not in spec:
            raise InputError(f"--volumes takes DOMAIN=PATH, got {spec!r}")
        d, p = spec.split("=", 1)
        vols.append((d, p))
    inits = {Path(p).stem: p for p in args.inits}
    targets = {}
    for spec in args.target:
        k, v = spec.split("=", 1)
        targets[k] = float(v)
    rows = run_study(vols, inits, steps=args.steps, targets=targets, max_steps=args.max_steps, seed=args.seed)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    Path(str(out) + ".json").write_text(json.dumps(rows, indent=1))
    Path(str(out) + ".md").write_text(table(rows) + "\n")
    plot(rows, str(out) + ".png")
    print(table(rows))
    return 0
