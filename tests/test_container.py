"""The .nvc container: exact round trip, every corruption caught with a one-line error."""
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import torch
import pytest

import neuralvol as nv
from neuralvol.bitstream import atomic_io, container
from neuralvol.bitstream.schema import to_bytes


def test_header_records_everything_needed_to_decode(crop_file, headsq_crop):
    header = nv.read_header(crop_file)
    compact = 3 if nv.open(crop_file).post_filter is None else 5   # 5: with a post filter
    assert header["format"] == "neuralvol" and header["version"] == compact
    assert header["library"].startswith("neuralvol ")
    (model,) = header["models"]
    assert model["dims"] == [40, 36, 30]
    assert model["spacing"] == [3.2, 3.2, 1.5]
    assert model["origin"] == [10.0, -5.0, 2.5]
    assert model["array_name"] == "density"
    assert model["dtype"] == "int16"
    assert model["value_range"] == [float(headsq_crop.min()), float(headsq_crop.max())]
    assert model["encoding"]["type"] == "hashgrid" and model["network"]["type"] == "relu_mlp"
    assert model["storage"]["precision"] == "quantised" and model["storage"]["table_step"] > 0
    training = model["training"]
    assert training["steps"] == 150 and training["seed"] == 3 and training["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert training["psnr"] > 20 and training["seconds"] > 0
    (section,) = header["sections"]
    assert section["name"] == "0/symbols" and section["dtype"] in ("int8", "int16")
    assert section["coding"]["count"] == sum(
        int(np.prod(s)) for s in nv.open(crop_file).network.expected_shapes().values())


def test_reopened_volume_decodes_identically(crop_volume, crop_file):
    again = nv.open(crop_file)
    assert np.array_equal(again.decode(), crop_volume.decode())
    assert again.nbytes == crop_file.stat().st_size
    assert (again.dims, again.spacing, again.origin, again.array_name, again.dtype) == (
        crop_volume.dims, crop_volume.spacing, crop_volume.origin, crop_volume.array_name, crop_volume.dtype)


def test_every_flipped_byte_is_detected(crop_file, tmp_path):
    from neuralvol.bitstream.schema import volumes_from_bytes
    data = crop_file.read_bytes()
    for i in range(len(data)):
        corrupted = bytearray(data)
        corrupted[i] ^= 0x5A
        with pytest.raises(nv.FormatError) as err:
            volumes_from_bytes(bytes(corrupted), "bad.nvc")
        assert "\n" not in str(err.value) and str(err.value).startswith("bad.nvc: ")
    # and through a real file
    bad = tmp_path / "bad.nvc"
    bad.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
    with pytest.raises(nv.FormatError, match="corrupted"):
        nv.open(bad)


def test_every_truncation_is_detected(crop_file, tmp_path):
    data = crop_file.read_bytes()
    bad = tmp_path / "short.nvc"
    for n in list(range(0, 64)) + list(range(64, len(data), 97)) + [len(data) - 1]:
        bad.write_bytes(data[:n])
        with pytest.raises(nv.FormatError, match="truncated|too short|not a neuralvol"):
            nv.open(bad)


@pytest.mark.parametrize("compact", [True, False])
def test_foreign_newer_and_padded_files(crop_volume, tmp_path, compact):
    data = to_bytes([crop_volume], compact=compact)
    foreign = tmp_path / "foreign.nvc"
    foreign.write_bytes(b"\x93NUMPY" + b"\0" * 100)
    with pytest.raises(nv.FormatError, match="not a neuralvol .nvc file"):
        nv.open(foreign)
    newer = tmp_path / "newer.nvc"
    newer_version = container.FORMAT_VERSION + 1
    newer.write_bytes(data[:8] + struct.pack("<H", newer_version) + data[10:])
    with pytest.raises(nv.FormatError, match=f"newer neuralvol .*version {newer_version}"):
        nv.open(newer)
    padded = tmp_path / "padded.nvc"
    padded.write_bytes(data + b"\0\0")
    with pytest.raises(nv.FormatError, match="CRC32 mismatch" if compact else "trailing bytes"):
        nv.open(padded)


def _rewrite_header(data: bytes, edit, version: int | None = None) -> bytes:
    """``data`` with its JSON header edited (and, given ``version``, declaring that version)."""
    magic, old_version, flags, hlen, _ = container.PREAMBLE.unpack_from(data, 0)
    version = old_version if version is None else version
    start = container.PREAMBLE.size
    header = json.loads(container.unpack_header(data[start:start + hlen], flags, "test"))
    edit(header)
    stored, flags = container.pack_header(json.dumps(header).encode(), version)
    return container.PREAMBLE.pack(magic, version, flags, len(stored), zlib.crc32(stored)) + stored + data[start + hlen:]


@pytest.mark.parametrize("edit, message", [
    (lambda h: h["models"][0].pop("dims"), "lacks 'dims'"),
    (lambda h: h["models"][0].update(dtype="object"), "unsupported dtype"),
    (lambda h: h["models"][0]["encoding"].update(type="magic"), "unknown encoding"),
    (lambda h: h["models"][0]["encoding"].update(table_size=16), "network needs"),
    (lambda h: h["sections"][0].update(dtype="O"), "unsupported dtype"),
    (lambda h: h.update(models=[]), "no models"),
])
def test_well_formed_but_inconsistent_headers_are_rejected(crop_volume, tmp_path, edit, message):
    bad = tmp_path / "bad.nvc"
    bad.write_bytes(_rewrite_header(to_bytes([crop_volume], compact=False), edit))
    with pytest.raises(nv.FormatError, match=message):
        nv.open(bad)


V2_FILE = Path(__file__).parent / "data" / "format_v2_headsq_crop.nvc"
FILTER = {"shift": 10, "weights": [1024, 0, 0, 0, 0, 0, 0, 0], "offset": 0}


@pytest.mark.parametrize("edit, need, what", [
    (lambda h: None, 2, "an entropy-coded section"),
    (lambda h: h.update(bricks={}), 4, "the top-level 'bricks' key"),
    (lambda h: h["models"][0].update(error_bound={}), 4, "an 'error_bound' correction"),
    (lambda h: h["models"][0].update(components=[]), 4, "a multi-component field"),
    (lambda h: h["models"][0]["network"].update(outputs=1), 4, "a multi-component field"),
    (lambda h: h["models"][0].update(post_filter=FILTER), 6, "a post filter in a model entry"),
    (lambda h: (h.update(bricks={}), h["models"][0].update(post_filter=FILTER)), 7, "a post filter in a bricked file"),
])
def test_a_file_declaring_less_than_its_contents_need_is_refused(edit, need, what):
    """One rule for every JSON-header file: the declared version is at least container.requirement's
    (what a writer writes, container.version_for); more is fine."""
    data = V2_FILE.read_bytes()
    declared = max(v for v in range(1, need) if v not in container.COMPACT_VERSIONS)   # the JSON layout's
    below = _rewrite_header(data, edit, version=declared)
    with pytest.raises(nv.FormatError) as err:
        container.decode(below, "old.nvc")
    assert str(err.value) == (f"old.nvc: {what} needs format version {need}; this file says {declared}: "
                              f"it was not written by neuralvol")
    for version in range(need, container.FORMAT_VERSION + 1):
        if version not in container.COMPACT_VERSIONS:
            header, _ = container.decode(_rewrite_header(data, edit, version=version), "new.nvc")
            assert header["models"][0]["dims"] == [40, 36, 30]


def test_every_version_a_writer_picks_passes_the_rule(crop_volume):
    """encode's JSON-header versions are what decode requires: the one rule on both sides."""
    for extra in ({}, {"bricks": {}}):
        data = to_bytes([crop_volume, crop_volume], extra=extra)
        header, _ = container.decode(data)
        sections = [container.Section(e["name"], np.zeros(1, np.int8), coded="coding" in e) for e in header["sections"]]
        assert container.PREAMBLE.unpack_from(data, 0)[1] == header["version"] == container.version_for(
            sections, header) == container.requirement(header, coded=True)[0]


def test_the_old_fixtures_still_decode():
    for name, version in (("format_v1_headsq_crop.nvc", 1), ("format_v2_headsq_crop.nvc", 2),
                          ("format_v3_headsq_crop.nvc", 3), ("format_v3_linear_tiny.nvc", 3)):
        data = (Path(__file__).parent / "data" / name).read_bytes()
        header, arrays = container.decode(data, name)
        assert header["version"] == version and arrays


def test_missing_file_and_folder_are_input_errors(tmp_path):
    with pytest.raises(nv.InputError, match="no such file"):
        nv.open(tmp_path / "nope.nvc")
    with pytest.raises(nv.InputError, match="folder"):
        nv.open(tmp_path)


def test_atomic_write_leaves_nothing_behind_on_failure(crop_volume, tmp_path):
    target = tmp_path / "out.nvc"
    target.write_bytes(b"previous content")

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        with atomic_io.atomic_path(target) as tmp:
            open(tmp, "wb").write(b"half")
            raise Boom()
    assert target.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.nvc"]
    with pytest.raises(nv.InputError, match="does not exist"):
        crop_volume.save(tmp_path / "missing_dir" / "x.nvc")


def test_written_file_gets_ordinary_permissions(crop_volume, tmp_path):
    import os
    umask = os.umask(0o022)
    try:
        crop_volume.save(tmp_path / "perm.nvc")
    finally:
        os.umask(umask)
    assert (tmp_path / "perm.nvc").stat().st_mode & 0o777 == 0o644


def test_unwritable_folder_gives_clear_error(crop_volume, tmp_path):
    import os
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(nv.InputError, match="cannot write"):
            crop_volume.save(locked / "x.nvc")
    finally:
        locked.chmod(0o700)


def test_several_models_in_one_file(crop_volume, headsq_crop, tmp_path):
    second = nv.compress(headsq_crop[::-1].copy(), array_name="density", ratio=10, steps=20, seed=1, time=2.5)
    path = tmp_path / "series.nvc"
    nv.save_models(path, [crop_volume, second])
    vols = nv.open_all(path)
    assert len(vols) == 2 and vols[1].time == 2.5
    assert np.array_equal(vols[0].decode(), crop_volume.decode())
    assert np.array_equal(nv.open(path, model=1).decode(), second.decode())
    with pytest.raises(nv.InputError, match="holds 2 model"):
        nv.open(path, model=5)
