"""Header keys of multi-component fields (format version 4; docs/FORMAT.md, "Multi-component fields").

A field of ``C`` components (a ``[z, y, x, C]`` array, a VTK point array of ``C``
components) is one network with ``C`` outputs (``"network": {"outputs": C}``) and a
``"components"`` list in its model entry, one ``{"value_range": [lo, hi]}`` per component
(plus ``"name"`` when VTK named it), which normalises each output on its own. Files without
either key are written exactly as before.
"""
from __future__ import annotations

import math

from ..errors import FormatError


def components_entry(info) -> dict:
    """The ``"components"`` key of a model entry for ``info`` (a VolumeInfo with components)."""
    out = []
    for name, (lo, hi) in info.components:
        item = {"value_range": [float(lo), float(hi)]}
        if name:
            item["name"] = name
        out.append(item)
    return {"components": out}


def needs_extended(entries: list[dict]) -> bool:
    """Whether any model entry uses a version-4 key."""
    return any("components" in e or "outputs" in e.get("network", {}) for e in entries)


def read_components(entry: dict, source: str, index: int):
    """The VolumeInfo ``components`` of a model entry: None for a scalar field."""
    if "components" not in entry:
        return None
    items = entry["components"]
    if not isinstance(items, list) or not items:
        raise FormatError(f"{source}: model {index} has an invalid 'components' list in the header")
    out = []
    for c, item in enumerate(items):
        rng = item.get("value_range") if isinstance(item, dict) else None
        name = item.get("name", "") if isinstance(item, dict) else None
        if not (isinstance(rng, list) and len(rng) == 2
                and all(isinstance(v, (int, float)) and math.isfinite(v) for v in rng)) or not isinstance(name, str):
            raise FormatError(f"{source}: model {index} component {c} is invalid in the header: {str(item)[:60]}")
        out.append((name, (float(rng[0]), float(rng[1]))))
    return tuple(out)
