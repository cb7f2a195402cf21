"""The `.nvc` header schema: volumes <-> model entries, and whole files <-> volumes.

A model entry (documented in ``docs/FORMAT.md``) records where the field lives, the
network, how its parameters are stored and how it was trained. Writing picks the section
layout (float16 tensors, or one coded section of quantised symbols) and lets
:mod:`neuralvol.bitstream.container` choose the format version; reading checks every
field and raises a one-line :class:`FormatError` naming what is wrong.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from .. import error_bound, quantise
from .. import volume as _volume  # NeuralVolume is built here and sized by to_bytes: a module reference
from ..errors import FormatError
from ..model import ModelConfig, NeuralField
from ..postfilter import PostFilter
from ..version import LIBRARY_VERSION
from . import components, container
from .records import StorageEntry, TrainingSummary

if TYPE_CHECKING:
    from ..volume import NeuralVolume

STORAGE_PRECISION = "float16"
VALUE_DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                "float16", "float32", "float64")


def model_entry(vol: NeuralVolume) -> dict:
    info = vol.info
    lo, hi = (float(v) for v in info.value_range)
    offset, scale = lo, hi - lo  # the whole field's range (per-component ones: "components")
    entry = {
        "array_name": info.array_name,
        "dims": list(info.dims),
        "spacing": [float(s) for s in info.spacing],
        "origin": [float(o) for o in info.origin],
        "dtype": info.dtype,
        "value_range": [float(v) for v in info.value_range],
        "normalisation": {"offset": offset, "scale": scale},
    }
    # Optional keys are written only when they say something (each costs header bytes).
    if info.name and info.name != info.array_name:
        entry["name"] = info.name
    if info.time is not None:
        entry["time"] = float(info.time)
    if info.extent is not None:
        entry["extent"] = list(info.extent)
    if info.components is not None:
        entry.update(components.components_entry(info))
    entry.update(vol.config.to_dict())
    entry["storage"] = vol.storage.to_dict() if vol.storage is not None else {"precision": STORAGE_PRECISION}
    entry["training"] = vol.training.to_dict()
    if vol.correction is not None:
        entry[error_bound.KEY] = vol.correction.entry()
    if vol.post_filter is not None:
        entry["post_filter"] = vol.post_filter.to_dict()
    if vol.storage is not None:
        # Version-2 files leave out what a reader can infer (bytes count on small files):
        # the normalisation (it follows from value_range) and default spacing, origin, name.
        del entry["normalisation"]
        for key, default in V2_DEFAULTS.items():
            if entry[key] == default:
                del entry[key]
    return entry


def to_bytes(volumes: Sequence[NeuralVolume], compact: bool = True, extra: dict | None = None) -> bytes:
    """The `.nvc` bytes of ``volumes``; ``compact=False`` keeps a single quantised model
    in format version 2 (JSON header) instead of the compact version 3. ``extra``: more
    top-level header keys (e.g. ``bricks``, which makes the file version 4)."""
    sections = []
    for i, vol in enumerate(volumes):
        if vol.storage is not None:
            groups = quantise.groups_from_storage(vol.network, vol.storage)
            symbols = quantise.quantise(groups, quantise.flat_tensors(vol.network))
            sections.append(container.Section(f"{i}/symbols", symbols, coded=True,
                                              segmentations=tuple(quantise.segmentations(groups))))
            continue
        for name, tensor in vol.network.named_tensors().items():
            sections.append(container.Section(f"{i}/{name}", tensor.detach().cpu().numpy().astype(np.float16)))
    entries = [model_entry(v) for v in volumes]
    extended = components.needs_extended(entries)
    for i, vol in enumerate(volumes):
        if vol.correction is not None:
            extended = True
            sections += [container.Section(f"{i}/{name}", symbols, coded=True)
                         for name, symbols in vol.correction.symbol_arrays().items()]
    header = {"format": "neuralvol", "version": container.version_for(sections, dict(extra or {}, models=entries),
                                                                       extended),
              "library": f"neuralvol {LIBRARY_VERSION}", "models": entries}
    header.update(extra or {})
    return container.encode(header, sections, compact)


# Keys a version-2 writer omits when they hold these values.
V2_DEFAULTS = {"array_name": "values", "spacing": [1.0, 1.0, 1.0], "origin": [0.0, 0.0, 0.0]}


def _field(entry: dict, key: str, kind, source: str, index: int):
    if key not in entry and key in V2_DEFAULTS:
        return V2_DEFAULTS[key]
    if key not in entry:
        raise FormatError(f"{source}: model {index} in the header lacks {key!r}")
    value = entry[key]
    ok = {
        "str": isinstance(value, str),
        "vec3i": isinstance(value, list) and len(value) == 3 and all(isinstance(v, int) and v >= 1 for v in value),
        "vec3f": isinstance(value, list) and len(value) == 3 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value),
        "range": isinstance(value, list) and len(value) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in value),
        "dict": isinstance(value, dict),
    }[kind]
    if not ok:
        raise FormatError(f"{source}: model {index} has an invalid {key!r} in the header: {str(value)[:60]}")
    return value


def volumes_from_bytes(data: bytes, source: str = "file") -> list[NeuralVolume]:
    return header_and_volumes(data, source)[1]


def header_and_volumes(data: bytes, source: str = "file") -> tuple[dict, list[NeuralVolume]]:
    """The verified header and every model of a file."""
    header, arrays = container.decode(data, source)
    if header.get("format") != "neuralvol":
        raise FormatError(f"{source}: header does not describe a neuralvol volume")
    models = header.get("models")
    if not isinstance(models, list) or not models:
        raise FormatError(f"{source}: the header lists no models")
    volumes = []
    for i, entry in enumerate(models):
        if not isinstance(entry, dict):
            raise FormatError(f"{source}: model {i} in the header is not an object")
        dtype = _field(entry, "dtype", "str", source, i)
        if dtype not in VALUE_DTYPES:
            raise FormatError(f"{source}: model {i} has unsupported dtype {dtype!r}")
        info = _volume.VolumeInfo(
            dims=tuple(_field(entry, "dims", "vec3i", source, i)),
            spacing=tuple(float(v) for v in _field(entry, "spacing", "vec3f", source, i)),
            origin=tuple(float(v) for v in _field(entry, "origin", "vec3f", source, i)),
            array_name=_field(entry, "array_name", "str", source, i),
            dtype=dtype,
            value_range=tuple(float(v) for v in _field(entry, "value_range", "range", source, i)),
            time=entry.get("time") if isinstance(entry.get("time"), (int, float)) else None,
            name=entry.get("name") if isinstance(entry.get("name"), str) else "",
            extent=tuple(entry["extent"]) if isinstance(entry.get("extent"), list) and len(entry["extent"]) == 6 else None,
            components=components.read_components(entry, source, i),
        )
        _field(entry, "encoding", "dict", source, i)
        _field(entry, "network", "dict", source, i)
        try:
            config = ModelConfig.from_dict(entry)
        except FormatError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"{source}: model {i} has an invalid network description ({exc})") from None
        if config.n_outputs != info.n_components:
            raise FormatError(f"{source}: model {i} has {info.n_components} component(s) but a network of "
                              f"{config.n_outputs} output(s)")
        network = NeuralField(config)
        storage = entry.get("storage") if isinstance(entry.get("storage"), dict) else {}
        training = TrainingSummary.from_dict(entry["training"] if isinstance(entry.get("training"), dict) else {})
        if storage.get("precision") == "quantised":
            try:
                stored = StorageEntry.from_dict(storage)
            except (KeyError, TypeError, ValueError) as exc:
                raise FormatError(f"{source}: invalid quantisation entry for '{i}/symbols' ({exc})") from None
            network.load_tensors(_quantised_tensors(network, stored, arrays, f"{i}/symbols", source))
            volumes.append(_volume.NeuralVolume(network, info, training, storage=stored))
            continue
        if storage.get("precision", STORAGE_PRECISION) != STORAGE_PRECISION:
            raise FormatError(f"{source}: model {i} has unknown storage precision {storage.get('precision')!r}")
        tensors = {}
        for name, shape in network.expected_shapes().items():
            key = f"{i}/{name}"
            if key not in arrays:
                raise FormatError(f"{source}: section {key!r} is missing")
            if tuple(arrays[key].shape) != shape:
                raise FormatError(f"{source}: section {key!r} has shape {arrays[key].shape}, the network needs {shape}")
            tensors[name] = torch.from_numpy(arrays[key].astype(np.float32))
        network.load_tensors(tensors)
        volumes.append(_volume.NeuralVolume(network, info, training))
    for i, (entry, vol) in enumerate(zip(models, volumes)):
        vol.correction = error_bound.from_entry(entry, arrays, i, math.prod(vol.dims), source)
        if "post_filter" in entry:
            try:
                vol.post_filter = PostFilter.from_dict(entry["post_filter"])
            except (KeyError, TypeError, ValueError) as exc:
                raise FormatError(f"{source}: model {i} has an invalid post filter in the header ({exc})") from None
            if vol.n_components != 1:
                raise FormatError(f"{source}: model {i} has a post filter but {vol.n_components} components; "
                                  f"post filters are for scalar fields")
    if len(volumes) == 1:
        volumes[0]._nbytes = len(data)
    return header, volumes


def _quantised_tensors(network: NeuralField, storage: StorageEntry, arrays: dict, key: str, source: str) -> dict:
    try:
        groups = quantise.groups_from_storage(network, storage)
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{source}: invalid quantisation entry for {key!r} ({exc})") from None
    shapes = network.expected_shapes()
    sizes = {name: int(np.prod(shape)) for name, shape in shapes.items()}
    if key not in arrays:
        raise FormatError(f"{source}: section {key!r} is missing")
    symbols = arrays[key]
    if symbols.ndim != 1 or symbols.size != sum(sizes.values()):
        raise FormatError(f"{source}: section {key!r} holds {symbols.size} symbols, the network needs "
                          f"{sum(sizes.values())}")
    flat = quantise.dequantise(groups, symbols, sizes)
    return {name: torch.from_numpy(flat[name].reshape(shapes[name])) for name in shapes}
