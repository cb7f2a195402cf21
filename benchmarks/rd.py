"""Rate-distortion benchmark: neuralvol against SZ3, ZFP, SPERR and TTHRESH in one run.

For each volume and ratio (native bytes / compressed bytes, neuralvol's whole .nvc file),
prints PSNR and seconds per codec, plus neuralvol's full-grid decode throughput. Each
baseline's setting is searched to land at or under each ratio's byte budget (whole encoded
stream): SZ3's absolute error bound and ZFP's tolerance by a scan, SPERR's bits per voxel
and TTHRESH's relative error by bisection. PSNR is 20*log10((max - min) / RMSE) over all
voxels in the original dtype, for every codec from the same function.

    .venv/bin/python benchmarks/rd.py [--volumes NAME ...] [--ratios 50 100 200 400] [--time-budget 60]
    .venv/bin/python benchmarks/rd.py --baselines-only      # SZ3, ZFP, SPERR, TTHRESH; no fitting

SPERR and TTHRESH (WebAssembly builds from numcodecs-wasm-*) run in their own venv, made by
``bash benchmarks/setup_baselines.sh``: numcodecs, which they need, fails to import beside
zfpy. ``benchmarks/wasm_codecs.py`` is run there once per volume for all its budgets.

Next to the printed table it writes, per volume, a rate-distortion plot (PSNR against
ratio, log x, one curve per codec) ``rd_NAME.png`` and that volume's table ``rd_NAME.md``
into ``--plot-dir`` (default ``benchmarks/results``; ``--no-plot`` skips both).
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import neuralvol as nv
from neuralvol.bitstream.budget import header_length
from neuralvol.metrics import psnr
from neuralvol.volume import cast_to_dtype

REPO = Path(__file__).resolve().parents[1]
VOLUMES = REPO.parent / "shared" / "data" / "volumes"
RESULTS = REPO / "benchmarks" / "results"
CODECS = (("neuralvol", "nv_psnr", "o-"), ("SZ3", "sz3_psnr", "s--"), ("ZFP", "zfp_psnr", "^:"),
          ("SPERR", "sperr_psnr", "v-"), ("TTHRESH", "tthresh_psnr", "d-."))
BASELINE_KEYS = ("sz3_psnr", "zfp_psnr", "sperr_psnr", "tthresh_psnr")
WASM_CODECS = ("sperr", "tthresh")
BASELINES_PYTHON = REPO / ".venv-baselines" / "bin" / "python"
WASM_WORKER = REPO / "benchmarks" / "wasm_codecs.py"
LARGE_VOXELS = 128 ** 3  # volumes above this get --large-time-budget


def judge(row: dict) -> None:
    """Add the best other codec's PSNR and whether neuralvol matches or beats it.

    Where no other codec reaches the ratio, neuralvol wins with any PSNR above the trivial
    constant reconstruction (the volume's mean everywhere)."""
    others = [row.get(k) for k in BASELINE_KEYS]
    others = [v for v in others if isinstance(v, (int, float)) and math.isfinite(v)]
    row["best_other"] = max(others) if others else None
    nv_psnr = row.get("nv_psnr")
    floor = row["best_other"] if others else row.get("constant_psnr")
    row["win"] = isinstance(nv_psnr, float) and floor is not None and nv_psnr >= floor
    if nv_psnr is None and "nv_error" not in row:   # neuralvol was not run (--baselines-only)
        row["win"] = None


def bisect_error_bound(compress, decompress, data: np.ndarray, budget: int, iterations: int = 10):
    """The error bound whose output fits ``budget`` bytes with the least error; (decoded, bytes) or None.

    Compressed size is not monotonic in the bound (SZ3's predictors switch), so a plain
    bisection can stop far from the best bound that fits. Instead: a geometric scan over
    eleven decades, keeping the fitting bound with the lowest MSE, then a finer scan
    around the three best. ZFP's fixed-accuracy mode needs
    tolerances far above the value range to reach high ratios (it then keeps little more
    than block exponents); the PSNR shows what is left.
    """
    value_range = float(data.max() - data.min()) or 1.0
    scan = value_range * np.geomspace(1e-7, 1e4, 221)
    fitting = []  # (mse, bound, blob)

    def consider(bound):
        blob = compress(data, bound)
        if len(blob) <= budget:
            decoded = np.asarray(decompress(blob), dtype=np.float64).reshape(data.shape)
            fitting.append((float(np.mean((decoded - data) ** 2)), bound, blob))

    for bound in scan:
        consider(bound)
    if not fitting:
        return None
    # then finer scans around the three best bounds (one coarse step either side)
    step = scan[1] / scan[0]
    for _, centre, _ in sorted(fitting, key=lambda f: f[0])[:3]:
        for bound in centre * np.geomspace(1 / step, step, 2 * iterations + 1):
            consider(bound)
    blob = min(fitting, key=lambda f: f[0])[2]
    return decompress(blob), len(blob)


def run_sz3(original: np.ndarray, budget: int):
    from pysz import sz, szConfig, szErrorBoundMode
    data = original.astype(np.float64 if original.dtype == np.float64 else np.float32)

    def compress(x, bound):
        cfg = szConfig(x.shape)
        cfg.errorBoundMode = szErrorBoundMode.ABS
        cfg.absErrorBound = bound
        return sz.compress(x, cfg)[0].tobytes()

    def decompress(blob):
        return sz.decompress(np.frombuffer(blob, dtype=np.uint8), data.dtype, data.shape)[0]
    return _timed_baseline(original, data, budget, compress, decompress)


def run_zfp(original: np.ndarray, budget: int):
    import zfpy
    data = original.astype(np.float64 if original.dtype == np.float64 else np.float32)
    return _timed_baseline(original, data, budget, lambda x, t: zfpy.compress_numpy(x, tolerance=t),
                           zfpy.decompress_numpy)


def _timed_baseline(original, data, budget, compress, decompress):
    start = time.perf_counter()
    result = bisect_error_bound(compress, decompress, data, budget)
    seconds = time.perf_counter() - start
    if result is None:
        return None, None, seconds
    decoded, nbytes = result
    return psnr(original, cast_to_dtype(np.asarray(decoded, dtype=np.float64), original.dtype)), nbytes, seconds


def run_wasm_codecs(original: np.ndarray, budgets: list[int], codecs: list[str]) -> dict:
    """SPERR/TTHRESH at every budget, in .venv-baselines: {codec: {budget: row fields}}.

    The worker gets the volume as .npy in a temp dir and leaves each decoded array there;
    PSNR is measured here, like SZ3's and ZFP's, on the decode cast to the original dtype."""
    with tempfile.TemporaryDirectory(prefix="nv_wasm_") as tmp:
        tmp = Path(tmp)
        np.save(tmp / "volume.npy", original)
        cmd = [str(BASELINES_PYTHON), str(WASM_WORKER), str(tmp / "volume.npy"), "--out", str(tmp),
               "--budgets", *map(str, budgets), "--codecs", *codecs]
        done = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode != 0:
            tail = [line for line in done.stderr.splitlines() if line.strip()][-3:]
            raise RuntimeError(f"{WASM_WORKER.name} failed (exit {done.returncode}): " + " / ".join(tail))
        report = json.loads((tmp / "result.json").read_text())
        out: dict[str, dict[int, dict]] = {}
        for codec, rows in report.items():
            out[codec] = {}
            for r in rows:
                fields = {f"{codec}_bytes": r["bytes"], f"{codec}_seconds": r["search_s"], f"{codec}_psnr": None}
                if r.get("error"):
                    print(f"{codec} at {r['budget']} bytes failed: {r['error']}", file=sys.stderr)
                    fields[f"{codec}_error"] = r["error"]
                if r["bytes"] is not None:
                    decoded = np.load(tmp / r["decoded"], allow_pickle=False).astype(np.float64)
                    fields.update({f"{codec}_psnr": psnr(original, cast_to_dtype(decoded, original.dtype)),
                                   f"{codec}_encode_s": r["encode_s"], f"{codec}_decode_s": r["decode_s"],
                                   f"{codec}_setting": r["setting"]})
                out[codec][r["budget"]] = fields
        return out


def run_neuralvol(original: np.ndarray, ratio: float, time_budget: float, spacing, seed: int):
    start = time.perf_counter()
    try:
        vol = nv.compress(original, spacing=spacing or (1, 1, 1), ratio=ratio, time_budget=time_budget, seed=seed)
    except nv.InputError as exc:
        return {"error": str(exc)}
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    decoded = vol.decode()
    decode_s = time.perf_counter() - start
    return {"psnr": psnr(original, decoded), "bytes": vol.nbytes, "seconds": fit_s, "steps": vol.training.steps,
            "decode_s": decode_s, "voxels_per_s": original.size / decode_s,
            "bits_per_param": 8 * (vol.nbytes - header_length(vol)) / vol.config.n_params,
            # in the CSV: the kernel each cell kept ("3x3x3", "5x5x5"; "none"; True/False before stop 32)
            "post_filter": "none" if vol.post_filter is None else vol.post_filter.size}


def _parse(text: str):
    if text in ("", "None"):
        return None
    if text in ("True", "False"):
        return text == "True"
    try:
        return float(text)
    except ValueError:
        return text


def _fmt(value, spec):
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, spec)


