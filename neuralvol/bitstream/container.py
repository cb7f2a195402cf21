"""The `.nvc` container: magic, version, a JSON header, then CRC-checked binary sections.

Version 3 is the compact form of a one-model file: magic, version, the binary header of
:mod:`neuralvol.bitstream.compact_header`, the coded symbols, and one CRC32 over all of it.

The byte layout is documented in ``docs/FORMAT.md``. Reading never executes anything from
the file: the header is JSON (or fixed binary fields), sections are raw little-endian
arrays of a whitelisted dtype or entropy-coded symbols. Every failure to read is a
one-line :class:`FormatError` that names what is wrong.
"""
from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from . import compact_header, components, entropy, header_limits
from ..error_bound import KEY as ERROR_BOUND_KEY
from ..errors import FormatError

MAGIC = b"\x89NVC\r\n\x1a\n"
# Version 1: raw sections only. Version 2 adds entropy-coded sections (a "coding" entry in
# the section table). Writers use the lowest version that holds what they write, so
# float16 files stay readable by version-1 readers; readers read every version up to this.
FORMAT_VERSION = 7
CODED_SECTIONS_VERSION = 2
# Version 3: one model with one coded section, its header in fixed binary fields (~70
# bytes with magic and CRC, instead of ~170), used whenever it can hold the header exactly.
# Version 5: the same with a post filter (neuralvol.postfilter; compact_header.version_of).
COMPACT_VERSION = compact_header.COMPACT_VERSION
COMPACT_VERSIONS = (compact_header.COMPACT_VERSION, compact_header.FILTERED_COMPACT_VERSION)
# Version 4: the version-2 layout plus new optional header keys an older reader must not
# ignore: top-level EXTENDED_KEYS, and model keys flagged by the writer (docs/FORMAT.md).
EXTENDED_VERSION = 4
# Top-level header keys that need version 4 (a version-3 reader would ignore them and misread the file).
EXTENDED_KEYS = ("bricks",)
# Version 6: the version-4 layout whose model entries may hold a "post_filter", which a
# version-4 reader would ignore, decoding other values than the writer measured.
FILTERED_VERSION = 6
# Version 7: a bricked file (top-level "bricks") whose bricks may hold a "post_filter": a
# version-6 reader reads the filters but its bricked decode blends the bare networks.
BRICKED_FILTERED_VERSION = 7
VERSION_FIELD = struct.Struct("<H")
CRC_FIELD = struct.Struct("<I")
FLAG_HEADER_ZLIB = 0x1
# Version 2: the header is raw DEFLATE primed with HEADER_DICTIONARY, which holds the keys
# and typical values of a header, so a small file's header costs ~150 bytes, not ~600.
FLAG_HEADER_DICTIONARY = 0x2
KNOWN_FLAGS = FLAG_HEADER_ZLIB | FLAG_HEADER_DICTIONARY
MAX_HEADER_BYTES = 1 << 24  # decompressed; bounds what a hostile file can make us allocate
# Never edit: files depend on it byte for byte. A new dictionary needs a new flag bit.
HEADER_DICTIONARY = (
    b'{"format":"neuralvol","version":2,"library":"neuralvol 0.1.0","models":[{"array_name":"values",'
    b'"dims":[64,64,64],"spacing":[1.0,1.0,1.0],"origin":[0.0,0.0,0.0],"dtype":"float32",'
    b'"value_range":[0.0,1.0],"normalisation":{"offset":0.0,"scale":1.0},"encoding":{"type":"hashgrid",'
    b'"n_levels":16,"n_features":2,"table_size":1024,"base_resolution":8,"finest_resolution":64},'
    b'"network":{"type":"relu_mlp","width":32,"hidden_layers":2,"output_bias":true},'
    b'"storage":{"precision":"quantised","allocation":"sqrt_size","table_step":0.01,'
    b'"mlp_steps":[0.01,0.01,0.01]},"training":{"steps":1000,"seconds":10.0,"stopped":"time_budget",'
    b'"curve":[],"device":"cpu","seed":0,"psnr":30.0,"exact":false}}],"sections":[{"name":"0/symbols",'
    b'"dtype":"int8","shape":[1000],"coding":{"coder":"lzma1-raw-lc0-4k","symbols":"int8","count":1000},'
    b'"offset":0,"nbytes":1000,"crc32":1000}]}'
)
PREAMBLE = struct.Struct("<8sHHII")  # magic, version, flags, header length, header CRC32
SECTION_DTYPES = {"float16": "<f2", "float32": "<f4", "uint8": "u1", "int8": "i1",
                  "uint16": "<u2", "int16": "<i2", "int32": "<i4"}


