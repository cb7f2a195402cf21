"""Gradient-loss study: PSNR and gradient error for a few ``grad_weight`` values.

Gradient error is :func:`neuralvol.metrics.gradient_rmse` (RMSE of one-voxel central
differences, in units of the value range per voxel). The picture shows, for the middle z
slice, the original and each decoding shaded by its gradient (Lambert, light from the
upper left): the shading exposes the ripples and blockiness of the fit.
"""
from __future__ import annotations

import numpy as np

from ..metrics import gradient_rmse, psnr
from ._common import load, markdown_table, out_dir, pyplot


def _shade(volume: np.ndarray, z: int, relief: float = 20.0) -> np.ndarray:
    """Relief shading of slice ``z``: the slice as a height field (normalised values times
    ``relief``), lit by a Lambert light from the upper left."""
    v = volume.astype(np.float64)
    span = float(v.max() - v.min()) or 1.0
    gy, gx = np.gradient(v[z] / span)
    n = np.stack([-relief * gx, -relief * gy, np.ones_like(gx)])
    n /= np.linalg.norm(n, axis=0)
    light = np.array([-0.5, 0.5, 0.7071])
    return np.clip(np.einsum("cyx,c->yx", n, light), 0, 1)


def run_gradloss_study(volumes, weights=(0.0, 1.0, 10.0), ratio: float = 100.0, time_budget: float = 20.0,
                       encoding: str = "hashgrid", output_dir="study_out", seed: int = 0, echo=print) -> dict:
    from .. import compress
    out = out_dir(output_dir)
    rows, results = [], {}
    for path in volumes:
        name, vf = load(path)
        data = vf.array
        decoded = {}
        for w in weights:
            vol = compress(data, spacing=vf.spacing, origin=vf.origin, ratio=ratio, time_budget=time_budget,
                           seed=seed, device="cpu", encoding=encoding, grad_weight=w)
            dec = vol.decode()
            decoded[w] = dec
            r = {"psnr": psnr(data, dec), "grad_rmse": gradient_rmse(data, dec), "steps": vol.training.steps}
            results[(name, w)] = r
            rows.append([name, f"{w:g}", f"{r['psnr']:.2f}", f"{r['grad_rmse']:.5f}", r["steps"]])
            if echo:
                echo(f"  {name} w={w:g}: {r['psnr']:.2f} dB, gradient RMSE {r['grad_rmse']:.5f}")
        plt = pyplot()
        z = data.shape[0] // 2
        panels = [("original", data)] + [(f"w={w:g}: {results[(name, w)]['psnr']:.1f} dB", decoded[w])
                                         for w in weights]
        fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.9), dpi=90)
        for ax, (title, vol) in zip(np.atleast_1d(axes), panels):
            ax.imshow(_shade(vol, z), cmap="gray", origin="lower", vmin=0, vmax=1)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
        fig.suptitle(f"{name}: shaded slice z={z} (ratio {ratio:g}:1, {encoding})", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / f"gradloss_{name}.png")
        plt.close(fig)
    table = markdown_table(["volume", "grad weight", "PSNR (dB)", "gradient RMSE", "steps"], rows)
    return {"results": results, "table": table}