HEADER = ("volume", "ratio", "nv PSNR", "nv bits/param", "nv s", "nv steps", "nv decode s", "SZ3 PSNR", "SZ3 s",
          "ZFP PSNR", "ZFP s", "SPERR PSNR", "SPERR s", "TTHRESH PSNR", "TTHRESH s", "constant PSNR", "nv ≥ best")
SPEED_HEADER = ("volume", "ratio", "nv compress s", "SPERR encode s", "nv decode s", "SPERR decode s")


def _row_line(row: dict) -> str:
    win = {True: "**yes**", False: "no"}.get(row.get("win"), "—")
    return (f"| {row['volume']} | {float(row['ratio']):g} | {_fmt(row.get('nv_psnr'), '.2f')} | "
            f"{_fmt(row.get('nv_bits_per_param'), '.2f')} | {_fmt(row.get('nv_seconds'), '.1f')} | "
            f"{_fmt(row.get('nv_steps'), '.0f')} | {_fmt(row.get('nv_decode_s'), '.2f')} | "
            f"{_fmt(row.get('sz3_psnr'), '.2f')} | {_fmt(row.get('sz3_seconds'), '.1f')} | "
            f"{_fmt(row.get('zfp_psnr'), '.2f')} | {_fmt(row.get('zfp_seconds'), '.1f')} | "
            f"{_fmt(row.get('sperr_psnr'), '.2f')} | {_fmt(row.get('sperr_seconds'), '.1f')} | "
            f"{_fmt(row.get('tthresh_psnr'), '.2f')} | {_fmt(row.get('tthresh_seconds'), '.1f')} | "
            f"{_fmt(row.get('constant_psnr'), '.2f')} | {win} |")