@dataclass
class Section:
    name: str
    array: np.ndarray
    coded: bool = False  # entropy-code the (int8/int16 symbol) array, see neuralvol.bitstream.entropy
    segmentations: tuple = ()  # runs of like statistics the coder may use (see entropy.encode)


def version_for(sections: list[Section], header: dict | None = None, extended: bool = False) -> int:
    """The lowest format version that can hold ``sections``, ``header``'s top-level keys and
    models' post filters and, when ``extended`` (or a model entry holds one), version-4 model
    keys. Writers write it; :func:`decode` refuses a file that declares less (:func:`requirement`)."""
    return requirement(header, any(s.coded for s in sections), extended)[0]


def requirement(header: dict | None, coded: bool = False, extended: bool = False) -> tuple[int, str]:
    """(the lowest format version of a JSON-header file holding ``header`` and, when ``coded``,
    entropy-coded sections; what needs that version, a phrase for messages, "" for version 1).

    ``extended``: the writer flags a version-4 model key; the version-4 keys a reader knows
    (``error_bound``, ``components``, the network's ``outputs``) count without it. Safe on any
    parsed JSON (malformed entries count for nothing: the schema rejects them later)."""
    header = header if isinstance(header, dict) else {}
    models = header.get("models")
    models = [m for m in models if isinstance(m, dict)] if isinstance(models, list) else []
    if any("post_filter" in m for m in models):
        if "bricks" in header:
            return BRICKED_FILTERED_VERSION, "a post filter in a bricked file"
        return FILTERED_VERSION, "a post filter in a model entry"
    for key in EXTENDED_KEYS:
        if key in header:
            return EXTENDED_VERSION, f"the top-level {key!r} key"
    for m in models:
        if ERROR_BOUND_KEY in m:
            return EXTENDED_VERSION, f"an {ERROR_BOUND_KEY!r} correction"
        if "components" in m or (isinstance(m.get("network"), dict) and components.needs_extended([m])):
            return EXTENDED_VERSION, "a multi-component field"
    if extended:
        return EXTENDED_VERSION, "a version-4 model key"
    return (CODED_SECTIONS_VERSION, "an entropy-coded section") if coded else (1, "")


def encode(header: dict, sections: list[Section], compact: bool = True) -> bytes:
    """Serialise a header (without its ``sections`` table) and the sections to bytes.

    One coded section is written as a compact version-3 file when ``compact`` and its
    header fits the compact fields; otherwise versions 1/2 (JSON header)."""
    table = []
    payload = []
    offset = 0
    for s in sections:
        dtype_name = str(s.array.dtype)
        if dtype_name not in SECTION_DTYPES:
            raise ValueError(f"section {s.name!r}: dtype {dtype_name} cannot be stored")
        entry = {"name": s.name, "dtype": dtype_name, "shape": list(s.array.shape)}
        if s.coded:
            data, entry["coding"] = entropy.encode(s.array.reshape(-1), s.segmentations)
        else:
            data = np.ascontiguousarray(s.array, dtype=np.dtype(SECTION_DTYPES[dtype_name])).tobytes()
        entry.update({"offset": offset, "nbytes": len(data), "crc32": zlib.crc32(data)})
        table.append(entry)
        payload.append(data)
        offset += len(data)
    # the compact layout holds one coded section and no top-level version-4 key (a post filter
    # it holds: version 5, compact_header.version_of)
    if compact and len(sections) == 1 and sections[0].coded and not any(key in header for key in EXTENDED_KEYS):
        body = compact_header.pack(header, table[0])
        if body is not None:
            version = compact_header.version_of(header["models"][0])
            head = MAGIC + VERSION_FIELD.pack(version) + body + payload[0]
            return head + CRC_FIELD.pack(zlib.crc32(head))
    full = dict(header)
    full["sections"] = table
    text = json.dumps(full, separators=(",", ":"), sort_keys=False, allow_nan=False).encode("utf-8")
    version = version_for(sections, header, extended=header.get("version") in (EXTENDED_VERSION, FILTERED_VERSION,
                                                                           BRICKED_FILTERED_VERSION))
    stored, flags = pack_header(text, version)
    preamble = PREAMBLE.pack(MAGIC, version, flags, len(stored), zlib.crc32(stored))
    return preamble + stored + b"".join(payload)


