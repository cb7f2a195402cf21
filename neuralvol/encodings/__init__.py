"""Input encodings: map coordinates in [0, 1]^3 to features for the MLP."""
from .hashgrid import HashGridConfig, HashGridEncoding

ENCODINGS = {HashGridConfig.kind: (HashGridConfig, HashGridEncoding)}


def encoding_config_from_dict(d: dict):
    """The encoding configuration recorded in a container header."""
    kind = d.get("type")
    if kind not in ENCODINGS:
        from ..errors import FormatError
        raise FormatError(f"unknown encoding type {kind!r}; known: {', '.join(sorted(ENCODINGS))}")
    return ENCODINGS[kind][0].from_dict(d)


def make_encoding(config, generator=None):
    return ENCODINGS[config.kind][1](config, generator=generator)


__all__ = ["HashGridConfig", "HashGridEncoding", "ENCODINGS", "encoding_config_from_dict", "make_encoding"]