def speed_lines(rows: list[dict]) -> list[str]:
    """neuralvol's compress and decode seconds beside one SPERR encode and decode at the same ratio.

    (The table's "SPERR s" is the whole search for the rate, many encodes.)"""
    lines = ["", "| " + " | ".join(SPEED_HEADER) + " |", "|" + "---|" * len(SPEED_HEADER)]
    for r in rows:
        lines.append(f"| {r['volume']} | {float(r['ratio']):g} | {_fmt(r.get('nv_seconds'), '.2f')} | "
                     f"{_fmt(r.get('sperr_encode_s'), '.3f')} | {_fmt(r.get('nv_decode_s'), '.3f')} | "
                     f"{_fmt(r.get('sperr_decode_s'), '.3f')} |")
    return lines


def summary_lines(rows: list[dict]) -> list[str]:
    """Per volume: cells won; then how many volumes win every cell (the issue's goal: 2/3)."""
    by_volume: dict[str, list[dict]] = {}
    for r in rows:
        by_volume.setdefault(r["volume"], []).append(r)
    lines = ["", "| volume | cells won | every cell |", "|---|---|---|"]
    all_won = 0
    for name, rs in by_volume.items():
        won = sum(bool(r.get("win")) for r in rs)
        all_won += won == len(rs)
        lines.append(f"| {name} | {won}/{len(rs)} | {'yes' if won == len(rs) else 'no'} |")
    lines.append(f"\nneuralvol matches or beats max(SZ3, ZFP, SPERR, TTHRESH) at every ratio on {all_won} of "
                 f"{len(by_volume)} volumes (goal: {math.ceil(2 * len(by_volume) / 3)}).")
    return lines


