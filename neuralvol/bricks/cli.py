"""The command line's bricked compression: ``--brick``, ``--workers``, ``--scheduler``, auto-bricking."""
from __future__ import annotations

import math
import os
import sys
import time


from ..errors import InputError
from .compress import AUTO_BRICK_VOXELS, DEFAULT_BRICK, DEFAULT_OVERLAP, compress_bricked, needs_bricks


def add_brick_arguments(parser) -> None:
    g = parser.add_argument_group("bricks (large volumes)")
    g.add_argument("--brick", type=int, metavar="N",
                   help=f"fit one model per brick of about N^3 voxels (default: bricks of {DEFAULT_BRICK} for "
                        f"volumes over {round(AUTO_BRICK_VOXELS ** (1 / 3))}^3 voxels, one model otherwise)")
    g.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP,
                   help=f"voxels each brick's model covers beyond its core, blended (default {DEFAULT_OVERLAP})")
    g.add_argument("--allocation", default="variance", choices=("variance", "gradient", "equal"),
                   help="how the byte budget is shared between bricks (default variance: by the bricks' variance)")
    where = g.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int,
                       help="Dask LocalCluster worker processes, one thread each (default: the CPU count; "
                            "0 fits the bricks in this process)")
    where.add_argument("--scheduler", metavar="ADDRESS", help="address of a running Dask scheduler (tcp://host:8786)")


def wants_bricks(args, array) -> bool:
    if args.brick is not None:
        return True
    if needs_bricks(array.shape):
        if not args.quiet:
            print(f"neuralvol: {'x'.join(map(str, array.shape[::-1]))} voxels is over {AUTO_BRICK_VOXELS} "
                  f"({round(AUTO_BRICK_VOXELS ** (1 / 3))}^3): compressing in bricks of {DEFAULT_BRICK} "
                  f"(choose with --brick N)", file=sys.stderr)
        args.brick = DEFAULT_BRICK
        return True
    if args.workers is not None or args.scheduler is not None:
        raise InputError("--workers/--scheduler run bricks: add --brick N (or drop them for a single model)")
    return False


def bricked_compress(args, vf) -> int:
    if args.brick is not None and args.brick < 2:
        raise InputError(f"--brick must be at least 2 voxels, got {args.brick}")
    workers = args.workers if args.workers is not None else (None if args.scheduler else os.cpu_count() or 1)
    state = {}

    def progress(done, total, brick):   # the bar appears with the first brick (no empty bar on errors)
        if not args.quiet:
            if "bar" not in state:
                from tqdm import tqdm
                state["bar"] = tqdm(total=total, desc="bricks", unit="brick", file=sys.stderr,
                                    mininterval=0.2 if sys.stderr.isatty() else 5.0)
            bar = state["bar"]
            psnr = brick.get("psnr")
            bar.set_postfix_str(f"last {psnr:.1f} dB" if isinstance(psnr, float) else "", refresh=False)
            bar.update(done - bar.n)
    start = time.perf_counter()
    options = dict(time_budget=args.time_budget, steps=args.steps, seed=args.seed, device=args.device,
                   record_timings=not args.reproducible, encoding=args.encoding, grad_weight=args.grad_weight,
                   precision=args.precision, post_filter=not args.no_post_filter)
    if args.psnr is not None:
        raise InputError("--psnr is not supported with bricks yet; give --ratio, --bpv or --size")
    if args.preset is not None or args.init is not None:
        raise InputError("--preset/--init are not supported with bricks yet; drop them or --brick")
    for flag, value in (("--max-error", args.max_error), ("--importance", args.importance), ("--roi", args.roi)):
        if value is not None:  # a per-brick bound would not hold across the blended overlaps
            raise InputError(f"{flag} is not supported with bricks yet; without --brick it works on volumes "
                             f"up to {round(AUTO_BRICK_VOXELS ** (1 / 3))}^3 voxels")
    try:
        vol = compress_bricked(vf.array, args.brick, spacing=vf.spacing, origin=vf.origin, array_name=vf.array_name,
                               ratio=args.ratio, bpv=args.bpv, size=args.size, overlap=args.overlap,
                               allocation=args.allocation, workers=workers, scheduler=args.scheduler,
                               progress=progress, **options)
    finally:
        if "bar" in state:
            state["bar"].close()
    vol.save(args.output)
    if not hasattr(vol, "layout"):   # it fitted in one brick: a plain one-model file
        if not args.quiet:
            print(f"{args.output}: {vol.nbytes} bytes, ratio {vol.ratio:.1f}:1, one brick (a single model), "
                  f"PSNR {'exact' if vol.training.exact else f'{vol.training.psnr:.2f} dB'}, "
                  f"{time.perf_counter() - start:.1f} s")
        return 0
    if not args.quiet:
        r = vol.report
        psnr = "exact" if vol.training.exact else f"~{vol.training.psnr:.2f} dB (from the bricks)"
        workers_rss = max(r["peak_rss_workers"].values(), default=r["peak_rss_task_max"])
        print(f"{args.output}: {vol.nbytes} bytes, ratio {vol.ratio:.1f}:1, {r['bricks']} bricks "
              f"{'x'.join(map(str, vol.layout.shape))}, PSNR {psnr}, {time.perf_counter() - start:.1f} s; "
              f"peak memory {workers_rss / 2 ** 20:.0f} MiB per worker, {r['peak_rss_client'] / 2 ** 20:.0f} MiB "
              f"client")
    return 0


def bricked_info(path: str, header: dict) -> dict:
    from .volume import read_models
    vol = read_models(path)[0]
    size = os.path.getsize(path)
    models = []
    for i, b in enumerate(vol.bricks):
        cfg = b.config
        models.append({"name": b.info.name, "array_name": b.array_name, "time": b.time, "dims": list(b.dims),
                       "extent": list(b.info.extent), "spacing": list(b.spacing), "origin": list(b.origin),
                       "dtype": b.dtype.name, "value_range": list(b.value_range),
                       "model": {**cfg.to_dict(), "parameters": cfg.n_params},
                       "storage": {**(b.storage.to_dict() if b.storage is not None else {"precision": "float16"}),
                                   "bits_per_parameter": round(8 * _section_bytes(header, i) / max(1, cfg.n_params), 3)},
                       "native_bytes": b.info.native_bytes,
                       "training": {k: v for k, v in b.training.to_dict().items() if k != "curve"}})
        if b.post_filter is not None:
            models[-1]["post_filter"] = b.post_filter.to_dict()
    voxels = math.prod(vol.dims)
    return {"file": path, "bytes": size, "ratio": vol.info.native_bytes / size, "bpv": 8 * size / voxels,
            "format_version": header.get("version"), "library": header.get("library"),
            "bricks": {"dims": list(vol.dims), "grid": list(vol.layout.shape), "overlap": vol.layout.overlap,
                       "blend": vol.layout.blend, "psnr_estimate": vol.training.psnr},
            "models": models}


def _section_bytes(header, i) -> int:
    return sum(e["nbytes"] for e in header.get("sections", []) if e["name"].split("/")[0] == str(i))
