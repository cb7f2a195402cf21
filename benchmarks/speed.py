"""Fitting and decode speed on one device, each against the path it replaced, in one run.

Three tables, one row per (volume, ratio):

* **fit**: fitting steps/s (batch 2^13) through the C++ hash-grid kernel, through the same
  kernel without its AVX-512 point blocks (``nv_points_vector(0)``) and through the
  pure-PyTorch path (``kernels.build.pytorch_only()``), same model, same seed;
* **decode**: full-grid seconds and Mvox/s (separable grid; fp32, the default, and
  ``compute="bfloat16"``, whose PSNR cost benchmarks/compute_precision.py measures; on a CPU
  with AMX, bf16 also on AVX512-BF16, ``kernels.mlp.without_amx()``; a filtered file's
  kernel also as PyTorch's sums, ``kernels.postfilter.pytorch_filter()``), the per-voxel gather it
  replaced (``--reference``; slow on 256^3), the features written out whole before the MLP
  (``kernels.mlp.features_then_mlp()``, the path the fused grid + MLP decode replaced), a 1/8 region, one z slice in-process (256^2 on
  a 256^3 volume), the decode with the MLP as torch's GEMMs (the path the fused
  kernel replaced), the physical limit (MLP multiply-adds per voxel / this machine's fastest
  measured rate for a 64 x 64 layer, torch's GEMM or the kernel, fp32 and bf16), and SPERR's decode of the same volume at the same bytes
  (when ``.venv-baselines`` exists, see ``benchmarks/setup_baselines.sh``);
* **ParaView**: ``pvpython`` opening the same model as a file and fetching the image
  (``benchmarks/paraview_fetch.py``; when ParaView and ``.venv-paraview`` exist, see
  ``.ci/setup-paraview.sh``), against the in-process decode in the same ParaView Python;
* **points**: ``sample`` Mpts/s at 2^20 random points, kernel against PyTorch;
* **GPU-resident** (``--device cuda`` only): the full grid decoded into a CUDA tensor
  (``evaluate_grid(..., into=)``, no copy to the host), Gvox/s through the Triton kernel
  and through the PyTorch operations it replaced, fp32 and bf16 MLP.

On CUDA "kernel" means :mod:`neuralvol.kernels.hashgrid_triton` (when Triton is importable)
and fitting batches are 2^18 points; on CPU, the C++ kernel and 2^13.

    .venv/bin/python benchmarks/speed.py --threads 2                # 64^3, 128^3, 256^3 at 100:1 and 800:1
    .venv/bin/python benchmarks/speed.py --quick                    # 64^3 only, few steps
    .venv/bin/python benchmarks/speed.py --device cuda --volumes embryo --ratios 100
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import neuralvol as nv
from neuralvol import fields, fitting
from neuralvol.compress import AUTO_WITH_TIME_BUDGET
from neuralvol.encodings import HASHGRID_CONFIGS
from neuralvol.evaluate import evaluate_grid, evaluate_grid_per_voxel, unit_axis
from neuralvol.kernels import build, hashgrid_triton
from neuralvol.kernels import mlp as mlp_kernel
from neuralvol.kernels import postfilter as postfilter_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))
import rd  # noqa: E402  (the SPERR worker and the volume loader live there)

REPO = Path(__file__).resolve().parents[1]
PV_VENV = REPO / ".venv-paraview"
VOLUMES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "volumes"
DATA = Path(__file__).resolve().parents[1] / "data"
# name -> (file, crop): the 64^3, 128^3 and 256^3 models of the table
PRESETS = {"hydrogen": ("hydrogen", None), "embryo_128": ("embryo", (slice(64, 192),) * 3),
           "embryo": ("embryo", None)}


def load(name: str, extra: Path | None = None) -> np.ndarray:
    stem, crop = PRESETS.get(name, (name, None))
    for folder in ([extra] if extra else []) + [VOLUMES, DATA]:
        if (folder / f"{stem}.npy").exists():
            data = np.load(folder / f"{stem}.npy")
            return np.ascontiguousarray(data[crop]) if crop else data
    raise SystemExit(f"no volume {stem!r} in {VOLUMES} or {DATA}")


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def timed(fn, device: str, repeat: int = 1) -> float:
    """Best of ``repeat`` runs after one warm-up, in seconds."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


