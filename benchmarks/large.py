"""Large volumes in bricks (issue 14): speed-up on Dask workers, memory, seams, budget sharing, SPERR, decode.

A turbulence-like float32 field (random phases, Kolmogorov k^-5/3 energy spectrum, i.e.
amplitude ~ k^-11/6, made here and never committed) is written to a temporary .npy and read
lazily (MemmapArray), so each worker holds only its brick. Measured:

* compress at --ratio (200:1) on 1 and 2 LocalCluster workers: seconds (cluster start-up and the
  workers' torch import included), speed-up, peak RSS of the workers and of this process;
* on a crop (256^3; 64^3 with --quick) at the same bytes: one unbricked model against bricks with
  overlap 0, 2 and 4 (PSNR, PSNR within 2 voxels of brick faces against the interior), and the
  byte allocations equal / variance / gradient, with how well each difficulty predicts the
  bricks' errors (Spearman rank correlation against the per-brick MSE of the equal share);
* SPERR at the same bytes when ``.venv-baselines`` exists (benchmarks/setup_baselines.sh);
* decode time of the whole volume and of a 1/64 region (a quarter of each axis).

    python benchmarks/large.py            # 512^3, brick 128, 300 steps per brick
    python benchmarks/large.py --quick    # 128^3, brick 64, 30 steps: a few minutes
    python benchmarks/large.py --post-filter ../shared/data/volumes/embryo.npy --workers 2   # bricks' post filters
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import neuralvol as nv  # noqa: E402
from neuralvol.bricks import MemmapArray, compress_bricked  # noqa: E402
from neuralvol.bricks.compress import DEFAULT_OVERLAP, time_budget_for  # noqa: E402
from neuralvol.bricks.layout import BrickLayout  # noqa: E402
from neuralvol.bricks.quality import seam_psnr  # noqa: E402
from neuralvol.metrics import psnr  # noqa: E402


def turbulence(n: int, seed: int = 0) -> np.ndarray:
    """A periodic n^3 float32 field with a k^-5/3 energy spectrum and random phases."""
    rng = np.random.default_rng(seed)
    k = np.fft.fftfreq(n) * n
    kr = np.fft.rfftfreq(n) * n
    kk = np.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kr[None, None, :] ** 2).astype(np.float32)
    kk[0, 0, 0] = 1.0
    amp = kk ** (-11.0 / 6.0)
    amp[0, 0, 0] = 0.0
    del kk
    phase = rng.uniform(0, 2 * np.pi, amp.shape).astype(np.float32)
    spec = (amp * np.exp(1j * phase)).astype(np.complex64)
    del amp, phase
    field = np.fft.irfftn(spec, s=(n, n, n), axes=(0, 1, 2)).astype(np.float32)
    return (field - field.mean()) / field.std()


def spearman(a, b) -> float:
    ra, rb = np.argsort(np.argsort(a)), np.argsort(np.argsort(b))
    return float(np.corrcoef(ra, rb)[0, 1])


def brick_core_mse(original, decoded, layout) -> list[float]:
    out = []
    for i in range(len(layout)):
        c = layout.core(i)
        sl = tuple(slice(c[2 * a], c[2 * a + 1] + 1) for a in (2, 1, 0))
        out.append(float(np.mean((original[sl].astype(np.float64) - decoded[sl]) ** 2)))
    return out


def sperr_psnr(path: Path, data: np.ndarray, budget: int, work: Path):
    python = REPO / ".venv-baselines" / "bin" / "python"
    if not python.exists():
        return None, "no .venv-baselines (run benchmarks/setup_baselines.sh)"
    out = work / "sperr"
    proc = subprocess.run([str(python), str(REPO / "benchmarks" / "wasm_codecs.py"), str(path), "--budgets",
                           str(budget), "--codecs", "sperr", "--out", str(out)], capture_output=True, text=True)
    decoded = out / f"sperr_{budget}.npy"
    if proc.returncode != 0 or not decoded.exists():
        return None, f"SPERR failed: {proc.stderr.strip().splitlines()[-1:]}"
    return psnr(data, np.load(decoded)), ""


def post_filter_rows(paths: list[Path], args) -> dict:
    """Real volumes in bricks with and without the bricks' post filters, and SPERR, at the same budget."""
    rows = {}
    w = args.workers[-1]
    brick = args.brick or 128
    with tempfile.TemporaryDirectory() as tmp:
        for path in paths:
            data = np.load(path)
            row = {}
            # the time budget is the whole call's: about --brick-seconds for each brick's fit
            bricks = len(BrickLayout.for_volume(data.shape[::-1], brick, DEFAULT_OVERLAP))
            total = time_budget_for(args.brick_seconds, bricks, max(1, w))
            for kept in (False, True):
                t = time.perf_counter()
                vol = compress_bricked(data, brick, ratio=args.ratio, workers=w, post_filter=kept, seed=0,
                                       record_timings=False, time_budget=total)
                secs = time.perf_counter() - t
                vol.decode(region=(0, 0, 0, 0, 0, 0))   # warm-up: first-call imports are not decode time
                t = time.perf_counter()
                decoded = vol.decode()
                row["post filters" if kept else "none"] = {
                    "psnr": round(psnr(data, decoded), 2), "bytes": vol.nbytes, "compress_s": round(secs, 1),
                    "decode_s": round(time.perf_counter() - t, 2),
                    "kernels": "/".join(b.post_filter.size if b.post_filter else "-" for b in vol.bricks)}
                print(f"{path.stem} {len(vol.bricks)} bricks of {brick}, {args.ratio:g}:1, "
                      f"{'post filters' if kept else 'no post filters'}: {row['post filters' if kept else 'none']}",
                      flush=True)
            sp, note = sperr_psnr(path, data, row["none"]["bytes"], Path(tmp))
            row["sperr_psnr"] = None if sp is None else round(sp, 2)
            print(f"{path.stem} SPERR at {row['none']['bytes']} bytes: {row['sperr_psnr']} {note}", flush=True)
            rows[path.stem] = row
    print(f"\n| volume | bricks | no post filter dB | post filters dB | change | kernels kept | decode s (none / filters) | SPERR dB |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        a, b = r["none"], r["post filters"]
        print(f"| {name} | {brick} | {a['psnr']:.2f} | {b['psnr']:.2f} | {b['psnr'] - a['psnr']:+.2f} | {b['kernels']} "
              f"| {a['decode_s']:.2f} / {b['decode_s']:.2f} | {r['sperr_psnr']} |")
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="128^3, brick 64, crop 64^3 in bricks of 32, 30 steps")
    p.add_argument("--size", type=int, help="volume edge (default 512, 128 with --quick)")
    p.add_argument("--brick", type=int, help="brick edge (default 128, 32 with --quick)")
    p.add_argument("--ratio", type=float, default=200.0)
    p.add_argument("--steps", type=int, help="steps per brick fit (default 300, 30 with --quick)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--threads", type=int, default=1, help="torch threads of this process (default 1; workers use 1)")
    p.add_argument("--json", type=Path, help="also write the numbers here")
    p.add_argument("--post-filter", type=Path, nargs="+", metavar="VOLUME.npy",
                   help="instead: these volumes in bricks with and without the bricks' post filters, and SPERR")
    p.add_argument("--brick-seconds", type=float, default=30.0,
                   help="with --post-filter: about this many seconds of fitting per brick (the call's time "
                        "budget is that times the waves of bricks the workers fit)")
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    if args.post_filter:
        rows = post_filter_rows(args.post_filter, args)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        return 0
    n = args.size or (128 if args.quick else 512)
    brick = args.brick or (64 if args.quick else 128)
    steps = args.steps or (30 if args.quick else 300)
    crop_n = n // 2
    opts = dict(steps=steps, record_timings=False, seed=0)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        data = turbulence(n)
        np.save(work / "field.npy", data)
        rows["volume"] = f"{n}^3 float32 turbulence ({data.nbytes / 2 ** 20:.0f} MiB), made in {time.perf_counter() - t:.1f} s"
        lazy = MemmapArray(work / "field.npy")
        budget = int(data.nbytes / args.ratio)
        print(f"# {rows['volume']}; budget {budget} bytes ({args.ratio:g}:1); brick {brick}; {steps} steps", flush=True)
        # 1. workers: speed-up and memory
        runs = {}
        for w in args.workers:
            t = time.perf_counter()
            vol = compress_bricked(lazy, brick, ratio=args.ratio, workers=w, **opts)
            secs = time.perf_counter() - t
            vol.save(work / f"w{w}.nvc")
            r = vol.report
            runs[w] = {"seconds": round(secs, 1), "bytes": vol.nbytes, "bricks": r["bricks"],
                       "peak_worker_MiB": round(max(list(r["peak_rss_workers"].values()) + [r["peak_rss_task_max"]]) / 2 ** 20),
                       "peak_client_MiB": round(r["peak_rss_client"] / 2 ** 20)}
            print(f"workers {w}: {runs[w]}", flush=True)
        base = runs[args.workers[0]]["seconds"]
        for w in runs:
            runs[w]["speedup"] = round(base / runs[w]["seconds"], 2)
        rows["workers"] = runs
        vol = nv.open(work / f"w{args.workers[-1]}.nvc")
        vol.decode(region=(0, 0, 0, 0, 0, 0))   # warm-up: first-call imports are not decode time
        t = time.perf_counter()
        decoded = vol.decode()
        whole_s = time.perf_counter() - t
        q = [max(1, d // 4) for d in vol.dims]
        vol.reset_decoded_bricks()
        t = time.perf_counter()
        vol.decode(region=(0, q[0] - 1, 0, q[1] - 1, 0, q[2] - 1))
        region_s = time.perf_counter() - t
        s = seam_psnr(data, decoded, vol.layout)
        rows["full"] = {"psnr": round(s["all"], 2), "seam_psnr": round(s["seam"], 2),
                        "interior_psnr": round(s["interior"], 2), "decode_whole_s": round(whole_s, 2),
                        "decode_1/64_s": round(region_s, 3), "bricks_for_1/64": len(vol.decoded_bricks),
                        "bytes": vol.nbytes, "ratio": round(vol.ratio, 1)}
        print(f"full volume: {rows['full']}", flush=True)
        sp, note = sperr_psnr(work / "field.npy", data, vol.nbytes, work)
        rows["sperr"] = {"psnr": None if sp is None else round(sp, 2), "note": note}
        print(f"SPERR at {vol.nbytes} bytes: {rows['sperr']}", flush=True)
        del decoded
        # 2. on a crop: unbricked vs bricked (overlaps), allocations
        crop = np.ascontiguousarray(data[:crop_n, :crop_n, :crop_n])
        crop_budget = int(crop.nbytes / args.ratio)
        one = nv.compress(crop, size=crop_budget, **opts)
        rows["crop"] = {"size": f"{crop_n}^3", "bytes": crop_budget,
                        "unbricked": {"psnr": round(psnr(crop, one.decode()), 2), "bytes": one.nbytes}}
        print(f"crop {crop_n}^3 unbricked: {rows['crop']['unbricked']}", flush=True)
        w = args.workers[-1]
        for overlap in (0, 2, 4):
            b = compress_bricked(crop, brick // 2, size=crop_budget, overlap=overlap, workers=w, **opts)
            d = b.decode()
            s = seam_psnr(crop, d, b.layout)
            rows["crop"][f"overlap {overlap}"] = {"psnr": round(s["all"], 2), "seam": round(s["seam"], 2),
                                                  "interior": round(s["interior"], 2), "bytes": b.nbytes}
            print(f"crop bricks of {brick // 2}, overlap {overlap}: {rows['crop'][f'overlap {overlap}']}", flush=True)
        for allocation in ("equal", "variance", "gradient"):
            b = compress_bricked(crop, brick // 2, size=crop_budget, allocation=allocation, workers=w, **opts)
            d = b.decode()
            entry = {"psnr": round(psnr(crop, d), 2), "bytes": b.nbytes}
            if allocation == "equal":
                mse = brick_core_mse(crop, d, b.layout)
                for proxy in ("variance", "gradient"):
                    entry[f"spearman({proxy}, error)"] = round(spearman([x[proxy] for x in b.report["difficulty"]], mse), 3)
            rows["crop"][f"allocation {allocation}"] = entry
            print(f"crop allocation {allocation}: {entry}", flush=True)
    print("\n" + json.dumps(rows, indent=1))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
