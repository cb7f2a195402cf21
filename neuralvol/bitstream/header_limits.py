"""Sane limits on what an `.nvc` header may make a reader allocate, checked before it does.

A file whose CRCs are valid can still lie: dims of 200000^3 (a 29 TiB decode), an MLP
width of 10^7 (a 400 TB weight matrix), 10^6 hidden layers (33 s of building layers
before anything noticed). :func:`check_header` compares every size the parsed header
implies with sane bounds and with what its sections hold, arithmetically (nothing is
allocated, no per-level or per-layer loop runs on an unchecked count), before any section
is decoded or any network is built. Every failure is a one-line :class:`FormatError`
naming the field and the limit.

Each limit sits far above anything neuralvol writes (the encoder's largest shapes are
noted beside it), so no real file comes near one.
"""
from __future__ import annotations

import math

from ..encodings import ENCODINGS, encoding_config_from_dict
from ..errors import FormatError
from ..model import MAX_OUTPUTS, ModelConfig

# Each axis is at most VTK's int32 extent; the voxel count at most 2^40 (a 10^4-cubed grid,
# 4 TiB as float32; the largest public volumes are ~2^36 voxels).
MAX_DIM = 2 ** 31 - 1
MAX_VOXELS = 2 ** 40
# Encoding sizes. The architecture ladder writes at most 16 levels of 2 features and a
# finest resolution of the largest volume axis; presets at most T = 8192. Levels and
# frequencies are looped over in Python (and 2^i overflows float32 past i = 127), so
# they are bounded before any config helper runs.
ENCODING_LIMITS = {
    "n_levels": 64,
    "n_features": 64,
    "table_size": 2 ** 30,
    "base_resolution": 2 ** 20,
    "finest_resolution": 2 ** 20,
    "n_frequencies": 64,
}
# The MLP: the encoder searches widths up to 4096 and uses at most 3 hidden layers.
MAX_MLP_WIDTH = 2 ** 16
MAX_HIDDEN_LAYERS = 256
# 2^31 parameters are 8 GiB as float32 (plus as much again for the encoder's optimiser
# state); the encoder fits networks of at most a few million.
MAX_PARAMETERS = 2 ** 31
MAX_MODELS = 2 ** 16
# Raw LZMA1 cannot expand more than ~7000:1: its longest match is 273 bytes and each
# match costs at least ~14 binary decisions of >= 0.022 bits (11-bit probabilities,
# adaptation shift 5). Measured: 2^24 zero bytes code to 2422 bytes with our filters (6927:1).
# A coded section claiming more symbols than 2^14 times its bytes cannot hold them.
MAX_LZMA_EXPANSION = 2 ** 14
LZMA_CODER = "lzma1-raw-lc0-4k"
FLOAT32_MAX = 3.4028234663852886e38


def _fail(source: str, where: str, what: str) -> None:
    raise FormatError(f"{source}: {where} {what}")


def _size(n: int) -> str:
    """An integer for a message: exact up to 2^64, else its power of two (Python refuses to
    print integers of over 4300 digits, and a shape's product can have more)."""
    return str(n) if abs(n) <= 2 ** 64 else f"about {'-' if n < 0 else ''}2^{abs(n).bit_length() - 1}"


def _finite(v) -> bool:
    try:
        return math.isfinite(float(v))
    except OverflowError:  # an integer beyond float64
        return False


def _bounded_int(value, lo: int, hi: int, source: str, where: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        _fail(source, where, f"has a non-integer {name!r} ({str(value)[:40]})")
    if not lo <= value <= hi:
        _fail(source, where, f"has {name} {_size(value)}, outside {lo}..{hi}")
    return value


def _count(shape) -> int | None:
    """Elements of a section shape (a list of non-negative ints), in exact integers."""
    if not isinstance(shape, list) or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                                              for n in shape):
        return None
    return math.prod(shape)


def check_sections(table: list, payload_bytes: int, source: str) -> None:
    """Every section's implied element count against MAX_PARAMETERS and what its bytes can hold."""
    for entry in table:
        if not isinstance(entry, dict):
            _fail(source, "the section table", f"has a non-object entry {str(entry)[:40]}")
        where = f"section {str(entry.get('name'))[:40]!r}"
        if not isinstance(entry.get("name"), str) or not isinstance(entry.get("dtype"), str):
            _fail(source, where, "has a name or dtype that is not a string")
        for key in ("offset", "nbytes", "crc32"):
            _bounded_int(entry.get(key), 0, 2 ** 64, source, where, key)
        count = _count(entry.get("shape"))
        if count is None:
            _fail(source, where, f"has an invalid shape {str(entry.get('shape'))[:40]}")
        if count > MAX_PARAMETERS:
            _fail(source, where, f"claims {_size(count)} elements, more than the limit of {MAX_PARAMETERS}")
        nbytes = entry["nbytes"]
        if nbytes > payload_bytes:
            _fail(source, where, f"claims {nbytes} bytes, the file holds {payload_bytes} after its header")
        coding = entry.get("coding")
        if isinstance(coding, dict) and coding.get("coder") == LZMA_CODER:
            raw = count * (2 if coding.get("symbols") == "int16" else 1)
            if raw > MAX_LZMA_EXPANSION * max(nbytes, 1):
                _fail(source, where, f"claims {count} symbols in {nbytes} coded bytes, more than LZMA can "
                                     f"expand to ({MAX_LZMA_EXPANSION}:1)")


