"""Point-wise error bounds and region importance, against SZ3, ZFP and SPERR.

Part 1: for each volume and bound E (a fraction of the value range), the compression ratio
each codec reaches with |decoded - original| <= E, and the max error measured on every
voxel of each codec's output (as the codec returns it, and for integer volumes after
rounding to the dtype, which is what a user stores). neuralvol: ``compress(max_error=E)``
with no ratio (the network's ratio is searched), the ratio it picked and the share of
corrected voxels. SZ3 (``pysz``, ABS mode) and ZFP (``zfpy``, fixed accuracy) run here;
SPERR (point-wise-error mode "pwe") runs in ``.venv-baselines`` (``bash
benchmarks/setup_baselines.sh``) through this script's ``--sperr-worker``.

Part 2: PSNR inside and outside a box (the middle eighth of the grid) at equal file size,
unweighted against ``roi=[box], roi_weight=10``.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/error_bound.py --quick
    PYTHONPATH=$PWD .venv/bin/python benchmarks/error_bound.py            # the full table
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VOLUMES = ROOT.parent / "shared" / "data" / "volumes"
QUICK_VOLUMES = ["headsq_quarter", "viscous_fingers_t99"]
FULL_VOLUMES = QUICK_VOLUMES + ["head_mr_small", "hydrogen", "isabel_velmag_t30", "walnut_ct"]
FRACTIONS = (1e-2, 1e-3, 1e-4)


def sperr_worker(path: str, bounds: list[float]) -> dict:
    """SPERR in point-wise-error mode at each bound: bytes and the decoded max error."""
    from numcodecs_wasm_sperr import Sperr
    sys.path.insert(0, str(Path(__file__).parent))
    from wasm_codecs import _decode, _encode   # one home for how the wasm codecs are called
    original = np.load(path)
    data = np.ascontiguousarray(original, dtype=np.float64 if original.dtype == np.float64 else np.float32)
    out = {}
    for bound in bounds:
        codec = Sperr(mode="pwe", pwe=float(bound))
        start = time.perf_counter()
        blob = _encode(codec, data)
        seconds = time.perf_counter() - start
        decoded = np.asarray(_decode(codec, blob, data), dtype=np.float64)
        out[repr(bound)] = {"bytes": len(blob), "seconds": seconds, **_errors(decoded, original)}
    return out


def _errors(decoded: np.ndarray, original: np.ndarray) -> dict:
    ref = original.astype(np.float64)
    errors = {"max_error": float(np.max(np.abs(decoded - ref)))}
    if original.dtype.kind in "iu":
        info = np.iinfo(original.dtype)
        rounded = np.clip(np.rint(decoded), info.min, info.max)
        errors["max_error_rounded"] = float(np.max(np.abs(rounded - ref)))
    return errors


def run_sz3(original: np.ndarray, bound: float) -> dict:
    from pysz import sz, szConfig, szErrorBoundMode
    data = np.ascontiguousarray(original, dtype=np.float64 if original.dtype == np.float64 else np.float32)
    cfg = szConfig(data.shape)
    cfg.errorBoundMode = szErrorBoundMode.ABS
    cfg.absErrorBound = bound
    blob = sz.compress(data, cfg)[0].tobytes()
    decoded = sz.decompress(np.frombuffer(blob, dtype=np.uint8), data.dtype, data.shape)[0]
    return {"bytes": len(blob), **_errors(np.asarray(decoded, dtype=np.float64), original)}


def run_zfp(original: np.ndarray, bound: float) -> dict:
    import zfpy
    data = np.ascontiguousarray(original, dtype=np.float64 if original.dtype == np.float64 else np.float32)
    blob = zfpy.compress_numpy(data, tolerance=bound)
    return {"bytes": len(blob), **_errors(np.asarray(zfpy.decompress_numpy(blob), dtype=np.float64), original)}


def run_neuralvol(original: np.ndarray, bound: float, time_budget: float) -> dict:
    import neuralvol as nv
    start = time.perf_counter()
    vol = nv.compress(original, max_error=bound, time_budget=time_budget, seed=0, device="auto")
    seconds = time.perf_counter() - start
    decoded = vol.decode()
    return {"bytes": vol.nbytes, "seconds": seconds, "network_ratio": min(vol.bound_search, key=lambda t: t[1])[0],
            "corrected": vol.correction.count / original.size, **_errors(decoded.astype(np.float64), original)}


def run_sperr(path: Path, bounds: list[float]) -> dict | str:
    python = ROOT / ".venv-baselines" / "bin" / "python"
    if not python.exists():
        return "no .venv-baselines (bash benchmarks/setup_baselines.sh)"
    done = subprocess.run([str(python), __file__, "--sperr-worker", str(path), "--bounds", *map(repr, bounds)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return f"sperr failed: {done.stderr.strip().splitlines()[-1:]}"
    return json.loads(done.stdout)


def bound_table(names: list[str], time_budget: float, quick: bool) -> list[dict]:
    rows = []
    for name in names:
        path = VOLUMES / f"{name}.npy"
        original = np.load(path)
        span = float(original.max() - original.min())
        bounds = [f * span for f in FRACTIONS]
        sperr = run_sperr(path, bounds)
        for fraction, bound in zip(FRACTIONS, bounds):
            row = {"volume": name, "dtype": original.dtype.name, "fraction": fraction, "bound": bound,
                   "sz3": run_sz3(original, bound), "zfp": run_zfp(original, bound),
                   "sperr": sperr[repr(bound)] if isinstance(sperr, dict) else sperr}
            try:
                row["neuralvol"] = run_neuralvol(original, bound, time_budget)
            except Exception as exc:  # noqa: BLE001 - a row says what failed
                row["neuralvol"] = f"{type(exc).__name__}: {exc}"
            for codec in ("neuralvol", "sz3", "zfp", "sperr"):
                if isinstance(row[codec], dict):
                    row[codec]["ratio"] = original.nbytes / row[codec]["bytes"]
            rows.append(row)
            print(_bound_line(row), flush=True)
    return rows


def _cell(result) -> str:
    if not isinstance(result, dict):
        return "n/a"
    worst = result.get("max_error_rounded", result["max_error"])
    return f"{result['ratio']:7.1f} ({worst:.3g})"


def _bound_line(row: dict) -> str:
    nv_res = row["neuralvol"]
    extra = (f"  [net {nv_res['network_ratio']:g}:1, {100 * nv_res['corrected']:.1f} % corrected, "
             f"{nv_res['seconds']:.0f} s]" if isinstance(nv_res, dict) else f"  [{nv_res}]")
    return (f"| {row['volume']} ({row['dtype']}) | {row['fraction']:g} | {row['bound']:.4g} | {_cell(nv_res)} | "
            f"{_cell(row['sz3'])} | {_cell(row['zfp'])} | {_cell(row['sperr'])} |{extra}")


def roi_table(names: list[str], steps: int, ratio: float) -> list[dict]:
    import neuralvol as nv
    from neuralvol.importance import region_mask
    rows = []
    for name in names:
        original = np.load(VOLUMES / f"{name}.npy")
        nz, ny, nx = original.shape
        box = [nx // 4, 3 * nx // 4 - 1, ny // 4, 3 * ny // 4 - 1, nz // 4, 3 * nz // 4 - 1]
        mask = region_mask(original.shape, [box])
        span = float(original.max() - original.min())
        row = {"volume": name, "box": box}
        for label, extra in (("unweighted", {}), ("roi x10", {"roi": [box], "roi_weight": 10})):
            vol = nv.compress(original, ratio=ratio, steps=steps, seed=0, device="auto", **extra)
            err = vol.decode().astype(np.float64) - original
            psnr = [10 * math.log10(span ** 2 / float(np.mean(err[sel] ** 2))) for sel in (mask, ~mask)]
            row[label] = {"bytes": vol.nbytes, "inside": psnr[0], "outside": psnr[1]}
        rows.append(row)
        u, w = row["unweighted"], row["roi x10"]
        print(f"| {name} | {u['bytes']} / {w['bytes']} | {u['inside']:.2f} -> {w['inside']:.2f} | "
              f"{u['outside']:.2f} -> {w['outside']:.2f} |", flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two volumes, short fits")
    parser.add_argument("--time-budget", type=float, help="seconds per neuralvol compression (quick 8, full 60)")
    parser.add_argument("--roi-steps", type=int, help="fitting steps of the ROI comparison (quick 150, full 2000)")
    parser.add_argument("--out", default=None, help="write the rows as JSON here")
    parser.add_argument("--sperr-worker", metavar="VOL.npy", help=argparse.SUPPRESS)
    parser.add_argument("--bounds", type=float, nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.sperr_worker:
        print(json.dumps(sperr_worker(args.sperr_worker, args.bounds)))
        return 0
    import torch
    if args.quick:
        torch.set_num_threads(1)
    names = QUICK_VOLUMES if args.quick else FULL_VOLUMES
    budget = args.time_budget or (8.0 if args.quick else 60.0)
    print("ratio reached at |error| <= bound (max error measured on every voxel; integer volumes after rounding)")
    print("| volume | bound / range | bound | neuralvol | SZ3 | ZFP | SPERR |")
    print("|---|---|---|---|---|---|---|")
    bounds = bound_table(names, budget, args.quick)
    steps = args.roi_steps or (150 if args.quick else 2000)
    print(f"\nPSNR (dB) inside / outside the middle-eighth box at ratio 50, {steps} steps: unweighted -> roi x10")
    print("| volume | bytes (unweighted / roi) | inside | outside |")
    print("|---|---|---|---|")
    roi = roi_table(names, steps, 50.0)
    if args.out:
        Path(args.out).write_text(json.dumps({"bounds": bounds, "roi": roi}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
