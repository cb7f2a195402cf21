"""The README demo: compress the bundled CT head 100:1, decode it, report, and draw slices.

Run with ``.venv/bin/python examples/demo.py``; writes ``demo_output/headsq.nvc`` and
``demo_output/headsq.png`` (original, decoded and error slices through the centre).
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

import neuralvol as nv
from neuralvol.metrics import max_abs_error, psnr

REPO = Path(__file__).resolve().parents[1]


def main(time_budget: float = 30.0) -> int:
    original = np.load(REPO / "data" / "headsq_quarter.npy")
    out = REPO / "demo_output"
    out.mkdir(exist_ok=True)
    print(f"compressing data/headsq_quarter.npy ({original.shape[2]}x{original.shape[1]}x{original.shape[0]} "
          f"{original.dtype}, {original.nbytes} bytes) at 100:1 for {time_budget:.0f} s ...")
    start = time.perf_counter()
    vol = nv.compress(original, spacing=(3.2, 3.2, 1.5), ratio=100, time_budget=time_budget, seed=0)
    fit_s = time.perf_counter() - start
    vol.save(out / "headsq.nvc")
    start = time.perf_counter()
    decoded = nv.open(out / "headsq.nvc").decode()
    decode_s = time.perf_counter() - start
    print(f"file: {out / 'headsq.nvc'}  {vol.nbytes} bytes  ratio {vol.ratio:.1f}:1")
    print(f"PSNR {psnr(original, decoded):.2f} dB  max error {max_abs_error(original, decoded):.0f}  "
          f"fit {fit_s:.1f} s  decode {decode_s:.2f} s")
    _save_figure(original, decoded, out / "headsq.png", vol)
    print(f"picture: {out / 'headsq.png'}")
    return 0


def _save_figure(original, decoded, path, vol) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    error = decoded.astype(np.float64) - original
    lo, hi = float(original.min()), float(original.max())
    bound = float(np.percentile(np.abs(error), 99.5)) or 1.0
    nz, ny, nx = original.shape
    cuts = [("axial (z = %d)" % (nz // 2), lambda a: a[nz // 2]),
            ("coronal (y = %d)" % (ny // 2), lambda a: a[:, ny // 2]),
            ("sagittal (x = %d)" % (nx // 2), lambda a: a[:, :, nx // 2])]
    fig, axes = plt.subplots(3, 3, figsize=(10, 10), constrained_layout=True)
    sx, sy, sz = vol.spacing
    aspects = [sy / sx, sz / sx, sz / sy]
    for row, ((name, cut), aspect) in enumerate(zip(cuts, aspects)):
        for col, (title, data, kw) in enumerate([
                ("original", original, dict(cmap="gray", vmin=lo, vmax=hi)),
                ("decoded", decoded, dict(cmap="gray", vmin=lo, vmax=hi)),
                ("error (decoded - original)", error, dict(cmap="RdBu_r", vmin=-bound, vmax=bound))]):
            ax = axes[row, col]
            im = ax.imshow(cut(data), origin="lower", aspect=aspect, **kw)
            ax.set_title(f"{title}\n{name}", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if col != 1:
                fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle(f"headsq_quarter, {vol.ratio:.0f}:1 ({vol.nbytes} bytes), PSNR {vol.training.psnr:.2f} dB")
    fig.savefig(path, dpi=80)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main(float(sys.argv[1]) if len(sys.argv) > 1 else 30.0))
