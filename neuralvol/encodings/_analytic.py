"""Shared plumbing for parameter-free encodings (frequency, triangle wave, identity).

They store no parameters: ``table`` is an empty parameter so the container's
``i/encoding`` section (shape ``[0]``) and the fitting code treat every encoding alike.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FrequencyBandsConfig:
    """A parameter-free encoding of ``n_frequencies`` bands per axis, each giving
    ``outputs_per_band`` values (subclasses set ``kind`` and the default band count)."""

    n_frequencies: int

    kind = ""
    outputs_per_band = 1

    def to_dict(self) -> dict:
        return {"type": self.kind, "n_frequencies": self.n_frequencies}

    @classmethod
    def from_dict(cls, d: dict):
        return cls(int(d["n_frequencies"]))

    @property
    def n_params(self) -> int:
        return 0

    @property
    def n_output_dims(self) -> int:
        return 3 * self.outputs_per_band * self.n_frequencies


class AnalyticEncoding(torch.nn.Module):
    """Base class: subclasses implement ``encode_feature_major(x) -> [n_output_dims, N]``."""

    def __init__(self, config, generator: torch.Generator | None = None):
        super().__init__()
        self.config = config
        self.table = torch.nn.Parameter(torch.zeros(0), requires_grad=False)

    @property
    def n_output_dims(self) -> int:
        return self.config.n_output_dims

    def encode_grid(self, axes, shape) -> torch.Tensor:
        """Encode the tensor-product grid given as broadcastable per-axis views -> ``[D, K]``."""
        x, y, z = (a.expand(shape).reshape(-1) for a in axes)
        return self.encode_feature_major(torch.stack([x, y, z], dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode_feature_major(x).t()

    def feature_major_order(self) -> torch.Tensor:
        return torch.arange(self.n_output_dims)
