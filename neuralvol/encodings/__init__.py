"""Input encodings: map coordinates in [0, 1]^3 to features for the MLP.

Every encoding has a config (``kind``, ``to_dict``/``from_dict``, ``n_params``,
``n_output_dims``) and a module with ``encode_feature_major(x) -> [D, N]``,
``encode_grid(axes, shape) -> [D, K]``, ``feature_major_order()`` and a ``table``
parameter (empty for parameter-free encodings) stored as the ``i/encoding`` section.
"""
import dataclasses

from .dense_grid import DenseGridConfig, DenseGridEncoding
from .frequency import FrequencyConfig, FrequencyEncoding
from .hashgrid import (HASHGRID_CONFIGS, CubicHashGridConfig, HashGridConfig, HashGridEncoding,
                       QuadraticHashGridConfig, hashgrid_config)
from .identity import IdentityConfig, IdentityEncoding
from .triangle_wave import TriangleWaveConfig, TriangleWaveEncoding



@dataclasses.dataclass(frozen=True)
class EncodingKind:
    """One kind of input encoding: its config, its module, and its code in the compact
    (version 3) header. Codes are a format constant: a new kind takes the next free one."""

    config: type
    encoding: type
    wire_code: int

    @property
    def name(self) -> str:
        return self.config.kind

    @property
    def fields(self) -> tuple[str, ...]:
        """The config's integer fields, in the order the compact header stores them."""
        return tuple(f.name for f in dataclasses.fields(self.config))


# The one registry of encoding kinds, in the order they are offered (CLI, studies).
ENCODINGS = {k.name: k for k in (
    EncodingKind(HashGridConfig, HashGridEncoding, wire_code=0),
    EncodingKind(FrequencyConfig, FrequencyEncoding, wire_code=2),
    EncodingKind(TriangleWaveConfig, TriangleWaveEncoding, wire_code=3),
    EncodingKind(DenseGridConfig, DenseGridEncoding, wire_code=1),
    EncodingKind(IdentityConfig, IdentityEncoding, wire_code=4),
    EncodingKind(QuadraticHashGridConfig, HashGridEncoding, wire_code=5),
    EncodingKind(CubicHashGridConfig, HashGridEncoding, wire_code=6),
)}
ENCODING_KINDS = tuple(ENCODINGS)
# Kind names by compact-header code.
WIRE_ORDER = tuple(sorted(ENCODINGS, key=lambda name: ENCODINGS[name].wire_code))
assert [ENCODINGS[n].wire_code for n in WIRE_ORDER] == list(range(len(WIRE_ORDER))), "wire codes must be 0..n-1"


def encoding_config_from_dict(d: dict):
    """The encoding configuration recorded in a container header."""
    kind = d.get("type")
    if kind not in ENCODINGS:
        from ..errors import FormatError
        raise FormatError(f"unknown encoding type {kind!r}; known: {', '.join(sorted(ENCODINGS))}")
    return ENCODINGS[kind].config.from_dict(d)


def make_encoding(config, generator=None):
    return ENCODINGS[config.kind].encoding(config, generator=generator)


__all__ = ["HashGridConfig", "HashGridEncoding", "QuadraticHashGridConfig", "CubicHashGridConfig",
           "HASHGRID_CONFIGS", "hashgrid_config", "FrequencyConfig", "FrequencyEncoding", "TriangleWaveConfig",
           "TriangleWaveEncoding", "DenseGridConfig", "DenseGridEncoding", "IdentityConfig", "IdentityEncoding",
           "EncodingKind", "ENCODINGS", "ENCODING_KINDS", "WIRE_ORDER", "encoding_config_from_dict", "make_encoding"]
