"""The ``neuralvol`` command: compress, decompress, inspect and report on `.nvc` files.

Exit status: 0 success, 2 bad input or usage (one line on stderr), 1 internal error.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

from .arithmetic import COMPUTE_CHOICES
from .errors import NeuralVolError
from .postfilter import PostFilter


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2, like every other bad-input error
        self.exit(2, f"{self.prog}: error: {message}\n")


def _progress_bar(enabled: bool):
    """A tqdm bar fed by fitting progress, created on the first report (so input errors
    found before fitting print no empty bar). Returns (callback, close)."""
    if not enabled:
        return None, lambda: None
    from tqdm import tqdm
    state = {}

    def update(p):
        bar = state.get("bar")
        if bar is None:
            bar = state["bar"] = tqdm(total=1000, desc="fitting", file=sys.stderr,
                                      bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed}<{remaining} {postfix}",
                                      mininterval=0.2 if sys.stderr.isatty() else 5.0)
        bar.set_postfix_str(f"step {p.step}, ~{p.psnr:.1f} dB", refresh=False)
        bar.update(int(p.fraction * 1000) - bar.n)

    def close():
        if "bar" in state:
            state["bar"].close()
    return update, close


def cmd_compress(args) -> int:
    from . import compress
    from .importance import load_importance
    from .series import cmd_compress_many, is_many
    from .volume_io import read_volume
    if is_many(args):  # several inputs, a glob, a .pvd or several --array: one model each
        return cmd_compress_many(args, _progress_bar)
    args.input, args.array = args.inputs[0], (args.array or [None])[0]
    # lazy: .raw/.npy/zarr/HDF5 stay on disk until the fit (or a brick) reads them
    vf = read_volume(args.input, array_name=args.array, dims=args.dims, dtype=args.dtype, lazy=True)
    from .bricks.cli import bricked_compress, wants_bricks
    if wants_bricks(args, vf.array):
        return bricked_compress(args, vf)
    importance = load_importance(args.importance) if args.importance else None
    update, close = _progress_bar(not args.quiet)
    start = time.perf_counter()
    try:
        vol = compress(vf.array, spacing=vf.spacing, origin=vf.origin, array_name=vf.array_name,
                       max_error=args.max_error, importance=importance, roi=args.roi, roi_weight=args.roi_weight,
                       ratio=args.ratio, bpv=args.bpv, size=args.size, time_budget=args.time_budget,
                       steps=args.steps, psnr=args.psnr, seed=args.seed, device=args.device,
                       progress=update, record_timings=not args.reproducible,
                       encoding=args.encoding, grad_weight=args.grad_weight,
                       preset=args.preset, init=args.init, precision=args.precision,
                       component_names=vf.component_names, post_filter=not args.no_post_filter)
    finally:
        close()
    vol.save(args.output)
    if not args.quiet:
        t = vol.training
        psnr = "exact" if t.exact else f"{t.psnr:.2f} dB"
        print(f"{args.output}: {vol.nbytes} bytes, ratio {vol.ratio:.1f}:1, PSNR {psnr}, "
              f"{t.steps} steps, {time.perf_counter() - start:.1f} s on {t.device}")
        if vol.search:
            print("searched ratios: " + ", ".join(f"{r:g}:1 -> {p:.2f} dB" for r, p in vol.search))
        if vol.correction is not None:
            n = vol.correction.count
            print(f"error bound {vol.max_error:g}: {n} voxels corrected ({100 * n / max(1, int(np.prod(vol.dims))):.2f} %)")
            if getattr(vol, "bound_search", None):
                print("searched network ratios: " + ", ".join(
                    f"{r:g}:1 -> file {vol.info.native_bytes / b:.1f}:1" for r, b in vol.bound_search))
        if vol.n_components > 1:
            from .fields import component_report
            print(component_report(vol, np.asarray(vf.array)))
    t = vol.training
    if args.psnr is not None and not t.exact and (t.psnr or 0) < args.psnr:
        print(f"warning: target PSNR {args.psnr} dB not reached within the budget (best {t.psnr:.2f} dB); "
              f"kept the best file found", file=sys.stderr)
    return 0


def cmd_meta_train(args) -> int:
    import torch
    from .meta import meta_train
    from .volume_io import read_volume
    from pathlib import Path
    if args.threads:
        torch.set_num_threads(args.threads)
    arrays = [read_volume(p, array_name=args.array).array for p in args.inputs]
    names = [Path(p).stem for p in args.inputs]

    def progress(done, total, secs):
        if not args.quiet and (done % 20 == 0 or done == total):
            print(f"outer step {done}/{total}, {secs:.0f} s", file=sys.stderr)
    init = meta_train(arrays, args.preset, outer_steps=args.outer_steps, inner_steps=args.inner_steps,
                      outer_lr=args.outer_lr, time_budget=args.time_budget, seed=args.seed, names=names,
                      learn_table=args.learn_table, progress=progress)
    init.save(args.output)
    if not args.quiet:
        t = init.training
        print(f"{args.output}: preset {init.preset}, {os.path.getsize(args.output)} bytes, "
              f"{t['outer_steps']} outer x {t['inner_steps']} inner steps, {t['seconds']} s")
    return 0


def cmd_study_meta(args) -> int:
    from .study.meta import main as study_meta_main
    return study_meta_main(args)


def _decode_dims(vol, args):
    if args.scale is None and args.out_dims is None:
        return None
    return vol.output_dims(args.out_dims, args.scale)


def cmd_decompress(args) -> int:
    from . import open as open_nvc
    from .volume_io import write_volume
    vol = open_nvc(args.input, model=args.model)
    dims = _decode_dims(vol, args)
    from .lazy_arrays import source_kind
    if source_kind(args.output) in ("zarr", "hdf5"):
        return _decompress_chunked(vol, dims, args, source_kind(args.output))
    values = vol.decode(dims=dims, region=args.region, compute=args.compute)
    spacing = vol.grid_spacing(dims) if dims is not None else vol.spacing
    origin = list(vol.origin)
    if args.region is not None:
        origin = [o + s * args.region[2 * a] for a, (o, s) in enumerate(zip(vol.origin, spacing))]
    write_volume(args.output, values, spacing=spacing, origin=origin, array_name=vol.array_name)
    if not args.quiet:
        nz, ny, nx = values.shape[:3]
        comps = f" x {values.shape[3]} components" if values.ndim == 4 else ""
        print(f"{args.output}: {nx}x{ny}x{nz}{comps} {values.dtype}")
    return 0


def _decompress_chunked(vol, dims, args, kind: str) -> int:
    """Decode chunk by chunk into a zarr store or HDF5 file (see neuralvol.zarr_output)."""
    from .zarr_output import decode_to_hdf5, decode_to_zarr
    bar = None
    if not args.quiet:
        from tqdm import tqdm
        bar = tqdm(total=1000, desc="decoding chunks", file=sys.stderr, bar_format="{desc}: {percentage:3.0f}%|{bar}| "
                   "{elapsed}<{remaining}", mininterval=0.2 if sys.stderr.isatty() else 5.0)
    write = decode_to_zarr if kind == "zarr" else decode_to_hdf5
    try:
        write(vol, args.output, chunks=args.chunks, dims=dims, region=args.region, workers=args.workers,
              progress=None if bar is None else (lambda f: bar.update(int(f * 1000) - bar.n)))
    finally:
        if bar is not None:
            bar.close()
    if not args.quiet:
        d = vol.output_dims(dims) if args.region is None else [args.region[2 * a + 1] - args.region[2 * a] + 1
                                                               for a in range(3)]
        print(f"{args.output}: {'x'.join(map(str, d))} {vol.dtype}, chunks of {args.chunks}")
    return 0


def _is_correction(section_name: str) -> bool:
    from .error_bound import POSITIONS, VALUES
    return section_name.split("/")[-1] in (POSITIONS, VALUES)


def info_dict(path: str) -> dict:
    from . import open_all, read_header
    header = read_header(path)
    if "bricks" in header:
        from .bricks.cli import bricked_info
        return bricked_info(path, header)
    volumes = open_all(path)
    size = os.path.getsize(path)
    models = []
    coded = {e["name"]: e for e in header.get("sections", [])}
    for i, vol in enumerate(volumes):
        cfg = vol.config
        storage = vol.storage.to_dict() if vol.storage is not None else {"precision": "float16"}
        section_bytes = sum(e["nbytes"] for name, e in coded.items()
                            if name.split("/")[0] == str(i) and not _is_correction(name))
        storage["bits_per_parameter"] = round(8 * section_bytes / max(1, cfg.n_params), 3)
        models.append({
            "name": vol.info.name, "array_name": vol.array_name, "time": vol.time,
            "dims": list(vol.dims), "spacing": list(vol.spacing), "origin": list(vol.origin),
            "dtype": vol.dtype.name, "value_range": list(vol.value_range),
            "model": {**cfg.to_dict(), "parameters": cfg.n_params}, "storage": storage,
            "native_bytes": vol.info.native_bytes,
            "components": None if vol.info.components is None else [
                {"name": n, "value_range": list(r)} for n, r in vol.info.components],
            "training": {k: v for k, v in vol.training.to_dict().items() if k != "curve"},
        })
        if vol.post_filter is not None:
            models[-1]["post_filter"] = vol.post_filter.to_dict()
        if vol.correction is not None:
            models[-1]["error_bound"] = {**vol.correction.entry(), "bytes": sum(
                coded[f"{i}/{name}"]["nbytes"] for name in vol.correction.symbol_arrays() if f"{i}/{name}" in coded),
                "bounded": "original grid points only"}
    native = sum(m["native_bytes"] for m in models)
    return {"file": path, "bytes": size, "ratio": native / size, "bpv": 8 * size / max(1, sum(
        int(np.prod(m["dims"])) for m in models)), "format_version": header.get("version"),
        "library": header.get("library"), "models": models}


_ENCODING_KEYS = {"n_levels": "L", "n_features": "F", "table_size": "T", "base_resolution": "N0",
                  "finest_resolution": "Nmax", "n_frequencies": "frequencies"}


def _describe_encoding(enc: dict) -> str:
    parts = [f"{short}={enc[key]}" for key, short in _ENCODING_KEYS.items() if key in enc]
    return " ".join([str(enc.get("type"))] + parts)


def cmd_info(args) -> int:
    info = info_dict(args.input)
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    print(f"{info['file']}: {info['bytes']} bytes, ratio {info['ratio']:.1f}:1, {info['bpv']:.3f} bits/voxel, "
          f"format v{info['format_version']} ({info['library']})")
    if "bricks" in info:
        b = info["bricks"]
        print(f"  {'x'.join(map(str, b['dims']))} voxels in {'x'.join(map(str, b['grid']))} bricks, overlap "
              f"{b['overlap']} ({b['blend']} blend), PSNR ~{b['psnr_estimate']} dB (from the bricks)")
    for i, m in enumerate(info["models"]):
        enc, net, t = m["model"]["encoding"], m["model"]["network"], m["training"]
        psnr = "exact" if t.get("exact") else (f"{t['psnr']:.2f} dB" if isinstance(t.get("psnr"), (int, float)) else "?")
        time_txt = f" time {m['time']}" if m["time"] is not None else ""
        print(f"  model {i}: {m['array_name']!r}{time_txt} dims {'x'.join(map(str, m['dims']))} {m['dtype']} "
              f"range [{m['value_range'][0]:g}, {m['value_range'][1]:g}]")
        print(f"    spacing {tuple(m['spacing'])} origin {tuple(m['origin'])}")
        if m.get("components"):
            print(f"    {len(m['components'])} components: " + ", ".join(
                f"{c['name'] or c_i} [{c['value_range'][0]:g}, {c['value_range'][1]:g}]"
                for c_i, c in enumerate(m["components"])))
        print(f"    {_describe_encoding(enc)}; MLP {net['hidden_layers']}x{net['width']}; "
              f"{m['model']['parameters']} parameters, {m['storage']['precision']} "
              f"({m['storage']['bits_per_parameter']:.2f} bits each)")
        secs = t.get("seconds")
        if "post_filter" in m:
            kernel = PostFilter.from_dict(m["post_filter"])
            print(f"    post filter: a {kernel.size} kernel on the original grid (other grids and sampled "
                  f"points add its correction interpolated from the original nodes around them)")
        if "error_bound" in m:
            b = m["error_bound"]
            print(f"    error bound {b['max_error']:g} at original grid points only (other resolutions and "
                  f"sampled points are not bounded); {b['count']} corrected voxels, {b['bytes']} bytes")
        if "steps" in t:
            timing = f", {secs:.1f} s" if isinstance(secs, (int, float)) else ""
            print(f"    PSNR {psnr} after {t.get('steps')} steps{timing} on {t.get('device')} (seed {t.get('seed')})")
        else:
            print(f"    PSNR {psnr} (a small file records no fitting details)")
    return 0


def cmd_report(args) -> int:
    from .report import make_report
    from .volume import open as open_nvc
    if open_nvc(args.input, model=args.model).n_components > 1:
        raise NeuralVolError(f"{args.input}: report draws scalar fields; this model has several components "
                             f"(decompress it and look at one component, or use neuralvol info)")
    numbers = make_report(args.input, args.original, args.output, model=args.model, array_name=args.array,
                          dims=args.dims, dtype=args.dtype, cmap=args.cmap, dpi=args.dpi)
    if args.json:
        print(json.dumps(numbers, indent=2))
    elif not args.quiet:
        psnr = "exact" if numbers.get("exact") else (f"{numbers['psnr']:.2f} dB" if numbers.get("psnr") is not None
                                                     else "n/a (no --original)")
        extra = (f", max error {numbers['max_error']:.4g}, SSIM {numbers['ssim']:.4f}"
                 if "max_error" in numbers else "")
        print(f"{args.output}: ratio {numbers['ratio']:.1f}:1, {numbers['bits_per_voxel']:.3f} bits/voxel, "
              f"PSNR {psnr}{extra}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="neuralvol", description="Neural compression of volumetric data (.nvc files).")
    from .compress import PRECISIONS
    from .encodings import ENCODING_KINDS
    from .fitting import DEVICES
    from .version import LIBRARY_VERSION
    parser.add_argument("--version", action="version", version=f"neuralvol {LIBRARY_VERSION}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    c = sub.add_parser("compress", help="fit a network to a volume and write an .nvc file")
    c.add_argument("inputs", nargs="+", metavar="input",
                   help=".npy, .raw, .vti, .mha/.mhd, .nrrd/.nhdr, .nii/.nii.gz, a zarr array (store.zarr or "
                        "store.zarr:group/array) or an HDF5 dataset (file.h5:/group/dataset); several files, a glob "
                        "or a .pvd make a time series (one warm-started model per step)")
    c.add_argument("output", help="the .nvc file to write")
    rate = c.add_mutually_exclusive_group()
    rate.add_argument("--ratio", type=float, help="native bytes / file bytes (default 100)")
    rate.add_argument("--bpv", type=float, help="bits per voxel of the whole file")
    rate.add_argument("--size", type=int, help="file size in bytes")
    c.add_argument("--time-budget", type=float,
                   help="seconds for the whole compression, bricks included (default: 60 unless --steps; in "
                        "bricks, 60 for each brick)")
    c.add_argument("--steps", type=int, help="maximum fitting steps")
    c.add_argument("--psnr", type=float,
                   help="target PSNR (dB): alone, the smallest file that reaches it within the time budget; "
                        "with --ratio/--bpv/--size, stop fitting early once it is reached")
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--precision", default="quantised", choices=PRECISIONS,
                   help="quantised: entropy-coded integer weights sized to the budget (default); "
                        "float16: plain half floats (format version 1, readable by older neuralvol)")
    c.add_argument("--encoding", default="auto",
                   choices=("auto",) + ENCODING_KINDS,
                   help="input encoding; every kind meets the same size budget. auto (default): "
                        "hashgrid_quadratic (B-spline levels) under a time budget on the CPU, else "
                        "hashgrid (trilinear)")
    c.add_argument("--no-post-filter", action="store_true",
                   help="store no post filter (by default a 3x3x3 or 5x5x5 kernel is fitted and kept where it "
                        "gains more than its bytes cost; a file with one decodes other grids than the "
                        "original, and points, by also evaluating the original grid's nodes around them)")
    c.add_argument("--grad-weight", type=float, default=0.0,
                   help="weight of the finite-difference gradient loss (default 0: off)")
    c.add_argument("--max-error", type=float, metavar="E",
                   help="guarantee |decoded - original| <= E at every voxel of the original grid (corrections "
                        "are stored for the voxels the network misses; 0 on integer data: lossless); "
                        "without a ratio/bpv/size the network's ratio is searched")
    c.add_argument("--importance", metavar="MASK.npy",
                   help="weight volume (.npy, the input's [z, y, x] shape, >= 0): fit harder where it is high")
    c.add_argument("--roi", type=int, nargs=6, action="append", metavar=("X0", "X1", "Y0", "Y1", "Z0", "Z1"),
                   help="inclusive index box fitted with --roi-weight (repeatable)")
    c.add_argument("--roi-weight", type=float, help="importance of the --roi boxes against 1 elsewhere (default 10)")
    c.add_argument("--device", default="auto", choices=DEVICES)
    c.add_argument("--array", action="append",
                   help="point-data array to compress (VTK formats), or the array/dataset of a zarr store or HDF5 "
                        "file given without one; repeat for several arrays in one file")
    c.add_argument("--dims", type=int, nargs=3, metavar=("X", "Y", "Z"), help="dimensions of a .raw input")
    c.add_argument("--dtype", help="dtype of a .raw input (e.g. int16, float32)")
    c.add_argument("--reproducible", action="store_true",
                   help="leave wall-clock times out of the file: same seed and steps give identical bytes")
    c.add_argument("--preset", help="fixed network preset (small, medium, large) instead of sizing to the budget")
    c.add_argument("--init", help="start from a meta-learned initialisation (.nvinit); implies its preset")
    from .bricks.cli import add_brick_arguments
    add_brick_arguments(c)
    c.add_argument("-q", "--quiet", action="store_true")
    c.set_defaults(func=cmd_compress)

    m = sub.add_parser("meta-train", help="learn a network initialisation (.nvinit) from volumes with Reptile")
    m.add_argument("inputs", nargs="+", metavar="VOL")
    m.add_argument("--preset", default="small", help="network preset the init is for (default small)")
    m.add_argument("-o", "--output", required=True, help="the .nvinit file to write")
    m.add_argument("--outer-steps", type=int, default=1000)
    m.add_argument("--inner-steps", type=int, default=150,
                   help="Adam steps per task (default 150: as many as the fits the init is for)")
    m.add_argument("--outer-lr", type=float, default=1.0, help="Reptile step size, annealed linearly to 0")
    m.add_argument("--learn-table", action="store_true",
                   help="meta-learn the encoding's table too (default: the MLP only; the table starts near zero)")
    m.add_argument("--time-budget", type=float, help="seconds of meta-training at most")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    m.add_argument("--array", help="point-data array (VTK formats)")
    m.add_argument("-q", "--quiet", action="store_true")
    m.set_defaults(func=cmd_meta_train)

    d = sub.add_parser("decompress", help="decode an .nvc file to .npy, .raw, .vti, a zarr store (out.zarr) "
                                          "or an HDF5 file (out.h5[:/dataset]), the last two chunk by chunk")
    d.add_argument("input")
    d.add_argument("output")
    d.add_argument("--scale", type=float, help="resolution factor over the original dims (e.g. 0.5, 2)")
    d.add_argument("--dims", dest="out_dims", type=int, nargs=3, metavar=("X", "Y", "Z"), help="output resolution")
    d.add_argument("--region", type=int, nargs=6, metavar=("X0", "X1", "Y0", "Y1", "Z0", "Z1"),
                   help="inclusive index extent of the output grid")
    d.add_argument("--model", type=int, default=0, help="which model of a multi-model file")
    d.add_argument("--compute", choices=COMPUTE_CHOICES, default=COMPUTE_CHOICES[0],
                   help="MLP arithmetic: float32 (default), bfloat16 (faster on CPUs with AVX512-BF16 "
                        "or AMX), auto (bfloat16 where measured harmless; see NeuralVolume.decode); "
                        "zarr/HDF5 output is float32")
    d.add_argument("--chunks", type=int, default=64,
                   help="zarr/HDF5 output: chunk edge in voxels, one decode per chunk (default 64)")
    d.add_argument("--decode-threads", dest="workers", type=int,
                   help="zarr/HDF5 output: chunks decoded in parallel (default: CPUs, at most 8)")
    d.add_argument("-q", "--quiet", action="store_true")
    d.set_defaults(func=cmd_decompress)

    i = sub.add_parser("info", help="describe an .nvc file")
    i.add_argument("input")
    i.add_argument("--json", action="store_true")
    i.set_defaults(func=cmd_info)

    r = sub.add_parser("report", help="draw original / decoded / error slices, error histogram and numbers to a PNG")
    r.add_argument("input", help="the .nvc file")
    r.add_argument("--original", help="the uncompressed volume (.npy, .raw, .vti, ...); without it only the "
                                      "decoded slices, the fitting curve and the file's numbers are drawn")
    r.add_argument("-o", "--output", default="report.png", help="the picture to write (default report.png)")
    r.add_argument("--array", help="point-data array of the original (VTK formats)")
    r.add_argument("--dims", type=int, nargs=3, metavar=("X", "Y", "Z"), help="dimensions of a .raw original")
    r.add_argument("--dtype", help="dtype of a .raw original")
    r.add_argument("--model", type=int, default=0, help="which model of a multi-model file")
    r.add_argument("--cmap", help="matplotlib colour map of the value slices (default gray for integer data, "
                                  "viridis for floats)")
    r.add_argument("--dpi", type=int, default=100)
    r.add_argument("--json", action="store_true", help="print the numbers as JSON")
    r.add_argument("-q", "--quiet", action="store_true")
    r.set_defaults(func=cmd_report)

    s = sub.add_parser("study", help="regenerate the tables of docs/STUDY.md")
    study = s.add_subparsers(dest="study", required=True, parser_class=_Parser)
    e = study.add_parser("encodings", help="every input encoding at the same file size and time budget")
    e.add_argument("volumes", nargs="+", metavar="VOL")
    e.add_argument("--ratio", type=float, default=100.0)
    e.add_argument("--time-budget", type=float, default=20.0, help="seconds per encoding and volume")
    e.add_argument("--encodings", nargs="+", default=None,
                   choices=ENCODING_KINDS)
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("-o", "--output", default="study_out", help="folder for the PNGs (default study_out)")
    e.set_defaults(func=cmd_study_encodings)
    g = study.add_parser("gradloss", help="PSNR and gradient error for a few gradient-loss weights")
    g.add_argument("volumes", nargs="+", metavar="VOL")
    g.add_argument("--weights", type=float, nargs="+", default=[0.0, 1.0, 10.0])
    g.add_argument("--ratio", type=float, default=100.0)
    g.add_argument("--time-budget", type=float, default=20.0, help="seconds per weight and volume")
    g.add_argument("--encoding", default="hashgrid",
                   choices=ENCODING_KINDS)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("-o", "--output", default="study_out", help="folder for the PNGs (default study_out)")
    g.set_defaults(func=cmd_study_gradloss)
    st = study.add_parser("meta", help="random vs intra- vs inter-domain initialisations on held-out volumes")
    st.add_argument("--inits", nargs="+", default=["data/inits/medical.nvinit", "data/inits/simulation.nvinit"],
                    help="init files, named by domain (stem = domain)")
    st.add_argument("--volumes", nargs="+", required=True, metavar="DOMAIN=VOL",
                    help="held-out volumes with their domain, e.g. medical=data/headsq_quarter.npy")
    st.add_argument("--steps", type=int, default=150)
    st.add_argument("--target", nargs="+", metavar="VOLNAME=DB", default=[],
                    help="target PSNR per volume (stem=dB); default: random init's PSNR after --steps")
    st.add_argument("--max-steps", type=int, default=600, help="step cap when measuring time to target")
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("-o", "--output", default="docs/study/meta", help="output prefix (.md, .json, .png)")
    st.set_defaults(func=cmd_study_meta)
    return parser


def _echo_err(msg):
    print(msg, file=sys.stderr)


def cmd_study_encodings(args) -> int:
    import torch
    from .encodings import ENCODING_KINDS
    from .study import run_encodings_study
    torch.set_num_threads(1)
    res = run_encodings_study(args.volumes, ratio=args.ratio, time_budget=args.time_budget,
                              encodings=args.encodings or ENCODING_KINDS, output_dir=args.output, seed=args.seed,
                              echo=_echo_err)
    print(res["table"])
    return 0


def cmd_study_gradloss(args) -> int:
    import torch
    from .study import run_gradloss_study
    torch.set_num_threads(1)
    res = run_gradloss_study(args.volumes, weights=args.weights, ratio=args.ratio, time_budget=args.time_budget,
                             encoding=args.encoding, output_dir=args.output, seed=args.seed, echo=_echo_err)
    print(res["table"])
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except NeuralVolError as exc:
        print(f"neuralvol: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("neuralvol: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - the last resort: say it is ours, keep it short
        print(f"neuralvol: internal error: {type(exc).__name__}: {exc} (please report this)", file=sys.stderr)
        if os.environ.get("NEURALVOL_DEBUG"):
            raise
        return 1


if __name__ == "__main__":
    sys.exit(main())
