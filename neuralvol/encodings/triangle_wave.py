"""Triangle-wave encoding with tiny-cuda-nn's ``TriangleWave`` semantics.

A frequency encoding with triangle waves instead of sines. For input dimension ``d`` and
``i`` in 0 .. n_frequencies-1: ``v = x_d * 2^(i-1) + i/4`` (the small per-frequency
phase shift disambiguates locations), output ``4 * |v - floor(v) - 1/2| - 1`` in [-1, 1];
element ``d * F + i``. No parameters.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._analytic import AnalyticEncoding, FrequencyBandsConfig


@dataclass(frozen=True)
class TriangleWaveConfig(FrequencyBandsConfig):
    n_frequencies: int = 12

    kind = "triangle_wave"


class TriangleWaveEncoding(AnalyticEncoding):
    def __init__(self, config: TriangleWaveConfig, generator=None):
        super().__init__(config, generator)
        nf = config.n_frequencies
        i = torch.arange(nf, dtype=torch.float32)
        self.register_buffer("_scale", (2.0 ** (i - 1)).repeat(3).view(-1, 1), persistent=False)
        self.register_buffer("_shift", (0.25 * i).repeat(3).view(-1, 1), persistent=False)
        self._dims = torch.arange(3).repeat_interleave(nf)

    def encode_feature_major(self, x: torch.Tensor) -> torch.Tensor:
        v = x.t()[self._dims.to(x.device)] * self._scale + self._shift
        return torch.abs(v - torch.floor(v) - 0.5) * 4.0 - 1.0