def _is_compact(data: bytes) -> bool:
    return (len(data) >= len(MAGIC) + VERSION_FIELD.size and data.startswith(MAGIC)
            and VERSION_FIELD.unpack_from(data, len(MAGIC))[0] in COMPACT_VERSIONS)


def _split_compact(data: bytes, source: str) -> tuple[dict, dict, int, int]:
    """(header, section entry, payload start, payload stop) of a verified version-3 file."""
    start = len(MAGIC) + VERSION_FIELD.size
    if len(data) < start + CRC_FIELD.size:
        raise FormatError(f"{source}: truncated .nvc file ({len(data)} bytes)")
    stop = len(data) - CRC_FIELD.size
    if zlib.crc32(data[:stop]) != CRC_FIELD.unpack_from(data, stop)[0]:
        raise FormatError(f"{source}: corrupted or truncated .nvc file (CRC32 mismatch)")
    header, section, used = compact_header.unpack(data[start:stop], source, VERSION_FIELD.unpack_from(data, len(MAGIC))[0])
    payload = data[start + used:stop]
    section.update(offset=0, nbytes=len(payload), crc32=zlib.crc32(payload))
    header["sections"] = [section]
    return header, section, start + used, stop


def header_size(data: bytes) -> int:
    """Bytes of a container that are not section payload (preamble, header, CRC)."""
    if _is_compact(data):
        _, _, lo, hi = _split_compact(data, "file")
        return len(data) - (hi - lo)
    return PREAMBLE.size + PREAMBLE.unpack_from(data, 0)[3]


def decode(data: bytes, source: str = "file") -> tuple[dict, dict[str, np.ndarray]]:
    """Parse and verify container bytes; returns (header, {section name: array})."""
    if _is_compact(data):
        header, section, lo, hi = _split_compact(data, source)
        header_limits.check_header(header, hi - lo, source)
        name = section["name"]
        return header, {name: entropy.decode(data[lo:hi], section["coding"], source, name)}
    if len(data) < PREAMBLE.size:
        if not data.startswith(MAGIC[: len(data)]) or len(data) == 0:
            raise FormatError(f"{source}: not a neuralvol .nvc file (too short to hold a header)")
        raise FormatError(f"{source}: truncated .nvc file ({len(data)} bytes, the preamble alone needs {PREAMBLE.size})")
    magic, version, flags, hlen, hcrc = PREAMBLE.unpack_from(data, 0)
    _check_preamble(magic, version, flags, source)
    start = PREAMBLE.size + hlen
    if start > len(data):
        raise FormatError(f"{source}: truncated .nvc file (header needs {hlen} bytes, {len(data) - PREAMBLE.size} present)")
    stored = data[PREAMBLE.size:start]
    if zlib.crc32(stored) != hcrc:
        raise FormatError(f"{source}: corrupted .nvc header (CRC32 mismatch)")
    try:
        text = unpack_header(stored, flags, source)
        header = json.loads(text.decode("utf-8"))
    # ValueError: also Python's 4300-digit limit on integers; RecursionError: deep nesting.
    except (zlib.error, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise FormatError(f"{source}: corrupted .nvc header ({type(exc).__name__})") from None
    if not isinstance(header, dict) or not isinstance(header.get("sections"), list):
        raise FormatError(f"{source}: malformed .nvc header (no section table)")
    header_limits.check_header(header, len(data) - start, source)
    _check_version(header, version, source)
    arrays: dict[str, np.ndarray] = {}
    end = start
    for entry in header["sections"]:
        name, arr, stop = _read_section(data, start, entry, source)
        arrays[name] = arr
        end = max(end, stop)
    if end < len(data):
        raise FormatError(f"{source}: corrupted .nvc file ({len(data) - end} unexpected trailing bytes)")
    return header, arrays


def pack_header(text: bytes, version: int) -> tuple[bytes, int]:
    """(stored header bytes, preamble flags) for header JSON ``text`` in format ``version``."""
    if version >= CODED_SECTIONS_VERSION:
        packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zdict=HEADER_DICTIONARY)
        return packer.compress(text) + packer.flush(), FLAG_HEADER_DICTIONARY
    return zlib.compress(text, 9), FLAG_HEADER_ZLIB


