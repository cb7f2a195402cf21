"""Input encodings: map coordinates in [0, 1]^3 to features for the MLP.

Every encoding has a config (``kind``, ``to_dict``/``from_dict``, ``n_params``,
``n_output_dims``) and a module with ``encode_feature_major(x) -> [D, N]``,
``encode_grid(axes, shape) -> [D, K]``, ``feature_major_order()`` and a ``table``
parameter (empty for parameter-free encodings) stored as the ``i/encoding`` section.
"""
from .dense_grid import DenseGridConfig, DenseGridEncoding
from .frequency import FrequencyConfig, FrequencyEncoding
from .hashgrid import HashGridConfig, HashGridEncoding
from .identity import IdentityConfig, IdentityEncoding
from .triangle_wave import TriangleWaveConfig, TriangleWaveEncoding

ENCODINGS = {
    HashGridConfig.kind: (HashGridConfig, HashGridEncoding),
    FrequencyConfig.kind: (FrequencyConfig, FrequencyEncoding),
    TriangleWaveConfig.kind: (TriangleWaveConfig, TriangleWaveEncoding),
    DenseGridConfig.kind: (DenseGridConfig, DenseGridEncoding),
    IdentityConfig.kind: (IdentityConfig, IdentityEncoding),
}


def encoding_config_from_dict(d: dict):
    """The encoding configuration recorded in a container header."""
    kind = d.get("type")
    if kind not in ENCODINGS:
        from ..errors import FormatError
        raise FormatError(f"unknown encoding type {kind!r}; known: {', '.join(sorted(ENCODINGS))}")
    return ENCODINGS[kind][0].from_dict(d)


def make_encoding(config, generator=None):
    return ENCODINGS[config.kind][1](config, generator=generator)


__all__ = ["HashGridConfig", "HashGridEncoding", "FrequencyConfig", "FrequencyEncoding", "TriangleWaveConfig",
           "TriangleWaveEncoding", "DenseGridConfig", "DenseGridEncoding", "IdentityConfig", "IdentityEncoding",
           "ENCODINGS", "encoding_config_from_dict", "make_encoding"]
