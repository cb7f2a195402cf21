"""Out-of-core I/O: memory of reading a big .raw lazily, decode to zarr (1 and 2 threads),
and the numcodecs codec on a real volume.

    python benchmarks/outofcore.py --quick       # 256^3 raw, 128^3 decode, hydrogen 64^3 in 32^3 chunks
    python benchmarks/outofcore.py               # 512^3 float32 raw (512 MB, in a temp folder), 256^3 decode

The generated field is written to a temporary folder and removed; nothing is committed.
Peak memory: tracemalloc (Python/numpy allocations, which a memory map's pages are not)
and the growth of the process's peak RSS (VmHWM) over the step.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

from neuralvol.bricks.runner import peak_rss_bytes as peak_rss  # noqa: E402  (VmHWM on Linux)


def measure(fn):
    """(result, seconds, tracemalloc peak bytes, peak-RSS growth bytes) of fn()."""
    rss0 = peak_rss()
    tracemalloc.start()
    start = time.perf_counter()
    out = fn()
    secs = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return out, secs, peak, peak_rss() - rss0


def write_field(path: Path, n: int) -> None:
    """A smooth float32 field of n^3, written slab by slab (never whole in memory)."""
    x = np.linspace(0, 4 * np.pi, n, dtype=np.float32)
    with open(path, "wb") as fh:
        for z in range(n):
            fh.write((np.sin(x[None, :] + 0.5 * x[z]) * np.cos(0.7 * x[:, None] - x[z])).astype(np.float32).tobytes())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    import neuralvol as nv
    from neuralvol.lazy_arrays import open_lazy
    n_raw, n_dec = (256, 128) if args.quick else (512, 256)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        raw = tmp / "field.raw"
        write_field(raw, n_raw)
        arr = open_lazy(raw, dims=(n_raw,) * 3, dtype="float32")
        print(f"| step | seconds | tracemalloc peak | peak RSS growth | data bytes |")
        print(f"|---|---|---|---|---|")
        _, s, tm, rss = measure(lambda: open_lazy(raw, dims=(n_raw,) * 3, dtype="float32"))
        print(f"| open {n_raw}^3 float32 .raw lazily | {s:.4f} | {tm} | {rss} | {arr.nbytes} |")
        brick = 64
        _, s, tm, rss = measure(lambda: arr[:brick, :brick, :brick])
        print(f"| read one {brick}^3 brick | {s:.4f} | {tm} | {rss} | {brick ** 3 * 4} |")
        _, s, tm, rss = measure(lambda: [float(arr[z:z + 16].mean()) for z in range(0, n_raw, 16)])
        print(f"| stream all of it in 16-slice slabs | {s:.2f} | {tm} | {rss} | {arr.nbytes} |")
        # decode to zarr: a network fitted to a 64^3 crop, decoded on an n_dec^3 grid
        crop = np.ascontiguousarray(arr[:64, :64, :64])
        vol = nv.compress(crop, ratio=100, steps=200 if args.quick else 600, seed=0)
        dims = (n_dec,) * 3
        vol.decode(dims=dims, region=(0, 7, 0, 7, 0, 7))        # first-call warm-up out of the timings
        nv.decode_to_zarr(vol, tmp / "warm.zarr", chunks=8, region=(0, 7, 0, 7, 0, 7))   # and zarr's import
        for threads in (1, 2):
            _, s, tm, rss = measure(lambda: nv.decode_to_zarr(vol, tmp / f"d{threads}.zarr", chunks=64, dims=dims,
                                                              workers=threads))
            print(f"| decode_to_zarr {n_dec}^3, chunks 64^3, {threads} thread(s) | {s:.2f} | {tm} | {rss} | "
                  f"{n_dec ** 3 * 4} |")
        _, s, tm, rss = measure(lambda: vol.decode(dims=dims))
        print(f"| vol.decode whole {n_dec}^3 (for comparison) | {s:.2f} | {tm} | {rss} | {n_dec ** 3 * 4} |")
        # the codec on a real volume
        from zarr_codec import DEFAULT_VOLUME, run
        volume = np.load(DEFAULT_VOLUME)
        steps = 150 if args.quick else 600
        print()
        print("| zarr format | chunks | steps/chunk | ratio | PSNR dB | write s | read s |")
        print("|---|---|---|---|---|---|---|")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for fmt in (2, 3):
                res = run(volume, tmp / f"c{fmt}.zarr", ratio=50, steps=steps, chunks=32, zarr_format=fmt)
                print(f"| {fmt} | 32^3 | {steps} | {res['ratio']:.1f} | {res['psnr']:.2f} | {res['write_s']:.1f} | "
                      f"{res['read_s']:.2f} |")
        whole = nv.compress(volume, ratio=50, steps=steps * 8, seed=0)
        print(f"\n(hydrogen whole, one network, same ratio, {steps * 8} steps: PSNR "
              f"{whole.training.psnr:.2f} dB, ratio {whole.ratio:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
