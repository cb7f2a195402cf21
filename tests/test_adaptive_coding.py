"""The adaptive binary arithmetic coder (neuralvol.bitstream.adaptive_coding), through entropy."""
import numpy as np
import pytest

import neuralvol as nv
from neuralvol.bitstream import budget, entropy


def _laplace_bits(scale: float) -> float:
    """Entropy in bits of a Laplace variable of ``scale`` rounded to integers."""
    k = np.abs(np.arange(-2000, 2001))
    p = np.where(k == 0, 1 - np.exp(-0.5 / scale), 0.5 * (np.exp(-(k - 0.5) / scale) - np.exp(-(k + 0.5) / scale)))
    p = p[p > 0]
    return float(-(p * np.log2(p)).sum())


def test_adaptive_coder_wins_on_small_files_and_round_trips_segments():
    rng = np.random.default_rng(1)
    # 300 symbols in two runs of different spread, like a small table and its MLP
    symbols = np.r_[np.rint(rng.laplace(0, 2.0, 200)), np.rint(rng.laplace(0, 40.0, 100))].astype(np.int8)
    lzma_only, _ = entropy.encode(symbols, coders=(entropy.CODER,))
    coded, meta = entropy.encode(symbols, segmentations=([300], [200, 100]))
    assert meta["coder"] == entropy.ADAPTIVE_CODER and meta["segments"] == [200, 100]
    np.testing.assert_array_equal(entropy.decode(coded, meta), symbols)
    assert len(coded) < 0.85 * len(lzma_only)
    # near the source's entropy (a histogram of 100 samples would be no fair yardstick)
    assert len(coded) < 1.05 * (200 * _laplace_bits(2.0) + 100 * _laplace_bits(40.0)) / 8 + 8
    # rate control's size is never below what is written, and close to it
    assert len(coded) <= budget.coded_size(symbols, ([300], [200, 100])) <= len(coded) + 8
    # extremes and empty runs survive
    edge = np.array([0, 32767, -32767, 1, -1, 0, 0, 255, -256], dtype=np.int16)
    coded, meta = entropy.encode(edge, segmentations=([0, 9, 0],), coders=(entropy.ADAPTIVE_CODER,))
    np.testing.assert_array_equal(entropy.decode(coded, meta), edge)
    coded, meta = entropy.encode(np.zeros(0, np.int8), coders=(entropy.ADAPTIVE_CODER,))
    assert entropy.decode(coded, meta).size == 0


def test_adaptive_coder_rejects_bad_metadata():
    coded, meta = entropy.encode(np.arange(-50, 50, dtype=np.int8), coders=(entropy.ADAPTIVE_CODER,))
    with pytest.raises(nv.FormatError, match="invalid segments for its 100 symbols"):
        entropy.decode(coded, dict(meta, segments=[50, 49]))
    with pytest.raises(nv.FormatError, match="invalid segments"):
        entropy.decode(coded, dict(meta, segments="all"))
    big = 10 ** 9
    with pytest.raises(nv.FormatError, match="more than the 65536 the coder allows"):
        entropy.decode(coded, dict(meta, count=big, segments=[big]))
