"""neuralvol as a numcodecs codec: a zarr array stored with one `.nvc` file per chunk.

>>> import zarr, neuralvol.numcodecs as nvc                                         # doctest: +SKIP
>>> codec = nvc.NeuralVolCodec(ratio=100, steps=300)                                # doctest: +SKIP
>>> z = zarr.create_array("vol.zarr", shape=a.shape, chunks=(64, 64, 64), dtype=a.dtype,
...                       zarr_format=2, compressors=codec)                          # doctest: +SKIP
>>> z = zarr.create_array("vol3.zarr", shape=a.shape, chunks=(64, 64, 64), dtype=a.dtype,
...                       serializer=nvc.NeuralVolZarr3Codec(ratio=100, steps=300),
...                       compressors=None)                                          # doctest: +SKIP

Each chunk is fitted on its own (:func:`neuralvol.compress`) and its encoded bytes are a
complete `.nvc` file (any neuralvol tool opens a chunk written out). The codec needs the
typed chunk, not bytes: in zarr format 2 it is the ``compressor`` (with no filters that
change the dtype); in zarr format 3 it is the array-to-bytes ``serializer``
(:class:`NeuralVolZarr3Codec`, id ``numcodecs.neuralvol``) and needs no byte compressor
after it (the `.nvc` is already entropy coded).

Chunks of 3 dimensions are fitted as volumes, 2D chunks as one slice and 1D chunks as one
row (as :func:`neuralvol.compress` takes them); leading axes of length 1 (a time axis
chunked by one step) are dropped. Decoding returns ``[z, y, x]`` values of the chunk's
dtype; zarr reshapes them to the chunk's shape, and ``out=`` receives them in its shape.

Importing this module registers the codec with numcodecs (``numcodecs.get_codec({"id":
"neuralvol", ...})``) and, when zarr 3 is installed, with zarr; the ``numcodecs.codecs``
and ``zarr.codecs`` entry points in setup.cfg do the same for an installed neuralvol
without an import.
"""
from __future__ import annotations

import numcodecs
from numcodecs.abc import Codec
from numcodecs.compat import ensure_bytes, ensure_ndarray_like, ndarray_copy

from .errors import InputError

CODEC_ID = "neuralvol"
# Steps per chunk when neither steps nor a time budget is given: a fixed count keeps the
# codec deterministic (same chunk, same bytes) and a 64^3 chunk at about 10 s on one core.
DEFAULT_STEPS = 300


class NeuralVolCodec(Codec):
    """Store each chunk as an `.nvc` file fitted to it.

    Parameters
    ----------
    ratio, bpv : float, optional
        Byte budget of each chunk (native bytes / encoded bytes, or bits per voxel); with
        neither and no ``psnr``, ratio 100.
    psnr : float, optional
        Target PSNR (dB): alone, the smallest file reaching it; with a budget, fitting
        stops once it is reached.
    steps : int, optional
        Fitting steps per chunk (default :data:`DEFAULT_STEPS` unless ``time_budget``).
    time_budget : float, optional
        Seconds of fitting per chunk (not deterministic; prefer ``steps``).
    seed : int, default 0
    encoding, preset, precision :
        As for :func:`neuralvol.compress`.
    """

    codec_id = CODEC_ID

    def __init__(self, ratio: float | None = None, bpv: float | None = None, psnr: float | None = None,
                 steps: int | None = None, time_budget: float | None = None, seed: int = 0,
                 encoding: str = "hashgrid", preset: str | None = None, precision: str = "quantised"):
        if ratio is not None and bpv is not None:
            raise InputError("give the codec a ratio or bpv, not both")
        self.ratio = None if ratio is None else float(ratio)
        self.bpv = None if bpv is None else float(bpv)
        self.psnr = None if psnr is None else float(psnr)
        self.steps = None if steps is None else int(steps)
        self.time_budget = None if time_budget is None else float(time_budget)
        self.seed = int(seed)
        self.encoding = str(encoding)
        self.preset = preset
        self.precision = str(precision)

    def get_config(self) -> dict:
        config = {"id": self.codec_id}
        for key in ("ratio", "bpv", "psnr", "steps", "time_budget", "seed", "encoding", "preset", "precision"):
            value = getattr(self, key)
            if value is not None:
                config[key] = value
        return config

    @classmethod
    def from_config(cls, config: dict):
        config = dict(config)
        config.pop("id", None)
        return cls(**config)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items() if k != "id")
        return f"NeuralVolCodec({args})"

    @staticmethod
    def _volume_of(buf):
        arr = ensure_ndarray_like(buf)
        shape = tuple(arr.shape)
        while len(shape) > 3 and shape[0] == 1:
            shape = shape[1:]
        if len(shape) > 3:
            raise InputError(f"the neuralvol codec stores chunks of at most 3 dimensions of length > 1 "
                             f"(leading axes of length 1 are dropped), got a chunk of shape {tuple(arr.shape)}: "
                             f"chunk the extra axes by 1")
        if arr.ndim == 0 or arr.size == 0:
            raise InputError(f"the neuralvol codec cannot store an empty or 0-d chunk (shape {tuple(arr.shape)})")
        if arr.dtype.kind not in "iuf":
            raise InputError(f"the neuralvol codec stores integer or float chunks, not {arr.dtype}; in zarr "
                             f"format 2 put it as the compressor with no filters, in format 3 as the serializer")
        return arr.reshape(shape)

    def encode(self, buf) -> bytes:
        from .bitstream import schema
        from .compress import compress
        arr = self._volume_of(buf)
        steps = self.steps if self.steps is not None or self.time_budget is not None else DEFAULT_STEPS
        vol = compress(arr, ratio=self.ratio, bpv=self.bpv, psnr=self.psnr, steps=steps,
                       time_budget=self.time_budget, seed=self.seed, device="cpu", record_timings=False,
                       encoding=self.encoding, preset=self.preset, precision=self.precision)
        return schema.to_bytes([vol])

    def decode(self, buf, out=None):
        from .bitstream import schema
        vol = schema.volumes_from_bytes(ensure_bytes(buf), source="a neuralvol-coded chunk")[0]
        values = vol.decode()
        if out is not None:
            out_arr = ensure_ndarray_like(out)
            if out_arr.size != values.size:
                raise InputError(f"out= has {out_arr.size} elements, the chunk decodes to {values.size} "
                                 f"({'x'.join(map(str, vol.dims))})")
            return ndarray_copy(values, out)
        return values


numcodecs.register_codec(NeuralVolCodec)


def _zarr3_codec_class():
    """The zarr 3 array-to-bytes wrapper, built on zarr's own numcodecs adapter (None
    without zarr >= 3.1.3, whose ``zarr.codecs.numcodecs`` it needs)."""
    try:
        from zarr.codecs.numcodecs._codecs import _NumcodecsArrayBytesCodec
        from zarr.registry import register_codec
    except ImportError:
        return None

    class NeuralVolZarr3Codec(_NumcodecsArrayBytesCodec, codec_name=CODEC_ID):
        """zarr format 3 serializer ``numcodecs.neuralvol``: takes the same parameters as
        :class:`NeuralVolCodec`."""

    register_codec(NeuralVolZarr3Codec.codec_name, NeuralVolZarr3Codec)
    return NeuralVolZarr3Codec


NeuralVolZarr3Codec = _zarr3_codec_class()
