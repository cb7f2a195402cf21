"""NeRF-style positional encoding with tiny-cuda-nn's ``Frequency`` semantics.

Per input dimension ``d`` and frequency ``i`` (0 .. n_frequencies-1) the outputs are
``sin(2^i * pi * x_d)`` and ``cos(2^i * pi * x_d)`` (cos as sin with a pi/2 phase);
element ``d * 2F + 2i + {0: sin, 1: cos}``. No parameters.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ._analytic import AnalyticEncoding, FrequencyBandsConfig


@dataclass(frozen=True)
class FrequencyConfig(FrequencyBandsConfig):
    n_frequencies: int = 8

    kind = "frequency"
    outputs_per_band = 2  # sin and cos


class FrequencyEncoding(AnalyticEncoding):
    def __init__(self, config: FrequencyConfig, generator=None):
        super().__init__(config, generator)
        nf = config.n_frequencies
        freqs = (2.0 ** torch.arange(nf, dtype=torch.float32)) * math.pi
        self.register_buffer("_freqs", freqs.repeat_interleave(2).repeat(3).view(-1, 1), persistent=False)
        self.register_buffer("_phase", torch.tensor([0.0, math.pi / 2]).repeat(3 * nf).view(-1, 1),
                             persistent=False)
        self._dims = torch.arange(3).repeat_interleave(2 * nf)

    def encode_feature_major(self, x: torch.Tensor) -> torch.Tensor:
        xt = x.t()[self._dims.to(x.device)]          # [3 * 2F, N]
        return torch.sin(xt * self._freqs + self._phase)