def gemm_macs_per_s(width: int, dtype: torch.dtype, device: str) -> dict[str, float]:
    """Measured multiply-adds/s of one hidden layer (``width`` x ``width``) at the decode's
    chunk size: torch's GEMM, and on CPU the fused MLP kernel (that layer plus a 1-output
    layer) where this machine has it. 2^15 rows (8 MB in fp32) stay in the L3 cache, so
    this is the arithmetic's rate; at 2^18 rows the kernel measured 25-35 % lower."""
    k = 1 << 15
    a = torch.randn(k, width, device=device).to(dtype)
    w = torch.randn(width, width, device=device).to(dtype)
    rates = {"torch": k * width * width / timed(lambda: torch.nn.functional.linear(a, w), device, repeat=20)}
    feats = torch.randn(width, k)
    if device == "cpu" and mlp_kernel.usable(feats, dtype):
        weights, bias = [torch.randn(width, width), torch.randn(1, width)], torch.zeros(1)
        seconds = timed(lambda: mlp_kernel.forward(weights, bias, feats, dtype), device, repeat=10)
        rates["kernel"] = feats.shape[1] * width * (width + 1) / seconds
        if dtype == torch.bfloat16 and mlp_kernel.amx():   # the AVX512-BF16 path AMX replaced
            with mlp_kernel.without_amx():
                seconds = timed(lambda: mlp_kernel.forward(weights, bias, feats, dtype), device, repeat=10)
            rates["kernel without AMX"] = feats.shape[1] * width * (width + 1) / seconds
    return rates


def filter_name(vol) -> str:
    return "none" if vol.post_filter is None else vol.post_filter.size


def resident_decode_s(vol, dtype: torch.dtype, device: str) -> float:
    """Best-of-3 seconds to decode the full grid into a tensor on ``device`` (no host copy)."""
    nx, ny, nz = vol.dims
    field = vol.network.to(device)
    comps = () if field.config.n_outputs == 1 else (field.config.n_outputs,)
    into = torch.empty((nz, ny, nx) + comps, dtype=torch.float32, device=device)
    axes = [unit_axis(n, 0, n - 1) for n in (nx, ny, nz)]
    return timed(lambda: evaluate_grid(field, *axes, device=device, dtype=dtype, into=into), device, repeat=3)


def mlp_macs_per_voxel(vol) -> int:
    return sum(int(w.numel()) for w in vol.network.weights)


def fit_steps_per_s(data, ratio: float, steps: int, device: str, encoding: str = "hashgrid") -> tuple[object, float]:
    """The planned model at ``ratio`` and the fitting loop's steps/s on it, timed alone.

    compress's own fit also re-plans the quantisation now and then during its last
    (quantisation-aware) steps: ~20 trial codings on the CPU each, ~6 s of a 300-step
    fit of the 256^3 model whatever the device (measured on the H200 machine: 42.5
    steps/s through compress against 200 for the loop alone), so it is left out here.
    """
    vol = nv.compress(data, ratio=ratio, steps=3, device=device, seed=0, encoding=encoding)   # also compiles Triton's kernels
    target = fields.normalised_target(data, vol.info)
    field = vol.network
    fitting.fit(field, target, steps=3, time_budget=None, device=torch.device(device), seed=0)   # warm-up
    summary = fitting.fit(field, target, steps=steps, time_budget=None, device=torch.device(device), seed=0)
    field.to("cpu")
    return vol, summary.steps / summary.seconds


