"""The `.nvc` container: magic, version, a JSON header, then CRC-checked binary sections.

The byte layout is documented in ``docs/FORMAT.md``. Reading never executes anything from
the file: the header is JSON, sections are raw little-endian arrays of a whitelisted dtype.
Every failure to read is a one-line :class:`FormatError` that names what is wrong.
"""
from __future__ import annotations

import json
import os
import struct
import tempfile
import zlib
from builtins import open as builtins_open
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import FormatError, InputError

MAGIC = b"\x89NVC\r\n\x1a\n"
FORMAT_VERSION = 1
FLAG_HEADER_ZLIB = 0x1
KNOWN_FLAGS = FLAG_HEADER_ZLIB
PREAMBLE = struct.Struct("<8sHHII")  # magic, version, flags, header length, header CRC32
SECTION_DTYPES = {"float16": "<f2", "float32": "<f4", "uint8": "u1", "int8": "i1",
                  "uint16": "<u2", "int32": "<i4"}


@dataclass
class Section:
    name: str
    array: np.ndarray


def encode(header: dict, sections: list[Section]) -> bytes:
    """Serialise a header (without its ``sections`` table) and the sections to bytes."""
    table = []
    payload = []
    offset = 0
    for s in sections:
        dtype_name = str(s.array.dtype)
        if dtype_name not in SECTION_DTYPES:
            raise ValueError(f"section {s.name!r}: dtype {dtype_name} cannot be stored")
        data = np.ascontiguousarray(s.array, dtype=np.dtype(SECTION_DTYPES[dtype_name])).tobytes()
        table.append({"name": s.name, "dtype": dtype_name, "shape": list(s.array.shape),
                      "offset": offset, "nbytes": len(data), "crc32": zlib.crc32(data)})
        payload.append(data)
        offset += len(data)
    full = dict(header)
    full["sections"] = table
    text = json.dumps(full, separators=(",", ":"), sort_keys=False, allow_nan=False).encode("utf-8")
    stored = zlib.compress(text, 9)
    preamble = PREAMBLE.pack(MAGIC, FORMAT_VERSION, FLAG_HEADER_ZLIB, len(stored), zlib.crc32(stored))
    return preamble + stored + b"".join(payload)


def decode(data: bytes, source: str = "file") -> tuple[dict, dict[str, np.ndarray]]:
    """Parse and verify container bytes; returns (header, {section name: array})."""
    if len(data) < PREAMBLE.size:
        if not data.startswith(MAGIC[: len(data)]) or len(data) == 0:
            raise FormatError(f"{source}: not a neuralvol .nvc file (too short to hold a header)")
        raise FormatError(f"{source}: truncated .nvc file ({len(data)} bytes, the preamble alone needs {PREAMBLE.size})")
    magic, version, flags, hlen, hcrc = PREAMBLE.unpack_from(data, 0)
    if magic != MAGIC:
        raise FormatError(f"{source}: not a neuralvol .nvc file (bad magic bytes)")
    if version > FORMAT_VERSION:
        raise FormatError(f"{source}: written by a newer neuralvol (format version {version}; this one reads up to "
                          f"{FORMAT_VERSION}): upgrade neuralvol to read it")
    if version < 1:
        raise FormatError(f"{source}: unsupported .nvc format version {version}")
    if flags & ~KNOWN_FLAGS:
        raise FormatError(f"{source}: corrupted .nvc preamble (unknown flag bits 0x{flags:04x})")
    start = PREAMBLE.size + hlen
    if start > len(data):
        raise FormatError(f"{source}: truncated .nvc file (header needs {hlen} bytes, {len(data) - PREAMBLE.size} present)")
    stored = data[PREAMBLE.size:start]
    if zlib.crc32(stored) != hcrc:
        raise FormatError(f"{source}: corrupted .nvc header (CRC32 mismatch)")
    try:
        text = zlib.decompress(stored) if flags & FLAG_HEADER_ZLIB else stored
        header = json.loads(text.decode("utf-8"))
    except (zlib.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{source}: corrupted .nvc header ({type(exc).__name__})") from None
    if not isinstance(header, dict) or not isinstance(header.get("sections"), list):
        raise FormatError(f"{source}: malformed .nvc header (no section table)")
    arrays: dict[str, np.ndarray] = {}
    end = start
    for entry in header["sections"]:
        name, arr, stop = _read_section(data, start, entry, source)
        arrays[name] = arr
        end = max(end, stop)
    if end < len(data):
        raise FormatError(f"{source}: corrupted .nvc file ({len(data) - end} unexpected trailing bytes)")
    return header, arrays


def _read_section(data: bytes, start: int, entry: dict, source: str):
    try:
        name = str(entry["name"])
        dtype_name = entry["dtype"]
        shape = tuple(int(n) for n in entry["shape"])
        offset, nbytes, crc = int(entry["offset"]), int(entry["nbytes"]), int(entry["crc32"])
    except (KeyError, TypeError, ValueError):
        raise FormatError(f"{source}: malformed section entry in .nvc header: {str(entry)[:80]}") from None
    if dtype_name not in SECTION_DTYPES:
        raise FormatError(f"{source}: section {name!r} has unsupported dtype {dtype_name!r}")
    dtype = np.dtype(SECTION_DTYPES[dtype_name])
    if any(n < 0 for n in shape) or offset < 0 or nbytes != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise FormatError(f"{source}: section {name!r} has an inconsistent shape/size in the header")
    lo, hi = start + offset, start + offset + nbytes
    if hi > len(data):
        raise FormatError(f"{source}: truncated .nvc file (section {name!r} ends at byte {hi}, file has {len(data)})")
    raw = data[lo:hi]
    if zlib.crc32(raw) != crc:
        raise FormatError(f"{source}: section {name!r} is corrupted (CRC32 mismatch)")
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)
    return name, arr, hi


@contextmanager
def atomic_path(path: str | os.PathLike):
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it vanishes.

    Readers never see a half-written file, and a failed write leaves nothing behind.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise InputError(f"cannot write {str(path)!r}: folder {str(folder)!r} does not exist")
    if path.is_dir():
        raise InputError(f"cannot write {str(path)!r}: it is a folder")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
        os.close(fd)
        # mkstemp makes the file 0600; the result should have the permissions any new file gets.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
    except OSError as exc:
        raise InputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        _remove_quietly(tmp)
        raise InputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    except BaseException:
        _remove_quietly(tmp)
        raise


def write_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write bytes to ``path`` via a temporary file in the same folder and a rename."""
    with atomic_path(path) as tmp:
        with builtins_open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def _remove_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def read_bytes(path: str | os.PathLike) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except FileNotFoundError:
        raise InputError(f"no such file: {str(path)!r}") from None
    except IsADirectoryError:
        raise InputError(f"{str(path)!r} is a folder, not an .nvc file") from None
    except OSError as exc:
        raise InputError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