def unpack_header(stored: bytes, flags: int, source: str) -> bytes:
    if flags & FLAG_HEADER_ZLIB and flags & FLAG_HEADER_DICTIONARY:
        raise FormatError(f"{source}: corrupted .nvc preamble (two header compressions flagged)")
    if flags & FLAG_HEADER_DICTIONARY:
        unpacker = zlib.decompressobj(-15, zdict=HEADER_DICTIONARY)
    elif flags & FLAG_HEADER_ZLIB:
        unpacker = zlib.decompressobj()
    else:
        return stored
    text = unpacker.decompress(stored, MAX_HEADER_BYTES)
    if unpacker.unconsumed_tail or not unpacker.eof:
        raise FormatError(f"{source}: corrupted .nvc header (compressed stream is incomplete or too large)")
    return text


def _check_version(header: dict, version: int, source: str) -> None:
    """Refuse a JSON-header file that declares a lower version than its contents need: a
    reader of that version would misread it (e.g. blend bricks without their post filters),
    and no neuralvol writes one. A higher version than needed is fine. The compact layout
    has its own rule (version 5 exactly when the model has a post filter, compact_header.unpack)."""
    coded = any(isinstance(e, dict) and "coding" in e for e in header["sections"])
    need, what = requirement(header, coded)
    if version < need:
        raise FormatError(f"{source}: {what} needs format version {need}; this file says {version}: "
                          f"it was not written by neuralvol")


def _check_preamble(magic: bytes, version: int, flags: int, source: str) -> None:
    if magic != MAGIC:
        raise FormatError(f"{source}: not a neuralvol .nvc file (bad magic bytes)")
    if version > FORMAT_VERSION:
        raise FormatError(f"{source}: written by a newer neuralvol (format version {version}; this one reads up to "
                          f"{FORMAT_VERSION}): upgrade neuralvol to read it")
    if version < 1:
        raise FormatError(f"{source}: unsupported .nvc format version {version}")
    if flags & ~KNOWN_FLAGS or (version < CODED_SECTIONS_VERSION and flags & FLAG_HEADER_DICTIONARY):
        raise FormatError(f"{source}: corrupted .nvc preamble (unknown flag bits 0x{flags:04x})")


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
    coding = entry.get("coding")
    raw_size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if any(n < 0 for n in shape) or offset < 0 or nbytes < 0 or (coding is None and nbytes != raw_size):
        raise FormatError(f"{source}: section {name!r} has an inconsistent shape/size in the header")
    lo, hi = start + offset, start + offset + nbytes
    if hi > len(data):
        raise FormatError(f"{source}: truncated .nvc file (section {name!r} ends at byte {hi}, file has {len(data)})")
    raw = data[lo:hi]
    if zlib.crc32(raw) != crc:
        raise FormatError(f"{source}: section {name!r} is corrupted (CRC32 mismatch)")
    if coding is not None:
        if not isinstance(coding, dict) or coding.get("symbols") != dtype_name or coding.get("count") != raw_size // dtype.itemsize:
            raise FormatError(f"{source}: section {name!r} has coding metadata that does not match its shape")
        return name, entropy.decode(raw, coding, source, name).reshape(shape), hi
    arr = np.frombuffer(raw, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="), copy=True)
    return name, arr, hi
