"""The binary header of format version 3: one quantised model in a few dozen bytes.

Version 2 stores the header as DEFLATE-packed JSON, ~150 bytes for a small model; on a
file of 100-300 bytes that is most of it (at 400:1 a 41^3 byte volume may take 172 bytes
in all). Version 3 writes the same header fields in a fixed order as varints and short
decimals, 30-50 bytes. It holds exactly one model with one coded section; anything it
cannot say (several models, unknown keys, exotic values) is written as version 2, and the
writer checks that unpacking gives back the very header it was given, so nothing is ever
lost by choosing it. The layout is documented in ``docs/FORMAT.md``; the tables below may
only ever be appended to.
"""
from __future__ import annotations

import re
import struct

from ..encodings import ENCODINGS as ENCODING_KINDS
from ..encodings import WIRE_ORDER
from ..errors import FormatError
from .entropy import CODERS
from .records import TRAINING_KEYS

DTYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
SYMBOL_DTYPES = ("int8", "int16")
# Coders and encoding kinds are stored by their index in entropy.CODERS and by their wire
# code (neuralvol.encodings), each followed by the kind's config fields as varints.
ENCODINGS = {name: ENCODING_KINDS[name].fields for name in WIRE_ORDER}
ENCODING_NAMES = WIRE_ORDER
STOPPED = ("time_budget", "steps", "psnr", "constant", "cancelled")
DEVICES = ("cpu", "cuda")
# Optional model keys, in presence-mask bit order, with their kinds.
OPTIONAL_MODEL_KEYS = (("array_name", "str"), ("spacing", "vec3"), ("origin", "vec3"), ("name", "str"),
                       ("time", "num"), ("extent", "ints6"), ("post_filter", "post_filter"))
# Version 5 is this layout with a post filter (neuralvol.postfilter): the last optional key,
# which a version-3 file never sets (a reader of version 3 only would decode the file without
# its filter, so such files carry the new version number and older readers ask for an upgrade).
COMPACT_VERSION, FILTERED_COMPACT_VERSION = 3, 5
LIBRARY = re.compile(r"neuralvol (\d+)\.(\d+)\.(\d+)")
NUMBER_NONE, NUMBER_FLOAT32, NUMBER_FLOAT64 = 253, 254, 255
FLOAT32_MAX = 3.4028234663852886e38
DECIMAL_BIAS = 100  # a decimal's exponent byte is exponent + 100 (exponents -100..152)


class _Unrepresentable(Exception):
    """The header holds something this layout cannot say: write version 2 instead."""


class _Writer:
    def __init__(self):
        self.out = bytearray()

    def uint(self, v) -> None:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise _Unrepresentable(v)
        while True:
            byte, v = v & 0x7F, v >> 7
            self.out.append(byte | (0x80 if v else 0))
            if not v:
                return

    def sint(self, v) -> None:
        if isinstance(v, bool) or not isinstance(v, int):
            raise _Unrepresentable(v)
        self.uint(2 * v if v >= 0 else -2 * v - 1)

    def num(self, v) -> None:
        """A number as a short decimal (mantissa and exponent) when that is exact."""
        if v is None:
            self.out.append(NUMBER_NONE)
            return
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise _Unrepresentable(v)
        x = float(v)
        m = re.fullmatch(r"(-?)(\d+)(?:\.(\d+))?(?:e([-+]\d+))?", repr(x))
        if m:
            digits = (m.group(2) + (m.group(3) or "")).lstrip("0") or "0"
            exponent = int(m.group(4) or 0) - len(m.group(3) or "")
            mantissa = int(digits) * (-1 if m.group(1) else 1)
            while mantissa and mantissa % 10 == 0:
                mantissa //= 10
                exponent += 1
            if mantissa == 0:
                exponent = 0
            if (abs(mantissa) < 2 ** 53 and -DECIMAL_BIAS <= exponent < NUMBER_NONE - DECIMAL_BIAS
                    and float(f"{mantissa}e{exponent}") == x):
                self.out.append(exponent + DECIMAL_BIAS)
                self.sint(mantissa)
                return
        if abs(x) <= FLOAT32_MAX and struct.unpack("<f", struct.pack("<f", x))[0] == x:
            self.out.append(NUMBER_FLOAT32)
            self.out += struct.pack("<f", x)
        else:
            self.out.append(NUMBER_FLOAT64)
            self.out += struct.pack("<d", x)

    def str(self, v) -> None:
        if not isinstance(v, str):
            raise _Unrepresentable(v)
        raw = v.encode("utf-8")
        self.uint(len(raw))
        self.out += raw

    def choice(self, v, table) -> None:
        """An index into ``table`` (plus one), or 0 and the string itself."""
        if v in table:
            self.uint(table.index(v) + 1)
        else:
            self.uint(0)
            self.str(v)


