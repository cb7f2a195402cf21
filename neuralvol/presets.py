"""Named, fixed network architectures (used by meta-learned initialisations).

Unlike the budget-driven :func:`neuralvol.architecture.choose_architecture`, a preset does not
depend on the volume: the finest grid resolution is a constant, so one initialisation fits any
volume (coordinates are normalised to the unit cube anyway).
"""
from __future__ import annotations

from .encodings import HashGridConfig
from .errors import InputError
from .model import ModelConfig

# name: (levels L, features F, table size T, base resolution N0, finest resolution Nmax, MLP width, hidden layers)
PRESETS = {
    "small": (8, 2, 2048, 4, 64, 16, 2),
    "medium": (12, 2, 4096, 8, 128, 32, 2),
    "large": (16, 2, 8192, 8, 256, 64, 2),
}


def preset_config(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    L, F, T, n0, nmax, width, layers = PRESETS[name]
    return ModelConfig(HashGridConfig(L, F, T, n0, nmax), width, layers)
