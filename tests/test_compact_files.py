"""Compact one-model files (format version 3): tiny budgets, exact headers, corruption."""
import dataclasses
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import neuralvol as nv
from neuralvol.bitstream import compact_header, container
from neuralvol.metrics import psnr
from neuralvol.bitstream.schema import model_entry, to_bytes

V2_FILE = Path(__file__).parent / "data" / "format_v2_headsq_crop.nvc"


@pytest.fixture(scope="module")
def tiny(head_mr):
    """The MR head at 800:1: a 156-byte budget."""
    return nv.compress(head_mr, ratio=800, steps=300, seed=0, record_timings=False)


def test_800_to_1_fits_and_beats_the_constant_volume(tiny, head_mr, tmp_path):
    assert tiny.nbytes <= head_mr.nbytes // 800
    tiny.save(tmp_path / "t.nvc")
    data = (tmp_path / "t.nvc").read_bytes()
    assert data[:8] == container.MAGIC and struct.unpack_from("<H", data, 8)[0] == 3
    back = nv.open(tmp_path / "t.nvc")
    decoded = back.decode()
    constant = psnr(head_mr, np.full(head_mr.shape, head_mr.mean()))
    assert psnr(head_mr, decoded) > constant + 2.0
    assert psnr(head_mr, decoded) == pytest.approx(back.training.psnr, abs=1e-3)
    # opening and saving again gives the same bytes
    back.save(tmp_path / "again.nvc")
    assert (tmp_path / "again.nvc").read_bytes() == data


def test_a_100_byte_budget_gets_a_linear_grid_that_beats_the_constant(head_mr):
    vol = nv.compress(head_mr, size=100, steps=300, seed=0)
    assert vol.nbytes <= 100
    assert vol.config.mlp_hidden_layers == 0 and vol.config.encoding.n_levels == 1
    constant = psnr(head_mr, np.full(head_mr.shape, head_mr.mean()))
    assert vol.training.psnr > constant + 0.5
    with pytest.raises(nv.InputError, match="smaller than the file header"):
        nv.compress(head_mr, size=40, steps=1)


def test_compact_header_says_exactly_what_version_2_says(crop_volume, tmp_path):
    # crop_volume has spacing, origin and an array name: the optional fields
    vol = nv.compress(np.zeros((4, 5, 6), np.float32) + np.arange(6), spacing=(0.5, 0.25, 2.0),
                      origin=(-1.5, 0.0, 1e-3), array_name="pressure", ratio=2, steps=20, time=0.125)
    for v in (vol, crop_volume):
        compact = to_bytes([v])
        # version 5 where the file carries a post filter (the crop's does), else 3
        assert struct.unpack_from("<H", compact, 8)[0] == (3 if v.post_filter is None else 5)
        header, arrays = container.decode(compact)
        assert header["models"][0] == model_entry(v)
        v.save(tmp_path / "v.nvc")
        back = nv.open(tmp_path / "v.nvc")
        assert (back.spacing, back.origin, back.array_name, back.time) == (v.spacing, v.origin, v.array_name, v.time)
        np.testing.assert_array_equal(back.decode(), v.decode())
    # the compact header is far shorter than the JSON one
    for v in (vol, crop_volume):
        compact, json_header = to_bytes([v]), to_bytes([v], compact=False)
        assert container.header_size(compact) <= container.header_size(json_header) - 80
        assert len(json_header) - len(compact) == container.header_size(json_header) - container.header_size(compact)


def test_what_the_compact_header_cannot_say_is_written_as_version_2(tiny, crop_volume, tmp_path):
    tiny.training.extra["note"] = "hand-edited"  # an unknown key: kept, in a version-2 file
    try:
        tiny.save(tmp_path / "n.nvc")
    finally:
        del tiny.training.extra["note"]
    assert nv.read_header(tmp_path / "n.nvc")["version"] == 2
    assert nv.open(tmp_path / "n.nvc").training.extra["note"] == "hand-edited"
    nv.save_models(tmp_path / "two.nvc", [tiny, crop_volume])  # several models
    # version 6 where a model carries a post filter (the crop's does)
    assert nv.read_header(tmp_path / "two.nvc")["version"] == (2 if crop_volume.post_filter is None else 6)
    np.testing.assert_array_equal(nv.open(tmp_path / "two.nvc", model=1).decode(), crop_volume.decode())


