"""The point-wise error bound (max_error): every voxel, every dtype, regions, the file section."""
from __future__ import annotations

import json

import numpy as np
import pytest

import neuralvol as nv
from neuralvol import cli, error_bound, volume as volume_module
from neuralvol.bitstream import container
from neuralvol.errors import FormatError, InputError
from neuralvol.evaluate import evaluate_grid_per_voxel

from conftest import DATA, REPO

FAST = dict(steps=25, seed=0, device="cpu", record_timings=False)


def _crop(headsq) -> np.ndarray:
    """A 28 x 24 x 20 block of the CT head (int16): real data, fits in a second."""
    return np.ascontiguousarray(headsq[40:60, 20:44, 18:46])


def _as(dtype: str, crop: np.ndarray) -> np.ndarray:
    x = crop.astype(np.float64)
    unit = (x - x.min()) / (x.max() - x.min())
    if dtype == "uint8":
        return np.rint(unit * 255).astype(np.uint8)
    if dtype == "uint16":
        return np.rint(unit * 60000).astype(np.uint16)
    if dtype == "int16":
        return crop.astype(np.int16)
    if dtype == "float16":
        return (unit * 8 - 2).astype(np.float16)
    return (unit * 3.7e3 - 150.25).astype(dtype)  # float32/float64: values that are not integers


def _max_err(decoded, original) -> float:
    return float(np.max(np.abs(decoded.astype(np.float64) - original.astype(np.float64))))


CASES = [("uint8", 0.0), ("uint8", 3.0), ("int16", 10.0), ("uint16", 2.5), ("float16", 0.05),
         ("float32", 4.0), ("float32", 0.05), ("float64", 1.0)]


@pytest.mark.parametrize("dtype,max_error", CASES, ids=[f"{d}-{e:g}" for d, e in CASES])
def test_bound_holds_on_every_voxel_after_saving(headsq, tmp_path, dtype, max_error):
    original = _as(dtype, _crop(headsq))
    vol = nv.compress(original, ratio=40, max_error=max_error, **FAST)
    assert vol.correction.count > 0  # 25 steps miss many voxels: the corrections do the work
    vol.save(tmp_path / "b.nvc")
    back = nv.open(tmp_path / "b.nvc")
    assert back.max_error == max_error and back.correction.count == vol.correction.count
    decoded = back.decode()
    assert decoded.dtype == original.dtype
    assert _max_err(decoded, original) <= max_error
    if max_error == 0:
        np.testing.assert_array_equal(decoded, original)
    # float output of integer data is bounded too (the reader's "decode as float" option)
    assert _max_err(back.decode(dtype=np.float32), original) <= max(max_error, 1e-3 * (dtype.startswith("float")))
    # version 6 where the file also carries a post filter (the JSON layout, as version 4)
    extended = container.EXTENDED_VERSION if back.post_filter is None else container.FILTERED_VERSION
    assert nv.read_header(tmp_path / "b.nvc")["version"] == extended


def test_region_decode_and_the_per_voxel_path_stay_within_the_bound(headsq, monkeypatch):
    original = _as("float32", _crop(headsq))
    vol = nv.compress(original, ratio=40, max_error=2.0, **FAST)
    full = vol.decode()
    # a region's lattice gathers differ from the whole grid's in the last float32 bits: not
    # bit-identical, which is what PATH_MARGIN is for
    tolerance = error_bound.PATH_MARGIN * float(original.max() - original.min()) / 4
    for region in [(0, 27, 0, 23, 0, 19), (3, 17, 5, 23, 2, 11), (27, 27, 0, 0, 19, 19), (0, 27, 10, 10, 0, 19)]:
        x0, x1, y0, y1, z0, z1 = region
        part = vol.decode(region=region)
        assert _max_err(part, full[z0:z1 + 1, y0:y1 + 1, x0:x1 + 1]) < tolerance
        assert _max_err(part, original[z0:z1 + 1, y0:y1 + 1, x0:x1 + 1]) <= 2.0
    # the reference per-voxel path computes the network slightly differently (the margin's reason)
    monkeypatch.setattr(volume_module, "evaluate_grid", evaluate_grid_per_voxel)
    other = vol.decode()
    assert _max_err(other, original) <= 2.0
    assert _max_err(other, full) < tolerance