# The launch environment docs/PARAVIEW.md recommends: pvpython links Debian's OpenBLAS, whose
# sgemm_ then serves torch's fp32 matmuls, and its threads fight torch's spinning OpenMP
# threads for the cores (256^3 embryo decode in pvpython: 11.8-12.4 s default, 5.3-6.0 s
# passive; 4.9-5.3 s in a plain venv).
PARAVIEW_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def paraview_fetch(vol, extra_env: dict | None = None) -> dict | None:
    """Seconds of ParaView's reader on ``vol`` saved as a file (benchmarks/paraview_fetch.py), or
    None without pvpython / .venv-paraview. ParaView's Python uses its own default threads;
    ``extra_env`` is added to its environment."""
    pvpython = shutil.which("pvpython")
    if pvpython is None or not (PV_VENV / "bin" / "python").exists():
        return None
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env.update(PV_VENV=str(PV_VENV), PYTHONPATH=str(REPO / "plugin" / "shim"), **(extra_env or {}))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.nvc"
        vol.save(path)
        proc = subprocess.run([pvpython, str(REPO / "benchmarks" / "paraview_fetch.py"),
                               str(REPO / "plugin" / "neuralvol_paraview.py"), str(path)],
                              capture_output=True, text=True, env=env, timeout=1800)
    line = next((l for l in proc.stdout.splitlines() if l.startswith("PARAVIEW ")), None)
    if line is None:
        return {"failed": (proc.stdout + proc.stderr)[-300:].replace("\n", " ")}
    return {k: float(v) for k, v in (item.split("=") for item in line.split()[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--volumes", nargs="+", default=["hydrogen", "embryo_128", "embryo"])
    parser.add_argument("--ratios", type=float, nargs="+", default=[100, 800])
    parser.add_argument("--steps", type=int, default=300, help="fitting steps per model (the models are only timed)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--reference", action="store_true", help="also time the per-voxel full decode (slow)")
    parser.add_argument("--no-sperr", action="store_true")
    parser.add_argument("--no-paraview", action="store_true", help="skip the pvpython open + fetch column")
    parser.add_argument("--quick", action="store_true", help="64^3 at 100:1, 60 steps")
    parser.add_argument("--volume-dir", type=Path, default=None, help="look here first for NAME.npy")
    parser.add_argument("--encoding", default=AUTO_WITH_TIME_BUDGET, choices=[c.kind for c in HASHGRID_CONFIGS.values()],
                        help=f"the hash-grid kind timed (default {AUTO_WITH_TIME_BUDGET}: what compress plans under "
                             "its default time budget on the CPU; hashgrid is the trilinear grid of --steps)")
    args = parser.parse_args()
    if args.quick:
        args.volumes, args.ratios, args.steps = ["hydrogen"], [100], 60
    if args.threads:
        torch.set_num_threads(args.threads)
    sperr = not args.no_sperr and rd.BASELINES_PYTHON.exists()
    print(f"device {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
          + f", {torch.get_num_threads()} torch threads; encoding {args.encoding}; hash-grid points path: {build.status()}"
          + (f"; Triton {hashgrid_triton.triton.__version__}" if hashgrid_triton.available() else "; no Triton"))
    if not sperr:
        print("SPERR column empty: no .venv-baselines (bash benchmarks/setup_baselines.sh) or --no-sperr")
    rates = {dt: gemm_macs_per_s(64, dt, args.device) for dt in (torch.float32, torch.bfloat16)}
    for dt, name in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        print(f"64 x 64 layer, {name}: " + ", ".join(f"{k} {v / 1e9:.1f} GMAC/s" for k, v in rates[dt].items()))
    gemm = {dt: max(r.values()) for dt, r in rates.items()}   # the limit: the fastest this machine measured

    fit_rows, decode_rows, point_rows, paraview_rows, resident_rows = [], [], [], [], []
    for name in args.volumes:
        data = load(name, args.volume_dir)
        nz, ny, nx = data.shape
        for ratio in args.ratios:
            vol, fast_steps = fit_steps_per_s(data, ratio, args.steps, args.device, args.encoding)
            with build.pytorch_only():
                _, torch_steps = fit_steps_per_s(data, ratio, args.steps, args.device, args.encoding)
            scalar = "—"   # the C++ kernel without its AVX-512 blocks (the path they replaced)
            lib = build.library()
            if args.device == "cpu" and lib is not None and lib.nv_points_vector(-1) == 1:
                lib.nv_points_vector(0)
                try:
                    scalar = f"{fit_steps_per_s(data, ratio, args.steps, args.device, args.encoding)[1]:.1f}"
                finally:
                    lib.nv_points_vector(1)
            params = sum(t.numel() for t in vol.network.parameters())
            fit_rows.append(f"| {name} | {nx}x{ny}x{nz} | {ratio:g} | {params} | {fast_steps:.1f} | {scalar} | "
                            f"{torch_steps:.1f} | {fast_steps / torch_steps:.2f} |")

            decode = lambda: vol.decode(device=args.device, dtype=np.float32)  # noqa: E731
            full_s = timed(decode, args.device, repeat=3)   # best of 3: single runs varied 6.0-10.7 s at 256^3
            bf16_s = timed(lambda: vol.decode(device=args.device, dtype=np.float32, compute="bfloat16"),
                           args.device, repeat=3)
            torch_filter_s = ""   # a filtered file's kernel as PyTorch's class sums: the path the C++ filter replaced
            if vol.post_filter is not None and postfilter_kernel.usable(vol.post_filter.radius):
                with postfilter_kernel.pytorch_filter():
                    torch_filter_s = " / ".join(
                        f"{timed(lambda c=c: vol.decode(dtype=np.float32, compute=c), args.device, repeat=3):.2f}"
                        for c in ("float32", "bfloat16"))
            no_amx_s = ""   # bf16 on AVX512-BF16 where the CPU has AMX: the path the AMX tiles replaced
            if args.device == "cpu" and mlp_kernel.amx():
                with mlp_kernel.without_amx():
                    no_amx_s = f"{timed(lambda: vol.decode(dtype=np.float32, compute='bfloat16'), args.device, repeat=3):.2f}"
            gemm_s = ""   # the MLP as torch's GEMMs, the path the fused kernel replaced (CPU)
            if args.device == "cpu" and mlp_kernel.usable(torch.zeros((1, 1)), torch.float32):
                with mlp_kernel.torch_gemms():
                    gemm_s = " / ".join(
                        f"{timed(lambda c=c: vol.decode(dtype=np.float32, compute=c), args.device, repeat=3):.2f}"
                        for c in ("float32", "bfloat16"))
            unfused_s = ""   # the features written out whole, then the MLP kernel: what grid_forward replaced
            if args.device == "cpu" and mlp_kernel.grid_usable(torch.float32):
                with mlp_kernel.features_then_mlp():
                    unfused_s = " / ".join(
                        f"{timed(lambda c=c: vol.decode(dtype=np.float32, compute=c), args.device, repeat=3):.2f}"
                        for c in ("float32", "bfloat16"))
            reference_s = ""
            if args.reference:
                reference_s = f"{timed(lambda: evaluate_grid_per_voxel(vol.network, *(unit_axis(n, 0, n - 1) for n in vol.dims), device=args.device), args.device):.2f}"
            region = (nx // 4, nx // 4 + nx // 2 - 1, ny // 4, ny // 4 + ny // 2 - 1, nz // 4, nz // 4 + nz // 2 - 1)
            region_s = timed(lambda: vol.decode(region=region, device=args.device, dtype=np.float32), args.device, repeat=3)
            zs = nz // 2
            slice_s = timed(lambda: vol.decode(region=(0, nx - 1, 0, ny - 1, zs, zs), device=args.device,
                                               dtype=np.float32), args.device, repeat=5)
            macs = mlp_macs_per_voxel(vol) * data.size
            limit = {dt: macs / gemm[dt] for dt in gemm}
            sperr_s = ""
            if sperr:
                budget = int(data.nbytes / ratio)
                try:
                    row = rd.run_wasm_codecs(data, [budget], ["sperr"])["sperr"][budget]
                    sperr_s = f"{row['sperr_decode_s']:.2f}" if row.get("sperr_decode_s") is not None else "failed"
                except RuntimeError as exc:
                    sperr_s = f"failed ({exc})"
            decode_rows.append(
                f"| {name} | {ratio:g} | {full_s:.2f} | {data.size / full_s / 1e6:.2f} | {bf16_s:.2f} | "
                f"{data.size / bf16_s / 1e6:.2f} | {filter_name(vol)} | {torch_filter_s} | {no_amx_s} | {unfused_s} | {gemm_s} | {reference_s} | "
                f"{region_s:.3f} | {region_s / full_s:.3f} | {nx}x{ny}: {slice_s * 1e3:.0f} | "
                f"{limit[torch.float32]:.2f} / {limit[torch.bfloat16]:.2f} | {sperr_s} |")

            pv = None if args.no_paraview or args.device != "cpu" else paraview_fetch(vol, PARAVIEW_ENV)
            if pv is not None and "failed" in pv:
                paraview_rows.append(f"| {name} | {ratio:g} | failed: {pv['failed']} | | | | | | |")
            elif pv is not None:
                reader_s = pv["update_s"] + pv["fetch_s"]
                plain = paraview_fetch(vol)
                plain_s = f"{plain['decode_s']:.2f}" if plain and "failed" not in plain else "failed"
                paraview_rows.append(
                    f"| {name} | {ratio:g} | {pv['decode_s']:.2f} | {pv['update_s']:.2f} | {pv['fetch_s']:.2f} | "
                    f"{reader_s / pv['decode_s']:.2f} | {pv['again_s']:.3f} | {pv['direct_s']:.3f} | {plain_s} |")

            points = np.random.default_rng(0).random((1 << 20, 3)) * np.asarray(vol.bounds[1::2])
            sample = lambda: vol.sample(points, device=args.device)  # noqa: E731
            fast_pts = len(points) / timed(sample, args.device)
            with build.pytorch_only():
                torch_pts = len(points) / timed(sample, args.device)
            point_rows.append(f"| {name} | {ratio:g} | {fast_pts / 1e6:.2f} | {torch_pts / 1e6:.2f} | "
                              f"{fast_pts / torch_pts:.2f} |")
            if args.device.startswith("cuda"):
                cells = []
                for dt in (torch.float32, torch.bfloat16):
                    fast = resident_decode_s(vol, dt, args.device)
                    with build.pytorch_only():
                        old = resident_decode_s(vol, dt, args.device)
                    cells.append(f"{fast * 1e3:.1f} | {data.size / fast / 1e9:.2f} | {old * 1e3:.1f} | "
                                 f"{data.size / old / 1e9:.2f}")
                resident_rows.append(f"| {name} | {ratio:g} | " + " | ".join(cells) +
                                     f" | {limit[torch.float32] * 1e3:.2f} / {limit[torch.bfloat16] * 1e3:.2f} |")
            print(f"{name} {ratio:g}:1 done", file=sys.stderr, flush=True)

    print(f"\nFitting (batch 2^{18 if args.device.startswith('cuda') else 13})\n")
    print("| volume | dims | ratio | params | steps/s kernel | steps/s kernel, scalar points | steps/s PyTorch | "
          "speed-up over PyTorch |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(fit_rows))
    print("\nDecode (float32 out; region = the central 1/8; limit = MLP MACs / measured GEMM rate)\n")
    print("| volume | ratio | full s | Mvox/s | full s bf16 | Mvox/s bf16 | post filter | filter in PyTorch s fp32 / bf16 | "
          "bf16 s without AMX | features then MLP s fp32 / bf16 | torch GEMMs s fp32 / bf16 | per-voxel s | "
          "1/8 region s | region / full | z slice ms | limit s fp32 / bf16 | SPERR decode s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(decode_rows))
    if paraview_rows:
        print("\nParaView (pvpython, the model saved as a file; decode = nv.open(file).decode(compute='auto'), the reader's default, in the same "
              "ParaView Python; update = the reader's first UpdatePipeline; fetch = servermanager.Fetch; "
              "again = a second UpdatePipeline with the same request and its fetch; direct = the same with the "
              "image taken from the reader's client-side object instead of Fetch; all with OMP_WAIT_POLICY=PASSIVE, "
              "as docs/PARAVIEW.md says, and the last column's decode without it)\n")
        print("| volume | ratio | decode s | update s | fetch s | (update + fetch) / decode | again s | direct s | "
              "decode s, default OpenMP waits |")
        print("|---|---|---|---|---|---|---|---|---|")
        print("\n".join(paraview_rows))
    if resident_rows:
        print("\nGPU-resident full decode (into a CUDA tensor, no host copy; kernel = Triton, old = the PyTorch "
              "operations; limit = MLP MACs / measured GEMM rate)\n")
        print("| volume | ratio | fp32 ms | Gvox/s | old fp32 ms | old Gvox/s | bf16 ms | Gvox/s | old bf16 ms | "
              "old Gvox/s | limit ms fp32 / bf16 |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        print("\n".join(resident_rows))
    print("\nScattered points (sample, 2^20 random points)\n")
    print("| volume | ratio | Mpts/s kernel | Mpts/s PyTorch | speed-up |")
    print("|---|---|---|---|---|")
    print("\n".join(point_rows))


if __name__ == "__main__":
    main()