def write_rd_plot(name: str, rows: list[dict], path: Path, entry: dict | None = None,
                  time_budget: float | None = None) -> Path:
    """PSNR against ratio (log x), one curve per codec that produced a number; returns ``path``."""
    from matplotlib.figure import Figure
    fig = Figure(figsize=(6.4, 4.6), constrained_layout=True)
    ax = fig.add_subplot()
    ratios = [r["ratio"] for r in rows]
    drawn = 0
    for label, key, style in CODECS:
        pts = [(r["ratio"], r[key]) for r in rows if isinstance(r.get(key), float) and math.isfinite(r[key])]
        if pts:
            ax.plot(*zip(*pts), style, label=label, ms=6)
            drawn += 1
        elif any(key in r for r in rows):   # it ran, but no setting fitted any ratio's byte budget
            ax.plot([], [], style, label=f"{label}: none fits the budget")
            drawn += 1
    ax.set_xscale("log")
    ax.set_xticks(ratios, [f"{r:g}:1" for r in ratios])
    ax.minorticks_off()
    ax.set_xlabel("compression ratio (native bytes / compressed bytes, log scale)")
    ax.set_ylabel("PSNR (dB)")
    shape = "" if entry is None else f" ({'x'.join(map(str, entry.get('dims_xyz', [])))} {entry.get('dtype', '')})"
    budget = "" if time_budget is None else f", neuralvol fit {time_budget:g} s"
    ax.set_title(f"rate–distortion: {name}{shape}{budget}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if drawn:
        ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volumes", nargs="*", help="names in ../shared/data/volumes (default: all)")
    parser.add_argument("--ratios", nargs="*", type=float, default=[100, 200, 400, 800])
    parser.add_argument("--time-budget", type=float, default=60.0, help="seconds per neuralvol compress call (volume and ratio), all of it")
    parser.add_argument("--large-time-budget", type=float, default=300.0,
                        help=f"compress seconds for volumes over {LARGE_VOXELS} voxels (256^3)")
    parser.add_argument("--from-csv", nargs="*", type=Path,
                        help="print the table and summary of earlier runs' CSV files instead of running; rows "
                             "of one volume and ratio are merged (a later file's measured fields win), so a "
                             "--baselines-only run and a neuralvol run make one row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's, one per core)")
    parser.add_argument("--codecs", nargs="*", default=["neuralvol", "sz3", "zfp", "sperr", "tthresh"],
                        choices=["neuralvol", "sz3", "zfp", "sperr", "tthresh"])
    parser.add_argument("--baselines-only", action="store_true",
                        help="measure SZ3, ZFP, SPERR and TTHRESH (of --codecs) without fitting neuralvol")
    parser.add_argument("--csv", type=Path, help="also write the rows to this CSV file")
    parser.add_argument("--data", type=Path, default=VOLUMES)
    parser.add_argument("--plot-dir", type=Path, default=RESULTS,
                        help="where rd_NAME.png and rd_NAME.md go (default benchmarks/results)")
    parser.add_argument("--no-plot", action="store_true", help="write no plot or per-volume table")
    args = parser.parse_args(argv)
    if args.threads:
        import torch
        torch.set_num_threads(args.threads)
    codecs = [c for c in args.codecs if not (args.baselines_only and c == "neuralvol")]
    wasm = [c for c in WASM_CODECS if c in codecs]
    if wasm and not args.from_csv and not BASELINES_PYTHON.exists():
        print(f"SPERR and TTHRESH need {BASELINES_PYTHON.parent.parent.name}: make it with "
              f"`bash benchmarks/setup_baselines.sh` (or leave them out: --codecs neuralvol sz3 zfp); "
              f"measuring without them", file=sys.stderr)
        wasm = []

    header = HEADER
    if args.from_csv:
        merged: dict = {}
        for path in args.from_csv:
            with open(path, newline="") as fh:
                for r in csv.DictReader(fh):
                    row = {k: _parse(v) for k, v in r.items()}
                    # judge() recomputes the comparison from the merged fields
                    old = merged.setdefault((row.get("volume"), row.get("ratio")), {})
                    old.update({k: v for k, v in row.items() if v is not None or k not in old})
        rows = list(merged.values())
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for r in rows:
            judge(r)
            print(_row_line(r))
        if any("nv_psnr" in r or "nv_error" in r for r in rows):
            print("\n".join(summary_lines(rows)))
        print("\n".join(speed_lines(rows)))
        return 0
    manifest = {e["name"]: e for e in json.loads((args.data / "manifest.json").read_text())}
    names = args.volumes or sorted(manifest)
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    rows = []
    for name in names:
        if name not in manifest:
            print(f"unknown volume {name!r}; known: {', '.join(sorted(manifest))}", file=sys.stderr)
            return 2
        original = np.load(args.data / manifest[name]["file"])
        volume_rows = []
        time_budget = args.large_time_budget if original.size > LARGE_VOXELS else args.time_budget
        constant = psnr(original, cast_to_dtype(np.full(original.shape, original.astype(np.float64).mean()),
                                                 original.dtype))
        budgets = [int(original.nbytes // ratio) for ratio in args.ratios]
        wasm_rows = run_wasm_codecs(original, budgets, wasm) if wasm else {}
        for ratio, budget in zip(args.ratios, budgets):
            row = {"volume": name, "ratio": ratio, "constant_psnr": constant}
            if "neuralvol" in codecs:
                res = run_neuralvol(original, ratio, time_budget, manifest[name].get("spacing_xyz"), args.seed)
                row.update({f"nv_{k}": v for k, v in res.items()})
            if "sz3" in codecs:
                row["sz3_psnr"], row["sz3_bytes"], row["sz3_seconds"] = run_sz3(original, budget)
            if "zfp" in codecs:
                row["zfp_psnr"], row["zfp_bytes"], row["zfp_seconds"] = run_zfp(original, budget)
            for codec in wasm:
                row.update(wasm_rows[codec][budget])
            judge(row)
            rows.append(row)
            volume_rows.append(row)
            print(_row_line(row), flush=True)
        if not args.no_plot:
            png = write_rd_plot(name, volume_rows, args.plot_dir / f"rd_{name}.png", manifest[name],
                                time_budget if "neuralvol" in codecs else None)
            table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            (args.plot_dir / f"rd_{name}.md").write_text(
                f"# {name}\n\n" + "\n".join(table + [_row_line(r) for r in volume_rows] + speed_lines(volume_rows)) +
                f"\n\nneuralvol time budget {time_budget:g} s per ratio, seed {args.seed}.\n\n![{name}]({png.name})\n")
            print(f"plot: {png}", file=sys.stderr)
        if args.csv:   # after every volume, so a long run's finished volumes are kept
            write_csv(args.csv, rows)
    if "neuralvol" in codecs:
        print("\n".join(summary_lines(rows)))
    print("\n".join(speed_lines(rows)))
    return 0


def write_csv(path: Path, rows: list[dict]) -> None:
    keys = sorted({k for r in rows for k in r})
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=keys)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
