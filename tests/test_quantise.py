"""Quantised storage (neuralvol.quantise): compact files, float16 files, forged symbol counts."""
import json
import zlib
from pathlib import Path

import numpy as np
import pytest

import neuralvol as nv
from neuralvol.bitstream import container, entropy
from neuralvol.bitstream.schema import to_bytes
from neuralvol.metrics import psnr

V1_FILE = Path(__file__).parent / "data" / "format_v1_headsq_crop.nvc"


def test_quantised_file_is_compact_and_decodes_to_what_was_measured(quantised_crop, headsq_crop, tmp_path):
    vol = quantised_crop
    assert vol.storage.precision == "quantised"
    assert vol.nbytes <= headsq_crop.nbytes // 40
    path = tmp_path / "q.nvc"
    vol.save(path)
    header = nv.read_header(path)
    compact = 3 if vol.post_filter is None else 5   # 5: with a post filter
    assert header["version"] == compact and path.read_bytes()[8] == compact
    (section,) = header["sections"]
    assert section["name"] == "0/symbols" and section["coding"]["coder"] in entropy.CODERS
    back = nv.open(path)
    decoded = back.decode()
    np.testing.assert_array_equal(decoded, vol.decode())
    # the PSNR in the header is the PSNR of what the file decodes to, after quantisation
    assert psnr(headsq_crop, decoded) == pytest.approx(back.training.psnr, abs=1e-3)
    # re-saving an opened file reproduces it byte for byte (symbols are recovered exactly)
    back.save(tmp_path / "again.nvc")
    assert (tmp_path / "again.nvc").read_bytes() == path.read_bytes()


def test_quantised_beats_float16_at_the_same_size(quantised_crop, headsq_crop):
    half = nv.compress(headsq_crop, ratio=40, steps=300, seed=2, precision="float16")
    assert half.nbytes <= headsq_crop.nbytes // 40 and half.storage is None
    assert quantised_crop.config.n_params > 2.5 * half.config.n_params
    assert quantised_crop.training.psnr > half.training.psnr + 1.0


def test_float16_precision_writes_version_1(headsq_crop, tmp_path):
    vol = nv.compress(headsq_crop, ratio=20, steps=20, precision="float16")
    vol.save(tmp_path / "h.nvc")
    assert nv.read_header(tmp_path / "h.nvc")["version"] == 1
    with pytest.raises(nv.InputError, match="precision must be one of"):
        nv.compress(headsq_crop, steps=1, precision="int4")


def test_version_1_files_still_decode(headsq_crop):
    vol = nv.open(V1_FILE)
    header = nv.read_header(V1_FILE)
    assert header["version"] == 1 and header["models"][0]["storage"] == {"precision": "float16"}
    assert vol.array_name == "density" and vol.spacing == (3.2, 3.2, 1.5)
    assert psnr(headsq_crop, vol.decode()) == pytest.approx(vol.training.psnr, abs=1e-3)


def test_coded_section_with_forged_count_is_a_format_error(quantised_crop):
    data = to_bytes([quantised_crop], compact=False)
    header, _ = container.decode(data)
    header["sections"][0]["coding"]["count"] += 1
    sections_payload = data[container.PREAMBLE.size + container.PREAMBLE.unpack_from(data, 0)[3]:]
    stored, flags = container.pack_header(json.dumps(header).encode(), 2)
    forged = container.PREAMBLE.pack(container.MAGIC, 2, flags, len(stored), zlib.crc32(stored)) + stored + sections_payload
    with pytest.raises(nv.FormatError, match="coding metadata that does not match its shape"):
        container.decode(forged)


def test_steps_have_three_significant_digits_and_mlp_steps_round_up(quantised_crop):
    from neuralvol.quantise import STEP_DIGITS, short_float
    assert STEP_DIGITS == 3
    assert short_float(0.0231848) == 0.0232 and short_float(0.0231848, up=True) == 0.0232
    assert short_float(0.0231248) == 0.0231 and short_float(0.0231248, up=True) == 0.0232
    assert short_float(123456.7) == 123000.0 and short_float(0.0999999, up=True) == 0.1
    values = np.random.default_rng(0).lognormal(0.0, 6.0, 2000)
    up = np.array([short_float(v, up=True) for v in values])
    assert np.all(up >= values) and np.all(up <= values * 1.01)
    storage = quantised_crop.storage
    for step in [storage.table_step, *storage.mlp_steps]:
        assert short_float(step) == step
    # rounded up, an MLP step keeps its layer's largest weight within 8 bits: 0.010049 * 127
    # over the nearest 3-digit step (0.0100) would be symbol 128
    from neuralvol.quantise import Group, assign_steps, quantise
    weights = np.array([0.3, -0.010049 * 127, 0.01], np.float32)
    (group,) = assign_steps([Group("mlp", 0, 3, "mlp")], {"mlp": weights}, table_step=1.0)
    assert group.step == 0.0101
    assert quantise([group], {"mlp": weights}).tolist() == [30, -126, 1]