def check_config(d: dict, source: str, where: str) -> ModelConfig:
    """The model config of a header entry (``encoding`` and ``network``), bounds checked
    before the config is built; its parameter count is then exact arithmetic."""
    encoding, network = d.get("encoding"), d.get("network")
    if not isinstance(encoding, dict) or not isinstance(network, dict):
        _fail(source, where, "lacks an encoding or network description")
    kind = encoding.get("type")
    if not isinstance(kind, str) or kind not in ENCODINGS:
        _fail(source, where, f"has unknown encoding type {str(kind)[:40]!r}; known: {', '.join(sorted(ENCODINGS))}")
    fields = ENCODINGS[kind].fields
    for name in fields:
        if name not in encoding:
            _fail(source, where, f"has a {kind} encoding without {name!r}")
        _bounded_int(encoding[name], 1, ENCODING_LIMITS[name], source, where, f"encoding {name}")
    width = _bounded_int(network.get("width"), 1, MAX_MLP_WIDTH, source, where, "MLP width")
    layers = _bounded_int(network.get("hidden_layers"), 0, MAX_HIDDEN_LAYERS, source, where, "MLP hidden_layers")
    outputs = _bounded_int(network.get("outputs", 1), 1, MAX_OUTPUTS, source, where, "network outputs")
    config = ModelConfig(encoding_config_from_dict(encoding), width, layers, n_outputs=outputs)
    if config.n_params > MAX_PARAMETERS:
        _fail(source, where, f"describes a network of {config.n_params} parameters, more than the limit of "
                             f"{MAX_PARAMETERS}")
    return config


def _check_model(entry: dict, index: int, sections: dict, source: str) -> int:
    where = f"model {index}"
    dims = entry.get("dims")
    # Missing or mistyped dims are reported by the schema reader (neuralvol.volume); only
    # their size matters here, and only a decode allocates by them.
    if isinstance(dims, list) and len(dims) == 3 and all(isinstance(n, int) for n in dims):
        for axis, n in zip("xyz", dims):
            _bounded_int(n, 1, MAX_DIM, source, where, f"dims {axis}")
        if math.prod(dims) > MAX_VOXELS:
            _fail(source, where, f"has dims {dims}: {math.prod(dims)} voxels, more than the limit of {MAX_VOXELS}")
    else:
        dims = None
    for key in ("spacing", "origin", "value_range", "time"):
        values = entry.get(key) if isinstance(entry.get(key), list) else [entry.get(key)]
        if not all(_finite(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)):
            _fail(source, where, f"has a non-finite {key} (in float64): {str(entry[key])[:60]}")
    value_range = entry.get("value_range")
    if (isinstance(value_range, list) and len(value_range) == 2
            and all(isinstance(v, (int, float)) for v in value_range)
            and not math.isfinite(float(value_range[1]) - float(value_range[0]))):
        _fail(source, where, f"has a value_range {value_range} whose span overflows float64")
    extent = entry.get("extent")
    if extent is not None and dims is not None and not (isinstance(extent, list) and len(extent) == 6
                                   and all(isinstance(v, int) and not isinstance(v, bool) for v in extent)
                                   and all(extent[2 * a + 1] - extent[2 * a] + 1 == dims[a] for a in range(3))):
        _fail(source, where, f"has an extent {str(extent)[:60]} that does not span its dims {dims}")
    config = check_config(entry, source, where)
    storage = entry.get("storage")
    if isinstance(storage, dict):
        steps = [storage.get("table_step")] + (storage["mlp_steps"] if isinstance(storage.get("mlp_steps"), list)
                                               else [])
        # Steps scale symbols in float32 (neuralvol.quantise.dequantise): past its range they are inf.
        if not all(_finite(v) and 0 < v <= FLOAT32_MAX for v in steps
                   if isinstance(v, (int, float)) and not isinstance(v, bool)):
            _fail(source, where, f"has quantisation steps outside 0 < step <= {FLOAT32_MAX:.4g} (float32): "
                                 f"{str(steps)[:60]}")
    if isinstance(storage, dict) and storage.get("precision") == "quantised":
        held = {f"{index}/symbols": config.n_params}
    else:
        held = {f"{index}/encoding": config.encoding.n_params, f"{index}/mlp": config.n_mlp_params}
    for name, needed in held.items():
        if name in sections and _count(sections[name].get("shape")) != needed:
            _fail(source, f"section {name!r}", f"holds {_count(sections[name].get('shape'))} values, "
                                               f"the network needs {needed}")
    return config.n_params


def check_header(header: dict, payload_bytes: int, source: str) -> None:
    """Reject a parsed header (with its section table) whose sizes are absurd or disagree
    with its sections; ``payload_bytes`` is what the file holds after the header."""
    table = header.get("sections")
    if isinstance(table, list):
        check_sections(table, payload_bytes, source)
    if isinstance(header.get("model"), dict):  # a .nvinit file: one network, no volume
        check_config(header["model"], source, "the initialisation's model")
    models = header.get("models")
    if not isinstance(models, list):
        return
    if len(models) > MAX_MODELS:
        _fail(source, "the header", f"lists {len(models)} models, more than the limit of {MAX_MODELS}")
    sections = {str(e.get("name")): e for e in table} if isinstance(table, list) else {}
    total = 0
    for i, entry in enumerate(models):
        if isinstance(entry, dict):
            total += _check_model(entry, i, sections, source)
    if total > MAX_PARAMETERS:
        _fail(source, "the header", f"describes {total} parameters in all, more than the limit of {MAX_PARAMETERS}")
