"""No encoding: the MLP sees the raw normalised coordinates (x, y, z) in [0, 1]^3."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ._analytic import AnalyticEncoding


@dataclass(frozen=True)
class IdentityConfig:
    kind = "identity"

    def to_dict(self) -> dict:
        return {"type": self.kind}

    @classmethod
    def from_dict(cls, d: dict) -> "IdentityConfig":
        return cls()

    @property
    def n_params(self) -> int:
        return 0

    @property
    def n_output_dims(self) -> int:
        return 3


class IdentityEncoding(AnalyticEncoding):
    def encode_feature_major(self, x: torch.Tensor) -> torch.Tensor:
        return x.t().contiguous()
