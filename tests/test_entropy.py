"""The symbol coders' front end (neuralvol.bitstream.entropy): round trips, sizes, bad metadata."""
import numpy as np
import pytest

import neuralvol as nv
from neuralvol.bitstream import entropy


def _empirical_entropy_bytes(symbols: np.ndarray) -> float:
    _, counts = np.unique(symbols, return_counts=True)
    return float(-(counts * np.log2(counts / counts.sum())).sum() / 8)


@pytest.mark.parametrize("coder", entropy.CODERS)
@pytest.mark.parametrize("dtype,scale", [(np.int8, 3.0), (np.int16, 900.0)])
def test_entropy_coder_round_trips_and_compresses(dtype, scale, coder):
    rng = np.random.default_rng(0)
    limit = np.iinfo(dtype).max
    symbols = np.clip(np.rint(rng.laplace(0, scale, 20000)), -limit, limit).astype(dtype)
    coded, meta = entropy.encode(symbols, coders=(coder,))
    assert meta["coder"] == coder
    np.testing.assert_array_equal(entropy.decode(coded, meta), symbols)
    assert len(coded) < 1.15 * _empirical_entropy_bytes(symbols) + 64  # close to the empirical entropy


def test_entropy_coder_rejects_bad_metadata():
    coded, meta = entropy.encode(np.arange(-50, 50, dtype=np.int8), coders=(entropy.CODER,))
    with pytest.raises(nv.FormatError, match="unknown coder 'zstd'; upgrade neuralvol"):
        entropy.decode(coded, dict(meta, coder="zstd"))
    with pytest.raises(nv.FormatError, match="decodes to 100 bytes, 200 expected"):
        entropy.decode(coded, dict(meta, count=200))
    with pytest.raises(nv.FormatError, match="does not decode"):
        entropy.decode(b"\xff" * 40, meta)
