"""Lossless coding of quantised symbols: the smaller of two coders, named in the metadata.

* ``adaptive-binary-kt`` (:mod:`neuralvol.bitstream.adaptive_coding`): context-adaptive binary
  arithmetic coding, within ~1 % of the order-0 entropy from the first symbols on, so it
  wins on small files; run in Python, so only files of up to 65536 symbols use it. The
  symbols are split into segments (the writer tries one per stored tensor kind and one per
  quantisation group), each with its own statistics.
* ``lzma1-raw-lc0-4k``: raw LZMA1 tuned for memoryless integer symbols, for the rest.

Measured on fitted hash grids (headsq 100:1, ``/tmp`` experiments recorded in
docs/FORMAT.md): LZMA's adaptive binary range coder with no literal context (lc=0) and a
minimal dictionary comes within 6-15 % of each group's empirical entropy, beats a
parametric (Laplace or Gaussian) model by 5-15 %, and needs no side information, which a
stored histogram would cost on files of a few kilobytes. It is in Python's standard library.

int16 symbols are zigzag-mapped and split into byte planes (all low bytes, then all high
bytes), so the high bytes of small symbols are zero and code to almost nothing.
"""
from __future__ import annotations

import lzma

import numpy as np

from . import adaptive_coding
from ..errors import FormatError

# Bytes of each stored segment length: what a segmentation costs beyond its symbols.
SEGMENT_BYTES = 2

# A coder's name fixes every option (nothing a file says can change what is allocated).
CODER = "lzma1-raw-lc0-4k"
ADAPTIVE_CODER = "adaptive-binary-kt"
CODERS = (CODER, ADAPTIVE_CODER)
# lc=0: no literal context (symbols are nearly independent); pb=lp=0: no position context;
# a 4 KiB dictionary (the minimum) because repeats of long runs are rare.
LZMA_OPTIONS = {"lc": 0, "lp": 0, "pb": 0, "dict_size": 4096}
SYMBOL_DTYPES = {"int8": np.int8, "int16": np.int16}


def _filters(options: dict) -> list[dict]:
    return [{"id": lzma.FILTER_LZMA1, "preset": 9 | lzma.PRESET_EXTREME, **options}]


def _planes(symbols: np.ndarray) -> bytes:
    if symbols.dtype.itemsize == 1:
        return np.ascontiguousarray(symbols).view(np.uint8).tobytes()
    # zigzag (0, -1, 1, -2, ... -> 0, 1, 2, 3, ...) so small symbols of either sign have a
    # zero high byte; with two's complement the high plane would carry every sign (~1 bit each)
    wide = symbols.astype(np.int32)
    zig = ((wide << 1) ^ (wide >> 31)).astype("<u2")
    return zig.view(np.uint8).reshape(-1, 2).T.tobytes()


def _from_planes(raw: bytes, dtype: np.dtype, count: int) -> np.ndarray:
    planes = np.frombuffer(raw, dtype=np.uint8)
    if dtype.itemsize == 1:
        return planes.view(np.int8).astype(np.int8, copy=True)
    zig = planes.reshape(2, count).T.copy().view("<u2").reshape(-1).astype(np.int32)
    return ((zig >> 1) ^ -(zig & 1)).astype(np.int16)


def lzma_coded(symbols: np.ndarray) -> bytes:
    return lzma.compress(_planes(symbols), format=lzma.FORMAT_RAW, filters=_filters(LZMA_OPTIONS))


def best_segments(symbols: np.ndarray, segmentations) -> tuple[float, list[int]] | None:
    """(estimated coded bytes, segments) of the best adaptive coding, if the coder may take
    the symbols; segmentations are compared with their stored lengths counted in."""
    if symbols.size > adaptive_coding.MAX_SYMBOLS:
        return None
    options = [list(s) for s in segmentations] or [[int(symbols.size)]]
    estimates = [(adaptive_coding.estimated_bits(symbols, seg) / 8, seg) for seg in options]
    return min(estimates, key=lambda e: e[0] + SEGMENT_BYTES * len(e[1]))


