"""A one-page picture of how well an `.nvc` file reproduces its original.

``make_report(nvc, original, "report.png")`` (or ``neuralvol report IN.nvc --original IN.npy
-o report.png``) draws, for the centre slice along each axis, the original, the decoded
volume and the absolute error; an error histogram; the fitting curve kept in the file
(PSNR estimate against seconds); and the numbers: ratio, bits per voxel, PSNR, RMSE, max
error, SSIM. Without an original only the decoded slices, the curve and the file's own
numbers are drawn. matplotlib is imported here only, without pyplot (no display or backend needed).
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .bitstream.records import TrainingSummary
from .errors import InputError
from .metrics import max_abs_error, psnr, rmse

AXES = ("x", "y", "z")


def ssim(original: np.ndarray, decoded: np.ndarray, window: int = 7) -> float:
    """Mean structural similarity over 3D ``window``^3 boxes (2D for a flat volume).

    The usual constants K1 = 0.01, K2 = 0.03 against the original's value range; boxes
    (uniform weights) rather than Gaussians, so values are close to, not identical with,
    scikit-image's Gaussian-weighted SSIM.
    """
    x = np.asarray(original, dtype=np.float64)
    y = np.asarray(decoded, dtype=np.float64)
    if x.shape != y.shape:
        raise InputError(f"shapes differ: original {x.shape}, decoded {y.shape}")
    value_range = float(x.max() - x.min()) if x.size else 0.0
    if value_range == 0.0:
        return 1.0 if np.array_equal(x, y) else 0.0
    c1, c2 = (0.01 * value_range) ** 2, (0.03 * value_range) ** 2
    axes = [a for a in range(x.ndim) if x.shape[a] >= window]
    if not axes:
        axes, window = list(range(x.ndim)), 1

    def box(a: np.ndarray) -> np.ndarray:   # mean over every full window (valid region), by cumulative sums
        for ax in axes:
            c = np.cumsum(a, axis=ax)
            c = np.concatenate([np.zeros_like(np.take(c, [0], axis=ax)), c], axis=ax)
            n = a.shape[ax]
            a = (np.take(c, range(window, n + 1), axis=ax) - np.take(c, range(0, n - window + 1), axis=ax)) / window
        return a

    mx, my = box(x), box(y)
    vx, vy, cxy = box(x * x) - mx * mx, box(y * y) - my * my, box(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return float(np.mean(s))


def _load_original(original, array_name=None, dims=None, dtype=None):
    """The original as (array [z, y, x], spacing or None, origin or None)."""
    if original is None:
        return None, None, None
    if isinstance(original, (str, os.PathLike)):
        from .volume_io import read_volume
        vf = read_volume(original, array_name=array_name, dims=dims, dtype=dtype)
        from_npy = Path(original).suffix.lower() in (".npy", ".raw")   # no placement stored in these
        return vf.array, None if from_npy else vf.spacing, None if from_npy else vf.origin
    return np.asarray(original), None, None


def report_numbers(vol, original: np.ndarray | None = None, decoded: np.ndarray | None = None,
                   nbytes: int | None = None) -> dict[str, Any]:
    """The numbers of a report as a dict (JSON-friendly)."""
    nbytes = vol.nbytes if nbytes is None else int(nbytes)
    voxels = int(np.prod(vol.dims))
    t = vol.training
    out: dict[str, Any] = {
        "array_name": vol.array_name, "dims": list(vol.dims), "dtype": vol.dtype.name, "bytes": nbytes,
        "native_bytes": vol.info.native_bytes, "ratio": vol.info.native_bytes / nbytes,
        "bits_per_voxel": 8.0 * nbytes / voxels, "stored_psnr": t.psnr,
        "steps": t.steps, "fit_seconds": t.seconds, "device": t.device,
    }
    if original is not None and decoded is not None:
        p = psnr(original, decoded)
        out.update(psnr=p if math.isfinite(p) else None, exact=math.isinf(p) and p > 0,
                   rmse=rmse(original, decoded), max_error=max_abs_error(original, decoded),
                   ssim=ssim(original, decoded),
                   value_range=[float(np.min(original)), float(np.max(original))])
    return out


def _fmt_num(v, spec=".2f"):
    return "—" if v is None else format(v, spec)


def make_report(nvc_path, original=None, output_png="report.png", *, model: int = 0,
                array_name: str | None = None, dims=None, dtype=None, title: str | None = None,
                cmap: str | None = None, dpi: int = 100) -> dict[str, Any]:
    """Write a report picture for ``nvc_path`` (a path or a :class:`~neuralvol.NeuralVolume`).

    original: the uncompressed volume, a path (``.npy``, ``.raw`` with ``dims``/``dtype``,
    ``.vti``, ...; ``array_name`` picks a VTK array) or an array ``[z, y, x]``; ``None``
    leaves out the error panels. cmap: for the value slices (default ``gray`` for integer
    data such as scans, ``viridis`` for floating-point fields). Returns the numbers drawn
    (see :func:`report_numbers`) plus ``"output"`` and ``"decode_seconds"``.
    """
    from . import NeuralVolume
    from . import open as open_nvc
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError("the report needs matplotlib: pip install matplotlib") from None
    if isinstance(nvc_path, NeuralVolume):
        vol, nbytes, label = nvc_path, None, title or nvc_path.array_name
    else:
        vol = open_nvc(nvc_path, model=model)
        nbytes = os.path.getsize(nvc_path) if len(_model_count(nvc_path)) == 1 else None
        label = title or Path(nvc_path).name
    array, _spacing, _origin = _load_original(original, array_name=array_name, dims=dims, dtype=dtype)
    if array is not None:
        expected = tuple(reversed(vol.dims))
        if array.ndim != 3 or array.shape != expected:
            raise InputError(f"the original has shape {array.shape} ([z, y, x]) but the .nvc holds "
                             f"{'x'.join(map(str, vol.dims))} (x, y, z), i.e. shape {expected}")
    start = time.perf_counter()
    decoded = vol.decode()
    decode_s = time.perf_counter() - start
    numbers = report_numbers(vol, array, decoded, nbytes)
    numbers.update(output=os.fspath(output_png), decode_seconds=decode_s)
    _draw(vol, array, decoded, numbers, output_png, label, cmap, dpi)
    return numbers


def _model_count(path) -> list:
    from . import read_header
    return read_header(path).get("models", [None])


def _draw(vol, original, decoded, numbers, output_png, label, cmap, dpi) -> None:
    from matplotlib.figure import Figure   # no pyplot: no global backend or figure state is touched
    from matplotlib.gridspec import GridSpec

    have_orig = original is not None
    cmap = cmap or ("gray" if vol.dtype.kind in "iub" else "viridis")
    lo, hi = (float(np.min(original)), float(np.max(original))) if have_orig else vol.value_range
    if hi <= lo:
        hi = lo + 1.0
    err = np.abs(decoded.astype(np.float64) - original.astype(np.float64)) if have_orig else None
    err_max = float(np.percentile(err, 99.9)) if have_orig and err.size else 0.0
    err_max = err_max or (float(err.max()) if have_orig and err.size and err.max() > 0 else 1.0)

    ncols = 3 if have_orig else 1
    fig = Figure(figsize=(4.2 * ncols + (0.6 if have_orig else 3.4), 15), constrained_layout=True)
    gs = GridSpec(4, 3 if have_orig else 2, figure=fig, height_ratios=[1, 1, 1, 0.95])
    nx, ny, nz = vol.dims
    (ox, oy, oz), (sx, sy, sz) = vol.origin, vol.spacing
    # (title, take-slice, horizontal axis, vertical axis): the centre slice along each axis
    cuts = [(f"z = {oz + (nz // 2) * sz:g} (index {nz // 2})", lambda a: a[nz // 2], 0, 1),
            (f"y = {oy + (ny // 2) * sy:g} (index {ny // 2})", lambda a: a[:, ny // 2, :], 0, 2),
            (f"x = {ox + (nx // 2) * sx:g} (index {nx // 2})", lambda a: a[:, :, nx // 2], 1, 2)]
    lower = [o - s / 2 for o, s in zip(vol.origin, vol.spacing)]
    upper = [o + (n - 1) * s + s / 2 for o, s, n in zip(vol.origin, vol.spacing, vol.dims)]
    panels = [("original", original, dict(cmap=cmap, vmin=lo, vmax=hi), vol.array_name)] if have_orig else []
    panels.append(("decoded", decoded, dict(cmap=cmap, vmin=lo, vmax=hi), vol.array_name))
    if have_orig:
        panels.append(("|decoded − original|", err, dict(cmap="inferno", vmin=0, vmax=err_max),
                       "absolute error"))
    for row, (cut_title, take, h, v) in enumerate(cuts):
        for col, (name, data, kw, cbar_label) in enumerate(panels):
            ax = fig.add_subplot(gs[row, col])
            im = ax.imshow(take(data), origin="lower", interpolation="nearest",
                           extent=(lower[h], upper[h], lower[v], upper[v]), **kw)
            ax.set_aspect("equal")
            ax.set_title(f"{name}, {cut_title}", fontsize=9)
            ax.set_xlabel(AXES[h])
            ax.set_ylabel(AXES[v])
            if col == 0 or col == len(panels) - 1 or not have_orig:
                cb = fig.colorbar(im, ax=ax, shrink=0.85)
                cb.set_label(cbar_label + (" (clipped at 99.9th percentile)" if "error" in cbar_label else ""),
                             fontsize=8)
    bottom = 3
    col = 0
    if have_orig:
        ax = fig.add_subplot(gs[bottom, col])
        col += 1
        signed = (decoded.astype(np.float64) - original.astype(np.float64)).ravel()
        bound = float(np.max(np.abs(signed))) or 1.0
        ax.hist(signed, bins=101, range=(-bound, bound), color="tab:blue", log=True)
        ax.set_xlabel("decoded − original")
        ax.set_ylabel("voxels (log)")
        ax.set_title("error histogram", fontsize=10)
    ax = fig.add_subplot(gs[bottom, col])
    col += 1
    _draw_curve(ax, vol.training, numbers)
    ax = fig.add_subplot(gs[bottom, col])
    ax.axis("off")
    ax.text(0.0, 1.0, _numbers_text(vol, numbers), va="top", ha="left", family="monospace", fontsize=9,
            transform=ax.transAxes)
    psnr_txt = "exact" if numbers.get("exact") else f"PSNR {_fmt_num(numbers.get('psnr', numbers.get('stored_psnr')))} dB"
    fig.suptitle(f"{label}: {vol.array_name} {nx}x{ny}x{nz} {vol.dtype.name}, "
                 f"{numbers['ratio']:.0f}:1, {psnr_txt}", fontsize=12)
    Path(output_png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output_png, dpi=dpi)


def _draw_curve(ax, training: TrainingSummary, numbers: dict) -> None:
    curve = [c for c in training.curve if c and c[2] is not None]
    ax.set_title("fitting curve (kept in the .nvc)", fontsize=10)
    ax.set_ylabel("PSNR (dB)")
    if not curve:
        ax.set_xlabel("seconds")
        ax.text(0.5, 0.5, "no curve stored", ha="center", va="center", transform=ax.transAxes)
        return
    timed = all(c[0] is not None for c in curve)
    xs = [c[0] if timed else c[1] for c in curve]
    ax.plot(xs, [c[2] for c in curve], "o-", ms=3, label="running estimate")
    ax.set_xlabel("seconds of fitting" if timed else "steps (file written without timings)")
    final = training.psnr
    if final is not None:
        ax.axhline(final, color="tab:red", ls="--", lw=1, label=f"stored weights: {final:.2f} dB")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def _numbers_text(vol, n: dict) -> str:
    lines = [f"file        {n['bytes']} bytes", f"original    {n['native_bytes']} bytes",
             f"ratio       {n['ratio']:.1f}:1", f"bits/voxel  {n['bits_per_voxel']:.3f}"]
    if "rmse" in n:
        lines += ["PSNR        " + ("exact" if n.get("exact") else f"{_fmt_num(n.get('psnr'))} dB"),
                  f"RMSE        {n['rmse']:.4g}", f"max error   {n['max_error']:.4g}",
                  f"SSIM        {n['ssim']:.4f}",
                  f"range       [{n['value_range'][0]:g}, {n['value_range'][1]:g}]"]
    else:
        lines += [f"PSNR (file) {_fmt_num(n.get('stored_psnr'))} dB"]
    secs = n.get("fit_seconds")
    if n.get("steps") is not None:
        lines += [f"fitting     {n.get('steps')} steps" + (f", {secs:.1f} s" if isinstance(secs, (int, float)) else ""),
                  f"            on {n.get('device')}"]
    else:
        lines += ["fitting     not recorded (small file)"]
    lines += [f"decode      {n['decode_seconds']:.2f} s (full grid, CPU)",
              f"spacing     {tuple(round(s, 4) for s in vol.spacing)}",
              f"origin      {tuple(round(o, 4) for o in vol.origin)}"]
    return "\n".join(lines)
