"""Decoding a volume chunk by chunk into a zarr array or an HDF5 dataset.

Each output chunk is one ``vol.decode(dims=..., region=...)`` call, so memory holds a few
chunks (one per worker thread), never the whole volume; the network's evaluation runs in
torch and releases the GIL, so a thread pool decodes chunks in parallel. The result
appears atomically: a zarr store is built in a temporary folder beside the target and
renamed onto it, an HDF5 file in a temporary file; a failure or an interrupt leaves
nothing behind. Attributes ``spacing``, ``origin`` (x, y, z) and ``array_name`` say where
the grid lives, the same names :mod:`neuralvol.lazy_arrays` reads back.
"""
from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .errors import InputError
from .lazy_arrays import NAME_ATTR, ORIGIN_ATTR, SPACING_ATTR, import_h5py, import_zarr, split_source

DEFAULT_CHUNK = 64


def default_workers() -> int:
    """Decoding threads when none are asked for: the CPUs this process may use, at most 8."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(8, cpus))


def _chunk_shape(chunks, shape) -> tuple[int, int, int]:
    if chunks is None:
        chunks = DEFAULT_CHUNK
    if np.isscalar(chunks):
        chunks = (chunks,) * 3
    try:
        out = tuple(int(c) for c in chunks)
    except (TypeError, ValueError):
        raise InputError(f"chunks must be an integer or three integers (z, y, x), got {chunks!r}") from None
    if len(out) != 3 or any(c < 1 for c in out):
        raise InputError(f"chunks must be an integer or three positive integers (z, y, x), got {chunks!r}")
    return tuple(min(c, n) for c, n in zip(out, shape))


class _Plan:
    """The output grid of ``vol`` (dims, region) cut into chunk-aligned blocks."""

    def __init__(self, vol, dims, region, scale, chunks):
        from .volume import validate_region
        self.dims = vol.output_dims(dims, scale)
        self.region = ((0, self.dims[0] - 1, 0, self.dims[1] - 1, 0, self.dims[2] - 1) if region is None
                       else validate_region(region, self.dims))
        r = self.region
        self.shape = (r[5] - r[4] + 1, r[3] - r[2] + 1, r[1] - r[0] + 1)       # z, y, x
        self.chunks = _chunk_shape(chunks, self.shape)
        spacing = vol.grid_spacing(self.dims)
        self.spacing = tuple(float(s) for s in spacing)
        self.origin = tuple(float(o + s * r[2 * a]) for a, (o, s) in enumerate(zip(vol.origin, spacing)))
        self.array_name = vol.array_name

    def blocks(self):
        """(array slices z, y, x; the decode region x0, x1, y0, y1, z0, z1 of the grid), z-major."""
        starts = [range(0, n, c) for n, c in zip(self.shape, self.chunks)]
        for z0, y0, x0 in itertools.product(*starts):
            z1, y1, x1 = (min(s + c, n) for s, c, n in zip((z0, y0, x0), self.chunks, self.shape))
            r = self.region
            yield ((slice(z0, z1), slice(y0, y1), slice(x0, x1)),
                   (r[0] + x0, r[0] + x1 - 1, r[2] + y0, r[2] + y1 - 1, r[4] + z0, r[4] + z1 - 1))

    @property
    def n_blocks(self) -> int:
        return int(np.prod([-(-n // c) for n, c in zip(self.shape, self.chunks)]))

    def attributes(self) -> dict:
        return {SPACING_ATTR: list(self.spacing), ORIGIN_ATTR: list(self.origin), NAME_ATTR: self.array_name}


def _run_blocks(plan: _Plan, decode_block: Callable, write: Callable, workers: int, write_in_workers: bool,
                progress: Callable[[float], object] | None) -> None:
    """Decode every block on ``workers`` threads with at most ``2 * workers`` blocks alive,
    writing each in its worker (zarr: chunks are independent) or here (h5py: one writer)."""
    total = plan.n_blocks
    done = 0
    blocks = iter(plan.blocks())

    def task(block):
        slices, region = block
        values = decode_block(region)
        if write_in_workers:
            write(slices, values)
            return None
        return slices, values

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="neuralvol-decode") as pool:
        pending = set()
        try:
            while True:
                while len(pending) < 2 * workers:
                    block = next(blocks, None)
                    if block is None:
                        break
                    pending.add(pool.submit(task, block))
                if not pending:
                    break
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    result = future.result()
                    if result is not None:
                        write(*result)
                    done += 1
                    if progress is not None and progress(done / total) is False:
                        raise InputError("decoding cancelled by the progress callback; nothing was written")
        except BaseException:
            for future in pending:
                future.cancel()
            raise


def _replace_folder(tmp: str, target: Path) -> None:
    """Put the finished store ``tmp`` at ``target``; an existing zarr store there is replaced."""
    if target.exists():
        if not target.is_dir() or not any((target / m).exists() for m in ("zarr.json", ".zarray", ".zgroup")):
            raise InputError(f"cannot write {str(target)!r}: it exists and is not a zarr store; "
                             f"remove it or choose another name")
        old = tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent)
        os.replace(target, Path(old) / "store")
        os.replace(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, target)


def decode_to_zarr(vol, path: str | os.PathLike, chunks: int | Sequence[int] | None = DEFAULT_CHUNK, *,
                   dims: Sequence[int] | None = None, scale: float | None = None,
                   region: Sequence[int] | None = None, dtype=None, workers: int | None = None,
                   zarr_format: int = 3, compressors="auto", device: str = "cpu",
                   progress: Callable[[float], object] | None = None) -> None:
    """Decode ``vol`` into a new zarr array at ``path``, chunk by chunk in parallel.

    Parameters
    ----------
    vol : NeuralVolume
        Anything with ``decode(dims=, region=, dtype=, device=)``, ``output_dims``,
        ``grid_spacing``, ``origin`` and ``array_name`` (a bricked volume too).
    path : str or os.PathLike
        The store folder to create (``out.zarr``, or ``out.zarr:group/array`` for an array
        inside a group); an existing zarr store there is replaced once the new one is
        complete, anything else there is refused.
    chunks : int or 3 ints (z, y, x), default 64
        Chunk shape of the zarr array, also the unit of work (one decode per chunk).
    dims, scale, region :
        The output grid and the part of it to write, as for :meth:`NeuralVolume.decode`.
    dtype : numpy dtype, optional
        Stored dtype (default: the original's).
    workers : int, optional
        Decoding threads (default :func:`default_workers`).
    zarr_format : 2 or 3, default 3
    compressors : default "auto"
        Passed to :func:`zarr.create_array` (``None`` for none).
    device : str, default "cpu"
        Torch device of the decodes.
    progress : callable, optional
        Called with the fraction of chunks done; returning ``False`` cancels.

    Raises
    ------
    InputError
        Bad chunks/dims/region, the target folder missing or not a zarr store, zarr not
        installed, or a cancelled decode (nothing is left behind in every case).
    """
    zarr = import_zarr()
    plan = _Plan(vol, dims, region, scale, chunks)
    out_dtype = vol.dtype if dtype is None else np.dtype(dtype)
    file, inner = split_source(path)
    target = Path(file.rstrip("/"))
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"cannot write {str(target)!r}: folder {str(parent)!r} does not exist")
    if zarr_format not in (2, 3):
        raise InputError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    workers = default_workers() if workers is None else max(1, int(workers))
    tmp = tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)       # mkdtemp makes it 0700; the store should be like any new folder
    try:
        extra = {"dimension_names": ("z", "y", "x")} if zarr_format == 3 else {}
        attributes = plan.attributes()
        if zarr_format == 2:
            attributes["_ARRAY_DIMENSIONS"] = ["z", "y", "x"]      # xarray's name for the axes in zarr v2
        array = zarr.create_array(store=tmp, name=inner.strip("/") if inner else None, shape=plan.shape, chunks=plan.chunks, dtype=out_dtype,
                                  zarr_format=zarr_format, compressors=compressors, attributes=attributes,
                                  fill_value=0, **extra)

        def write(slices, values):
            array[slices] = values

        _run_blocks(plan, lambda r: vol.decode(dims=plan.dims, region=r, dtype=out_dtype, device=device),
                    write, workers, True, progress)
        _replace_folder(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def decode_to_hdf5(vol, path: str | os.PathLike, chunks: int | Sequence[int] | None = DEFAULT_CHUNK, *,
                   dims: Sequence[int] | None = None, scale: float | None = None,
                   region: Sequence[int] | None = None, dtype=None, workers: int | None = None,
                   compression: str | None = None, device: str = "cpu",
                   progress: Callable[[float], object] | None = None) -> None:
    """Decode ``vol`` into a new HDF5 file, ``file.h5`` or ``file.h5:/group/dataset``
    (default dataset: ``/`` + the array name), chunk by chunk; threads decode, one writes.

    The other parameters are those of :func:`decode_to_zarr`; ``compression`` is h5py's
    (e.g. "gzip", default none). The file is written to a temporary file and renamed.
    """
    from .bitstream.atomic_io import atomic_path
    h5py = import_h5py()
    plan = _Plan(vol, dims, region, scale, chunks)
    out_dtype = vol.dtype if dtype is None else np.dtype(dtype)
    file, dataset = split_source(path)
    dataset = "/" + (dataset or plan.array_name).strip("/")
    workers = default_workers() if workers is None else max(1, int(workers))
    with atomic_path(file) as tmp:
        with h5py.File(tmp, "w") as fh:
            ds = fh.create_dataset(dataset, shape=plan.shape, dtype=out_dtype, chunks=plan.chunks,
                                   compression=compression)
            for key, value in plan.attributes().items():
                ds.attrs[key] = value

            def write(slices, values):
                ds[slices] = values

            _run_blocks(plan, lambda r: vol.decode(dims=plan.dims, region=r, dtype=out_dtype, device=device),
                        write, workers, False, progress)
