"""Encodings study: every input encoding at the same file size and the same time budget.

For each volume and encoding: ``compress(encoding=...)`` with the byte budget of ``ratio``
and ``time_budget`` seconds. Reported: the whole-volume PSNR at the end (stored float16
weights), the running PSNR estimate (EMA of batch MSE, as the progress callback sees it)
after 10 % and 50 % of the time budget, steps and seconds per step. A PSNR-vs-time plot
(running estimates) is written per volume.
"""
from __future__ import annotations

from ..encodings import ENCODING_KINDS
from ._common import load, markdown_table, out_dir, pyplot


def _at(curve, t):
    """Running PSNR estimate at time ``t`` (the last report at or before ``t``)."""
    best = None
    for elapsed, value in curve:
        if elapsed <= t:
            best = value
    return best


def run_encodings_study(volumes, ratio: float = 100.0, time_budget: float = 20.0,
                        encodings=ENCODING_KINDS, output_dir="study_out", seed: int = 0,
                        echo=print) -> dict:
    from .. import compress
    out = out_dir(output_dir)
    results = {}
    rows = []
    for path in volumes:
        name, vf = load(path)
        curves = {}
        for enc in encodings:
            curve = []

            def progress(p, curve=curve):
                curve.append((p.elapsed, p.psnr))

            vol = compress(vf.array, spacing=vf.spacing, origin=vf.origin, ratio=ratio, time_budget=time_budget,
                           seed=seed, device="cpu", progress=progress, encoding=enc)
            t = vol.training
            curves[enc] = curve
            p10, p50 = _at(curve, 0.1 * time_budget), _at(curve, 0.5 * time_budget)
            r = {"psnr": t.psnr, "psnr_10": p10, "psnr_50": p50, "steps": t.steps,
                 "s_per_step": t.seconds / max(1, t.steps), "bytes": vol.nbytes,
                 "params": vol.config.n_params, "encoding_params": vol.config.encoding.n_params}
            results[(name, enc)] = r
            fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
            rows.append([name, enc, r["bytes"], r["params"], fmt(p10), fmt(p50), fmt(r["psnr"]), r["steps"],
                         f"{1000 * r['s_per_step']:.1f}"])
            if echo:
                echo(f"  {name} {enc}: {fmt(r['psnr'])} dB, {r['steps']} steps")
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(5.5, 3.6), dpi=90)
        for enc, curve in curves.items():
            if curve:
                ts, ps = zip(*curve)
                ax.plot(ts, ps, label=enc)
        ax.set_xlabel("seconds (CPU, 1 thread)")
        ax.set_ylabel("PSNR (dB, running estimate)")
        ax.set_title(f"{name}, ratio {ratio:g}:1")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / f"encodings_{name}.png")
        plt.close(fig)
    table = markdown_table(["volume", "encoding", "file bytes", "params", "PSNR @10% (est.)", "PSNR @50% (est.)",
                            "PSNR end", "steps", "ms/step"], rows)
    return {"results": results, "table": table}