def test_other_resolutions_are_not_corrected_and_info_says_so(headsq, tmp_path, capsys):
    original = _as("uint8", _crop(headsq))
    vol = nv.compress(original, ratio=40, max_error=1.0, **FAST)
    plain = nv.NeuralVolume(vol.network, vol.info, vol.training, storage=vol.storage)
    plain.post_filter = vol.post_filter   # the same field, less the bound's corrections
    np.testing.assert_array_equal(vol.decode(dims=(14, 12, 10)), plain.decode(dims=(14, 12, 10)))
    path = tmp_path / "b.nvc"
    vol.save(path)
    assert cli.main(["info", str(path)]) == 0
    assert "error bound 1 at original grid points only" in capsys.readouterr().out
    assert cli.main(["info", "--json", str(path)]) == 0
    info = json.loads(capsys.readouterr().out)
    bound = info["models"][0]["error_bound"]
    assert bound["count"] == vol.correction.count and 0 < bound["bytes"] < info["bytes"]


def test_files_without_a_bound_are_written_as_before(headsq):
    from neuralvol.bitstream import schema
    vol = nv.compress(_crop(headsq), ratio=40, **FAST)
    data = schema.to_bytes([vol])
    compact = container.COMPACT_VERSION if vol.post_filter is None else container.COMPACT_VERSIONS[1]
    assert container.VERSION_FIELD.unpack_from(data, len(container.MAGIC))[0] == compact


def test_varints_round_trip_and_refuse_garbage():
    values = np.array([0, 1, 127, 128, 300, 2 ** 40, 2 ** 62 + 5], dtype=np.int64)
    coded = error_bound.varint_bytes(values)
    np.testing.assert_array_equal(error_bound.from_varint_bytes(coded.view(np.int8), values.size, "s"), values)
    with pytest.raises(FormatError, match="varints"):
        error_bound.from_varint_bytes(coded[:-1].view(np.int8), values.size, "s")
    with pytest.raises(FormatError, match="longer than"):
        error_bound.from_varint_bytes(np.array([0x80] * 10 + [1], np.uint8).view(np.int8), 1, "s")


def _bounded_file(headsq, tmp_path):
    vol = nv.compress(_as("uint8", _crop(headsq)), ratio=40, max_error=1.0, **FAST)
    path = tmp_path / "b.nvc"
    vol.save(path)
    return path, vol


