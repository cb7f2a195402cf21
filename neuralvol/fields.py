"""Multi-component fields and warm starts: the array-side rules :func:`neuralvol.compress` uses.

A ``[z, y, x, C]`` array is fitted by one network with ``C`` outputs, each component
normalised to [0, 1] by its own range. Measured (``benchmarks/vector_design.py --quick``,
the gradient of viscous fingers 64^3, 20k parameters, 300 steps): one network with 3 outputs
reached 34.7/34.6/34.2 dB per component and 28.6 dB in magnitude against 33.5/32.7/33.1 and
26.6 dB for three networks of a third of the parameters each, and fitted 3x faster.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .errors import InputError
from .model import MAX_OUTPUTS


def check_components(shape: tuple[int, ...]) -> None:
    """A 4-D shape is ``[z, y, x, C]`` with 1 <= C <= MAX_OUTPUTS."""
    c = shape[3]
    if not 1 <= c <= MAX_OUTPUTS:
        raise InputError(f"a 4-D array is read as [z, y, x, C] with at most {MAX_OUTPUTS} components; shape "
                         f"{shape} has {c}: move the component axis last (numpy.moveaxis)")


def component_ranges(data: np.ndarray, names: Sequence[str] | None = None):
    """VolumeInfo ``components`` of ``data``: None for a 3-D array, else (name, (lo, hi)) per component."""
    if data.ndim != 4:
        if names:
            raise InputError(f"component names were given for a one-component [z, y, x] array")
        return None
    c = data.shape[3]
    names = [""] * c if names is None else [str(n) for n in names]
    if len(names) != c:
        raise InputError(f"{len(names)} component names for an array of {c} components")
    flat = data.reshape(-1, c)
    lo, hi = flat.min(axis=0), flat.max(axis=0)
    return tuple((n, (float(a), float(b))) for n, a, b in zip(names, lo, hi))


def normalised_target(data: np.ndarray, info) -> np.ndarray:
    """float32 values in [0, 1]: by the whole range for a scalar field, per component for a
    multi-component one (a constant component is all zeros; its range alone decodes it).
    ``[z, y, x]`` for one network output, ``[z, y, x, C]`` for C > 1."""
    values = data.astype(np.float64)
    if info.components is None:
        lo, hi = info.value_range
        return ((values - lo) / (hi - lo)).astype(np.float32)
    ranges = np.array([r for _, r in info.components], dtype=np.float64)
    span = ranges[:, 1] - ranges[:, 0]
    target = ((values - ranges[:, 0]) / np.where(span > 0, span, 1.0)).astype(np.float32)
    return target[..., 0] if target.shape[3] == 1 else target


def warm_start_config(previous, info, config, init, preset):
    """The network of a fit that starts from ``previous`` (a NeuralVolume): its shape,
    checked against the new array and the other options."""
    if init is not None or preset is not None:
        raise InputError("a warm start keeps the previous step's network: drop init/preset")
    if config is not None and config != previous.config:
        raise InputError("a warm start keeps the previous step's network; the given config differs")
    if tuple(previous.dims) != tuple(info.dims) or previous.n_components != info.n_components:
        raise InputError(f"cannot warm-start a {'x'.join(map(str, info.dims))} array of {info.n_components} "
                         f"component(s) from a {'x'.join(map(str, previous.dims))} one of "
                         f"{previous.n_components}: every step of a series needs the same grid")
    return previous.config


def component_errors(original: np.ndarray, decoded: np.ndarray) -> dict:
    """PSNR per component and of the magnitude, and the vector magnitude error, of a
    ``[z, y, x, C]`` field: ``{"psnr": [...], "magnitude_psnr", "magnitude_max_error",
    "magnitude_rms_error"}`` (errors in the field's units)."""
    from .metrics import psnr
    a, b = original.astype(np.float64), decoded.astype(np.float64)
    mag_a, mag_b = np.linalg.norm(a, axis=-1), np.linalg.norm(b, axis=-1)
    err = np.abs(mag_a - mag_b)
    return {"psnr": [psnr(a[..., c], b[..., c]) for c in range(a.shape[-1])],
            "magnitude_psnr": psnr(mag_a, mag_b), "magnitude_max_error": float(err.max()),
            "magnitude_rms_error": float(np.sqrt(np.mean(err ** 2)))}


def component_report(vol, original: np.ndarray) -> str:
    """One line: PSNR per component and of the magnitude, and the magnitude error."""
    e = component_errors(original, vol.decode(compute="float32"))
    names = vol.component_names or [""] * vol.n_components
    per = ", ".join(f"{n or c} {p:.2f}" for c, (n, p) in enumerate(zip(names, e["psnr"])))
    return (f"PSNR per component (dB): {per}; magnitude {e['magnitude_psnr']:.2f} dB, "
            f"|magnitude error| max {e['magnitude_max_error']:.4g} rms {e['magnitude_rms_error']:.4g}")