def encode(symbols: np.ndarray, segmentations=(), coders=CODERS) -> tuple[bytes, dict]:
    """(coded bytes, metadata for the section table) of an int8/int16 symbol vector.

    ``segmentations`` are the ways of splitting the symbols into runs of like statistics
    that the adaptive coder may use (default: one run); the smallest coding among
    ``coders`` is kept.
    """
    name = str(symbols.dtype)
    if name not in SYMBOL_DTYPES:
        raise ValueError(f"symbols must be int8 or int16, not {name}")
    if not set(coders) <= set(CODERS) or not coders:
        raise ValueError(f"coders must be among {CODERS}, got {coders}")
    meta = {"coder": CODER, "symbols": name, "count": int(symbols.size)}
    coded = lzma_coded(symbols) if CODER in coders else None
    adaptive = best_segments(symbols, segmentations) if ADAPTIVE_CODER in coders else None
    if coded is None and adaptive is None:
        raise ValueError(f"{symbols.size} symbols are too many for the adaptive coder alone")
    if adaptive is not None and (coded is None or adaptive[0] + SEGMENT_BYTES * len(adaptive[1])
                                 < len(coded) + SEGMENT_BYTES):
        segments = adaptive[1]
        candidate = adaptive_coding.encode(symbols, segments)
        if coded is None or len(candidate) + SEGMENT_BYTES * len(segments) < len(coded):
            coded, meta = candidate, dict(meta, coder=ADAPTIVE_CODER, segments=segments)
    return coded, meta


def decode(coded: bytes, meta: dict, source: str = "file", name: str = "section") -> np.ndarray:
    """Symbols back from coded bytes; every inconsistency is a one-line FormatError."""
    try:
        coder, dtype_name, count = meta["coder"], meta["symbols"], int(meta["count"])
    except (KeyError, TypeError, ValueError):
        raise FormatError(f"{source}: section {name!r} has malformed coding metadata") from None
    if coder not in CODERS:
        raise FormatError(f"{source}: section {name!r} uses unknown coder {coder!r}; upgrade neuralvol to read it")
    if dtype_name not in SYMBOL_DTYPES or count < 0:
        raise FormatError(f"{source}: section {name!r} has invalid symbol type {dtype_name!r} or count {count}")
    dtype = np.dtype(SYMBOL_DTYPES[dtype_name])
    if coder == ADAPTIVE_CODER:
        return _decode_adaptive(coded, meta, dtype, count, f"{source}: section {name!r}")
    expected = count * dtype.itemsize
    try:
        decoder = lzma.LZMADecompressor(format=lzma.FORMAT_RAW, filters=_filters(LZMA_OPTIONS))
        raw = decoder.decompress(coded, max_length=expected)
    except lzma.LZMAError as exc:
        raise FormatError(f"{source}: section {name!r} does not decode ({exc})") from None
    if len(raw) != expected:
        raise FormatError(f"{source}: section {name!r} decodes to {len(raw)} bytes, {expected} expected")
    return _from_planes(raw, dtype, count)


def _decode_adaptive(coded: bytes, meta: dict, dtype: np.dtype, count: int, where: str) -> np.ndarray:
    segments = meta.get("segments")
    if (not isinstance(segments, list) or not all(isinstance(n, int) and n >= 0 for n in segments)
            or sum(segments) != count):
        raise FormatError(f"{where} has invalid segments for its {count} symbols")
    if count > adaptive_coding.MAX_SYMBOLS:
        raise FormatError(f"{where} claims {count} adaptively coded symbols, more than the "
                          f"{adaptive_coding.MAX_SYMBOLS} the coder allows")
    symbols = adaptive_coding.decode(coded, segments, count)
    info = np.iinfo(dtype)
    if symbols.size and (symbols.min() < info.min or symbols.max() > info.max):
        raise FormatError(f"{where} decodes to symbols outside {dtype.name}")
    return symbols.astype(dtype)