def test_a_corrupt_correction_section_is_a_one_line_format_error(headsq, tmp_path):
    path, vol = _bounded_file(headsq, tmp_path)
    data = bytearray(path.read_bytes())
    header = nv.read_header(path)
    entry = next(e for e in header["sections"] if e["name"] == f"0/{error_bound.POSITIONS}")
    start = container.PREAMBLE.size + container.PREAMBLE.unpack_from(data, 0)[3] + entry["offset"]
    data[start + entry["nbytes"] // 2] ^= 0x5A
    path.write_bytes(bytes(data))
    with pytest.raises(FormatError, match="correction_positions.*corrupted") as err:
        nv.open(path)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("change,message", [
    (lambda m: m["error_bound"].update(count=m["error_bound"]["count"] + 1), "varints"),
    (lambda m: m["error_bound"].update(step=-1.0), "invalid max_error, step or count"),
    (lambda m: m["error_bound"].update(count=10 ** 9), "invalid max_error, step or count"),
    (lambda m: m.update(error_bound=[1, 2]), "malformed"),
])
def test_an_inconsistent_correction_entry_is_a_one_line_format_error(headsq, tmp_path, change, message):
    path, vol = _bounded_file(headsq, tmp_path)
    header, arrays = container.decode(path.read_bytes())
    change(header["models"][0])
    sections = [container.Section(e["name"], arrays[e["name"]], coded=True) for e in header.pop("sections")]
    path.write_bytes(container.encode(header, sections))
    with pytest.raises(FormatError, match=message) as err:
        nv.open(path)
    assert "\n" not in str(err.value)


def test_a_missing_correction_section_is_named(headsq, tmp_path):
    path, vol = _bounded_file(headsq, tmp_path)
    header, arrays = container.decode(path.read_bytes())
    sections = [container.Section(e["name"], arrays[e["name"]], coded=True) for e in header.pop("sections")
                if not e["name"].endswith(error_bound.VALUES)]
    path.write_bytes(container.encode(header, sections))
    with pytest.raises(FormatError, match="correction_values' is missing"):
        nv.open(path)


@pytest.mark.parametrize("kwargs,message", [
    (dict(max_error=-1), "finite number >= 0"),
    (dict(max_error=float("nan")), "finite number >= 0"),
    (dict(max_error="lots"), "must be a number"),
    (dict(max_error=0.0), "use a max error above"),            # float data cannot be lossless
    (dict(importance=np.ones((3, 3, 3))), "importance has shape"),
    (dict(importance=-np.ones((20, 24, 28))), "negative weights"),
    (dict(importance=np.zeros((20, 24, 28))), "all zero"),
    (dict(importance=np.full((20, 24, 28), np.nan)), "NaN"),
    (dict(roi=[[0, 28, 0, 5, 0, 5]]), "x-range 0..28 is outside 0..27"),
    (dict(roi=[[5, 2, 0, 5, 0, 5]]), "x-range 5..2"),
    (dict(roi=[[0, 5, 0, 5]]), "six integers"),
    (dict(roi=[[0, 5, 0, 5, 0, 5]], roi_weight=-2), "positive finite"),
    (dict(roi_weight=5), "needs roi boxes"),
    (dict(roi=[[0, 5, 0, 5, 0, 5]], importance=np.ones((20, 24, 28))), "not both"),
])
def test_bad_options_are_one_line_input_errors(headsq, kwargs, message):
    original = _as("float32", _crop(headsq))
    with pytest.raises(InputError, match=message) as err:
        nv.compress(original, ratio=40, steps=1, **kwargs)
    assert "\n" not in str(err.value)


def test_cli_bad_max_error_exits_2_with_one_line(tmp_path, capsys):
    out = tmp_path / "x.nvc"
    assert cli.main(["compress", str(DATA / "head_mr_small.npy"), str(out), "--max-error", "-0.5", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "max error" in err and not out.exists()
    assert cli.main(["compress", str(DATA / "head_mr_small.npy"), str(out), "--roi", "0", "99", "0", "1", "0", "1",
                     "-q"]) == 2
    assert "roi box" in capsys.readouterr().err and not out.exists()


def test_without_a_budget_the_network_ratio_is_searched(headsq):
    original = _as("uint8", _crop(headsq))
    vol = nv.compress(original, max_error=2.0, steps=15, seed=0, device="cpu", record_timings=False)
    tried = vol.bound_search
    assert len(tried) >= 2 and vol.nbytes == min(b for _, b in tried)
    assert _max_err(vol.decode(), original) <= 2.0


def test_several_models_and_an_empty_correction_layer_round_trip(headsq, tmp_path):
    original = _as("uint8", _crop(headsq))
    bounded = nv.compress(original, ratio=40, max_error=1.0, **FAST)
    loose = nv.compress(original, ratio=40, max_error=255.0, **FAST)   # nothing to correct
    plain = nv.compress(original, ratio=40, **FAST)
    assert loose.correction.count == 0
    nv.save_models(tmp_path / "m.nvc", [plain, bounded, loose])
    back = nv.open_all(tmp_path / "m.nvc")
    assert [v.max_error for v in back] == [None, 1.0, 255.0]
    assert _max_err(back[1].decode(), original) <= 1.0
    np.testing.assert_array_equal(back[0].decode(), plain.decode())
    loose.save(tmp_path / "one.nvc")   # one coded section, but the compact header cannot say "error_bound"
    extended = container.EXTENDED_VERSION if loose.post_filter is None else container.FILTERED_VERSION
    assert nv.read_header(tmp_path / "one.nvc")["version"] == extended
    assert nv.open(tmp_path / "one.nvc").max_error == 255.0