class _Reader:
    def __init__(self, data: bytes, source: str):
        self.data, self.pos, self.source = data, 0, source

    def _fail(self, what: str):
        raise FormatError(f"{self.source}: corrupted .nvc header ({what})")

    def byte(self) -> int:
        if self.pos >= len(self.data):
            self._fail("it ends early")
        self.pos += 1
        return self.data[self.pos - 1]

    def bytes(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            self._fail("it ends early")
        self.pos += n
        return self.data[self.pos - n:self.pos]

    def uint(self) -> int:
        v = shift = 0
        while True:
            b = self.byte()
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return v
            if shift > 63:
                self._fail("an over-long number")

    def sint(self) -> int:
        v = self.uint()
        return v // 2 if v % 2 == 0 else -(v + 1) // 2

    def num(self):
        tag = self.byte()
        if tag == NUMBER_NONE:
            return None
        if tag == NUMBER_FLOAT32:
            return struct.unpack("<f", self.bytes(4))[0]
        if tag == NUMBER_FLOAT64:
            return struct.unpack("<d", self.bytes(8))[0]
        mantissa = self.sint()
        if abs(mantissa) >= 2 ** 53:
            self._fail("an over-long decimal")
        return float(f"{mantissa}e{tag - DECIMAL_BIAS}")

    def str(self) -> str:
        try:
            return self.bytes(self.uint()).decode("utf-8")
        except UnicodeDecodeError:
            self._fail("a string that is not UTF-8")

    def choice(self, table) -> str:
        index = self.uint()
        if index > len(table):
            self._fail(f"choice {index} of {len(table)}")
        return table[index - 1] if index else self.str()


def _put(w: _Writer, kind: str, v) -> None:
    if kind == "str":
        w.str(v)
    elif kind == "num":
        w.num(v)
    elif kind == "uint":
        w.uint(v)
    elif kind == "bool":
        if not isinstance(v, bool):
            raise _Unrepresentable(v)
        w.uint(int(v))
    elif kind == "vec3":
        if not isinstance(v, list) or len(v) != 3:
            raise _Unrepresentable(v)
        for x in v:
            w.num(x)
    elif kind == "ints6":
        if not isinstance(v, list) or len(v) != 6:
            raise _Unrepresentable(v)
        for x in v:
            w.sint(x)
    elif kind == "stopped":
        w.choice(v, STOPPED)
    elif kind == "device":
        w.choice(v, DEVICES)
    elif kind == "post_filter":
        if not isinstance(v, dict) or set(v) != {"shift", "weights", "offset"} or not isinstance(v["weights"], list):
            raise _Unrepresentable(v)
        w.uint(v["shift"])
        w.uint(len(v["weights"]))
        for x in v["weights"]:
            w.sint(x)
        w.sint(v["offset"])
    elif kind == "curve":
        if not isinstance(v, list):
            raise _Unrepresentable(v)
        w.uint(len(v))
        for point in v:
            if not isinstance(point, list) or len(point) != 3:
                raise _Unrepresentable(point)
            w.num(point[0])
            w.uint(point[1])
            w.num(point[2])


def _get(r: _Reader, kind: str):
    if kind == "str":
        return r.str()
    if kind == "num":
        return r.num()
    if kind == "uint":
        return r.uint()
    if kind == "bool":
        return bool(r.uint())
    if kind == "vec3":
        return [r.num() for _ in range(3)]
    if kind == "ints6":
        return [r.sint() for _ in range(6)]
    if kind == "stopped":
        return r.choice(STOPPED)
    if kind == "device":
        return r.choice(DEVICES)
    if kind == "post_filter":
        shift = r.uint()
        n = r.uint()
        if n > len(r.data):
            r._fail("an over-long post filter")
        return {"shift": shift, "weights": [r.sint() for _ in range(n)], "offset": r.sint()}
    n = r.uint()  # curve
    if n > len(r.data):
        r._fail("an over-long curve")
    return [[r.num(), r.uint(), r.num()] for _ in range(n)]


def _put_optional(w: _Writer, d: dict, keys) -> None:
    mask = sum(1 << i for i, (key, _) in enumerate(keys) if key in d)
    w.uint(mask)
    for key, kind in keys:
        if key in d:
            _put(w, kind, d[key])


def version_of(model: dict) -> int:
    """The compact format version a model entry needs."""
    return FILTERED_COMPACT_VERSION if "post_filter" in model else COMPACT_VERSION


def _get_optional(r: _Reader, keys) -> dict:
    mask = r.uint()
    if mask >> len(keys):
        r._fail("unknown optional fields")
    return {key: _get(r, kind) for i, (key, kind) in enumerate(keys) if mask >> i & 1}


def _pack(header: dict, section: dict) -> bytes:
    (model,) = header["models"]
    library = LIBRARY.fullmatch(header["library"])
    if header["format"] != "neuralvol" or not library:
        raise _Unrepresentable(header)
    w = _Writer()
    for part in library.groups():
        w.uint(int(part))
    _put_optional(w, model, OPTIONAL_MODEL_KEYS)
    w.choice(model["dtype"], DTYPES)
    for n in model["dims"]:
        w.uint(n)
    for v in model["value_range"]:
        w.num(v)
    encoding = model["encoding"]
    w.choice(encoding["type"], ENCODING_NAMES)
    for key in ENCODINGS.get(encoding["type"], ()):
        w.uint(encoding[key])
    network = model["network"]
    if network != {"type": "relu_mlp", "width": network["width"], "hidden_layers": network["hidden_layers"],
                   "output_bias": True}:
        raise _Unrepresentable(network)
    w.uint(network["width"])
    w.uint(network["hidden_layers"])
    storage = model["storage"]
    if (storage.get("precision"), storage.get("allocation")) != ("quantised", "sqrt_size"):
        raise _Unrepresentable(storage)
    w.num(storage["table_step"])
    w.uint(len(storage["mlp_steps"]))
    for v in storage["mlp_steps"]:
        w.num(v)
    _put_optional(w, model["training"], TRAINING_KEYS)
    coding = section["coding"]
    w.choice(coding["symbols"], SYMBOL_DTYPES)
    w.uint(coding["count"])
    w.choice(coding["coder"], CODERS)
    if "segments" in coding:
        w.uint(len(coding["segments"]))
        for n in coding["segments"]:
            w.uint(n)
    return bytes(w.out)


def unpack(body: bytes, source: str, version: int = COMPACT_VERSION) -> tuple[dict, dict, int]:
    """(header without its section table, the section entry, bytes read) from the body of a
    version-3 (or version-5) file."""
    r = _Reader(body, source)
    library = "neuralvol " + ".".join(str(r.uint()) for _ in range(3))
    model = _get_optional(r, OPTIONAL_MODEL_KEYS)
    if ("post_filter" in model) != (version == FILTERED_COMPACT_VERSION):
        r._fail(f"a post filter in a version-{version} file" if "post_filter" in model
                else f"a version-{version} file without its post filter")
    model["dtype"] = r.choice(DTYPES)
    model["dims"] = [r.uint() for _ in range(3)]
    model["value_range"] = [r.num(), r.num()]
    kind = r.choice(ENCODING_NAMES)
    model["encoding"] = {"type": kind, **{key: r.uint() for key in ENCODINGS.get(kind, ())}}
    model["network"] = {"type": "relu_mlp", "width": r.uint(), "hidden_layers": r.uint(), "output_bias": True}
    storage = {"precision": "quantised", "allocation": "sqrt_size", "table_step": r.num()}
    n_steps = r.uint()
    if n_steps > len(body):
        r._fail("too many MLP steps")
    storage["mlp_steps"] = [r.num() for _ in range(n_steps)]
    model["storage"] = storage
    model["training"] = _get_optional(r, TRAINING_KEYS)
    dtype = r.choice(SYMBOL_DTYPES)
    count = r.uint()
    coding = {"coder": r.choice(CODERS), "symbols": dtype, "count": count}
    if coding["coder"] == CODERS[1]:
        n_segments = r.uint()
        if n_segments > len(body):
            r._fail("too many segments")
        coding["segments"] = [r.uint() for _ in range(n_segments)]
    header = {"format": "neuralvol", "version": version, "library": library, "models": [model]}
    section = {"name": "0/symbols", "dtype": dtype, "shape": [count], "coding": coding}
    return header, section, r.pos


def pack(header: dict, section: dict) -> bytes | None:
    """The version-3 (version-5 with a post filter: :func:`version_of`) body for ``header``
    and its one coded ``section`` (offsets and CRC left out), or None when the layout cannot
    hold them exactly."""
    try:
        version = version_of(header["models"][0])
        body = _pack(header, section)
        back_header, back_section, used = unpack(body, "compact header", version)
    except (_Unrepresentable, KeyError, TypeError, ValueError, AttributeError, FormatError, IndexError):
        return None
    same_header = back_header == dict(header, version=version)
    same_section = back_section == {k: section[k] for k in ("name", "dtype", "shape", "coding") if k in section}
    return body if same_header and same_section and used == len(body) else None
