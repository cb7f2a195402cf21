"""Store a real volume in zarr with neuralvol as the per-chunk codec, read it back, measure.

    python examples/zarr_codec.py                      # hydrogen 64^3, chunks 32^3, ratio 50, zarr v3
    python examples/zarr_codec.py --zarr-format 2 --volume ../shared/data/volumes/viscous_fingers_t99.npy
    python examples/zarr_codec.py --quick              # a 32^3 crop, few steps (what the test runs)

Prints the ratio (native bytes over the bytes of the chunk files), the PSNR of the
read-back array against the original, and the write and read seconds.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_VOLUME = HERE.parent.parent / "shared" / "data" / "volumes" / "hydrogen.npy"
METADATA_FILES = {"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"}


def chunk_bytes(store: Path) -> int:
    """Bytes of the chunk files of a local zarr store (metadata documents left out)."""
    return sum(f.stat().st_size for f in store.rglob("*") if f.is_file() and f.name not in METADATA_FILES)


def run(volume: np.ndarray, store: Path, ratio: float = 50.0, steps: int = 300, chunks: int = 32,
        zarr_format: int = 3, seed: int = 0) -> dict:
    """Write ``volume`` to a zarr array at ``store`` with the neuralvol codec and read it back."""
    import zarr
    import neuralvol.numcodecs as nv_codecs
    from neuralvol.metrics import psnr

    kwargs = dict(ratio=ratio, steps=steps, seed=seed)
    if zarr_format == 2:
        codecs = {"compressors": nv_codecs.NeuralVolCodec(**kwargs)}
    else:
        with warnings.catch_warnings():   # "numcodecs codecs are not in the zarr v3 spec": known, said in the docs
            warnings.simplefilter("ignore")
            codecs = {"serializer": nv_codecs.NeuralVolZarr3Codec(**kwargs), "compressors": None}
    start = time.perf_counter()
    array = zarr.create_array(store=str(store), shape=volume.shape, chunks=(chunks,) * 3, dtype=volume.dtype,
                              zarr_format=zarr_format, fill_value=0, **codecs)
    array[...] = volume
    write_s = time.perf_counter() - start
    start = time.perf_counter()
    back = zarr.open_array(str(store), mode="r")[...]
    read_s = time.perf_counter() - start
    stored = chunk_bytes(store)
    return {"shape": volume.shape, "dtype": volume.dtype.name, "chunks": chunks, "zarr_format": zarr_format,
            "stored_bytes": stored, "ratio": volume.nbytes / stored, "psnr": psnr(volume, back),
            "write_s": write_s, "read_s": read_s, "back": back}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", default=str(DEFAULT_VOLUME), help=".npy volume [z, y, x] (default hydrogen 64^3)")
    parser.add_argument("--ratio", type=float, default=50.0, help="ratio of each chunk (default 50)")
    parser.add_argument("--steps", type=int, default=300, help="fitting steps per chunk (default 300)")
    parser.add_argument("--chunks", type=int, default=32, help="chunk edge (default 32)")
    parser.add_argument("--zarr-format", type=int, default=3, choices=(2, 3))
    parser.add_argument("--out", help="the store to write (default: a temporary folder, removed after)")
    parser.add_argument("--quick", action="store_true", help="a 32^3 crop and 40 steps per chunk of 16^3")
    args = parser.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    volume = np.load(args.volume, mmap_mode="r")
    if args.quick:
        volume, args.steps, args.chunks = volume[16:48, 16:48, 16:48], 40, 16
    volume = np.ascontiguousarray(volume)
    folder = None if args.out else tempfile.mkdtemp()
    store = Path(args.out) if args.out else Path(folder) / "volume.zarr"
    try:
        res = run(volume, store, args.ratio, args.steps, args.chunks, args.zarr_format)
    finally:
        if folder:
            shutil.rmtree(folder, ignore_errors=True)
    nz, ny, nx = res["shape"]
    print(f"{Path(args.volume).stem} {nx}x{ny}x{nz} {res['dtype']}, zarr v{res['zarr_format']}, chunks "
          f"{res['chunks']}^3: {res['stored_bytes']} bytes, ratio {res['ratio']:.1f}:1, PSNR {res['psnr']:.2f} dB, "
          f"write {res['write_s']:.1f} s, read {res['read_s']:.2f} s")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, os.fspath(HERE.parent))
    sys.exit(main())
