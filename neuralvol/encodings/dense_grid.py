"""Dense multi-resolution grid: the hash grid's levels, all stored densely (no hashing).

Same maths as :mod:`.hashgrid` (level scales, cell positions, trilinear weights, dense
index ``x + y*res + z*res^2``), but every level holds its full ``res_l^3`` entries (rounded
up to a multiple of 8), so the parameter budget decides the finest resolution.
"""
from __future__ import annotations

from dataclasses import dataclass

from .hashgrid import HashGridConfig, HashGridEncoding, _next_multiple


@dataclass(frozen=True)
class DenseGridConfig:
    n_levels: int = 8
    n_features: int = 2
    base_resolution: int = 4
    finest_resolution: int = 32

    kind = "dense_grid"

    def to_dict(self) -> dict:
        return {"type": self.kind, "n_levels": self.n_levels, "n_features": self.n_features,
                "base_resolution": self.base_resolution, "finest_resolution": self.finest_resolution}

    @classmethod
    def from_dict(cls, d: dict) -> "DenseGridConfig":
        return cls(*(int(d[k]) for k in ("n_levels", "n_features", "base_resolution", "finest_resolution")))

    def as_hashgrid(self) -> HashGridConfig:
        """The equivalent hash-grid configuration, with a table large enough that no level hashes."""
        probe = HashGridConfig(self.n_levels, self.n_features, 8, self.base_resolution, self.finest_resolution)
        table = _next_multiple(max(r ** 3 for r in probe.level_resolutions()), 8)
        return HashGridConfig(self.n_levels, self.n_features, table, self.base_resolution, self.finest_resolution)

    @property
    def n_params(self) -> int:
        return self.as_hashgrid().n_params

    @property
    def n_output_dims(self) -> int:
        return self.n_levels * self.n_features


class DenseGridEncoding(HashGridEncoding):
    def __init__(self, config: DenseGridConfig, generator=None):
        super().__init__(config.as_hashgrid(), generator=generator)
        assert all(self._dense)
        self.dense_config = config