@pytest.mark.parametrize("value", [0.0, 255.0, -3.5, 0.1, 1.23457e-05, 123.4567, 1e-300, 1.7976931348623157e308,
                                   float(np.float32(0.3)), 2.0 ** 60, 7, None])
def test_compact_numbers_are_exact(value):
    writer = compact_header._Writer()
    writer.num(value)
    reader = compact_header._Reader(bytes(writer.out), "test")
    back = reader.num()
    assert back == value and reader.pos == len(writer.out)
    if value in (0.0, 255.0, 0.1, -3.5):
        assert len(writer.out) <= 3  # short decimals stay short


def test_corrupt_or_truncated_compact_file_is_a_format_error(tiny, tmp_path):
    data = to_bytes([tiny])
    for cut in range(len(data)):
        (tmp_path / "cut.nvc").write_bytes(data[:cut])
        with pytest.raises(nv.FormatError):
            nv.open(tmp_path / "cut.nvc")
    for i in (9, 12, len(data) // 2, len(data) - 6, len(data) - 1):
        bad = bytearray(data)
        bad[i] ^= 0x10
        (tmp_path / "bad.nvc").write_bytes(bytes(bad))
        with pytest.raises(nv.FormatError, match="corrupted|newer neuralvol|unsupported"):
            nv.open(tmp_path / "bad.nvc")
    # a well-formed CRC over nonsense fields: still a one-line FormatError, not a crash
    head = container.MAGIC + struct.pack("<H", 3) + b"\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"
    with pytest.raises(nv.FormatError, match="corrupted .nvc header"):
        container.decode(head + struct.pack("<I", zlib.crc32(head)))


def test_version_2_file_still_decodes(headsq_crop):
    header = nv.read_header(V2_FILE)
    assert header["version"] == 2 and V2_FILE.read_bytes()[8] == 2
    vol = nv.open(V2_FILE)
    assert vol.array_name == "density" and vol.spacing == (3.2, 3.2, 1.5) and vol.storage.precision == "quantised"
    assert psnr(headsq_crop, vol.decode()) == pytest.approx(vol.training.psnr, abs=1e-3)


def test_compact_wire_tables_are_append_only():
    """The compact header stores indices into these tables: their order is the format."""
    assert compact_header.ENCODING_NAMES[:5] == ("hashgrid", "dense_grid", "frequency", "triangle_wave", "identity")
    assert compact_header.ENCODINGS["hashgrid"] == ("n_levels", "n_features", "table_size", "base_resolution",
                                                    "finest_resolution")
    assert compact_header.ENCODINGS["dense_grid"] == ("n_levels", "n_features", "base_resolution",
                                                      "finest_resolution")
    assert compact_header.CODERS[:2] == ("lzma1-raw-lc0-4k", "adaptive-binary-kt")
    assert compact_header.DTYPES[:8] == ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float32", "float64")
    assert [k for k, _ in compact_header.TRAINING_KEYS][:10] == [
        "psnr", "steps", "seconds", "stopped", "device", "seed", "exact", "curve", "target_psnr", "target_reached"]


def test_a_small_file_records_its_psnr_alone(tiny, tmp_path):
    # the object compress returns keeps the fitting details ...
    assert tiny.training.brief and tiny.training.steps == 300 and tiny.training.stopped == "steps"
    tiny.save(tmp_path / "t.nvc")
    header = nv.read_header(tmp_path / "t.nvc")
    # ... the file records how good it is, and nothing else of the fit
    assert header["models"][0]["training"] == {"psnr": tiny.training.psnr, "exact": False}
    back = nv.open(tmp_path / "t.nvc")
    assert back.training.brief and back.training.psnr == tiny.training.psnr
    assert (back.training.steps, back.training.seconds, back.training.device, back.training.seed) == (None,) * 4
    # the details would take 8+ of the 156 bytes (the seconds are not even recorded here)
    full = nv.NeuralVolume(tiny.network, tiny.info, dataclasses.replace(tiny.training, brief=False), tiny.storage)
    assert len(to_bytes([full])) - len(to_bytes([tiny])) >= 8
    assert nv.NeuralVolume(back.network, back.info, back.training, back.storage).nbytes == tiny.nbytes
