"""The post filter (neuralvol.postfilter): its fit, where it is kept, how every decode path
applies it, and how files carry it."""
from __future__ import annotations

import zlib

import numpy as np
import pytest

import neuralvol as nv
from neuralvol import postfilter
from neuralvol.bitstream import compact_header, container
from neuralvol.errors import FormatError
from neuralvol.evaluate import evaluate_grid, evaluate_points, unit_axis
from neuralvol.metrics import psnr
from neuralvol.volume_io import read_volume

from conftest import DATA


def _reference_filter(pf: postfilter.PostFilter, values: np.ndarray) -> np.ndarray:
    """The kernel written out tap by tap on the whole grid, the edge repeated."""
    padded = np.pad(values.astype(np.float64), 1, mode="edge")
    nz, ny, nx = values.shape
    out = np.full(values.shape, pf.offset * pf.scale)
    for (dx, dy, dz), w in pf.taps():
        out += w * padded[1 + dz:1 + dz + nz, 1 + dy:1 + dy + ny, 1 + dx:1 + dx + nx]
    return out


@pytest.fixture(scope="module")
def hydrogen() -> np.ndarray:
    """A 24^3 corner of the bundled hydrogen simulation (float32): smooth, where the filter pays."""
    return np.ascontiguousarray(read_volume(DATA / "hydrogen.vti").array[20:44, 20:44, 20:44], dtype=np.float32)


@pytest.fixture(scope="module")
def filtered(hydrogen) -> nv.NeuralVolume:
    return nv.compress(hydrogen, ratio=40, steps=150, seed=1)


def test_fit_recovers_a_known_kernel_and_rounds_it_to_few_bits():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(11, 13, 17))
    truth = postfilter.PostFilter(shift=10, weights=(700, 40, -30, 12, 25, -8, 6, -3), offset=-50)
    target = _reference_filter(truth, raw)
    found, before, after = postfilter.fit(raw, target)
    # the coarsest weights that keep all but MAX_SHIFT_LOSS of the gain: here shift 7
    assert found.shift < truth.shift
    exact = np.array([*truth.weights, truth.offset]) * truth.scale
    rounded = np.array([*found.weights, found.offset]) * found.scale
    np.testing.assert_allclose(rounded, exact, rtol=0, atol=0.5 * found.scale)
    assert before > 0.1 and after <= postfilter.MAX_SHIFT_LOSS * before
    # the slab-by-slab application is the kernel written out tap by tap
    padded = raw[np.ix_(*(postfilter.padded_indices(n, 0, n - 1) for n in raw.shape))]
    np.testing.assert_allclose(found.apply_padded(padded), _reference_filter(found, raw), atol=1e-5)


def test_fit_declines_where_it_gains_nothing_and_bytes_decide_small_files():
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(9, 9, 9))
    found, before, after = postfilter.fit(raw, raw)   # already exact up to the identity kernel
    assert found is None or after >= before * (1 - 1e-9)
    assert postfilter.fit(raw[:2, :2, :2], raw[:2, :2, :2])[0] is None   # too few voxels
    # 0.2 dB is worth 20 bytes of a 10 kB file, not of a 300-byte one
    ratio = 10 ** (-0.02)
    assert postfilter.worth_its_bytes(1.0, ratio, 20, 10_000)
    assert not postfilter.worth_its_bytes(1.0, ratio, 20, 300)
    assert not postfilter.worth_its_bytes(1.0, 1.0, 20, 10_000)


def test_filtered_file_is_compact_version_5_and_decodes_what_was_measured(filtered, hydrogen, tmp_path):
    assert filtered.post_filter is not None
    path = tmp_path / "h.nvc"
    filtered.save(path)
    assert nv.read_header(path)["version"] == compact_header.FILTERED_COMPACT_VERSION
    back = nv.open(path)
    assert back.post_filter == filtered.post_filter
    decoded = back.decode_values()
    np.testing.assert_array_equal(decoded, filtered.decode_values())
    assert psnr(hydrogen, back.decode()) == pytest.approx(filtered.training.psnr, abs=1e-3)
    # the network alone is what the kernel improved on
    raw = back.network
    nx, ny, nz = back.dims
    unfiltered = evaluate_grid(raw, unit_axis(nx, 0, nx - 1), unit_axis(ny, 0, ny - 1), unit_axis(nz, 0, nz - 1))
    lo, hi = back.value_range
    assert psnr(hydrogen, lo + (hi - lo) * unfiltered.astype(np.float64)) < filtered.training.psnr
    np.testing.assert_allclose(decoded, lo + (hi - lo) * _reference_filter(back.post_filter, unfiltered),
                               rtol=0, atol=1e-6 * (hi - lo))   # the grid path sums in float32


def test_every_decode_path_applies_the_filter(filtered):
    vol = filtered
    full = vol.decode_values()
    lo, hi = vol.value_range
    # regions, at the border and inside, are exactly the full decode's voxels
    for region in ((0, 5, 0, 23, 0, 0), (7, 16, 3, 9, 11, 23), (23, 23, 23, 23, 23, 23)):
        x0, x1, y0, y1, z0, z1 = region
        np.testing.assert_array_equal(vol.decode_values(region=region), full[z0:z1 + 1, y0:y1 + 1, x0:x1 + 1])
    # points at the grid's nodes give the grid's values (float32 coordinates: to ~1e-6)
    nodes = np.array([[0, 0, 0], [5, 17, 9], [23, 23, 23], [12, 0, 23]], dtype=np.float64)
    np.testing.assert_allclose(vol.sample(nodes), full[nodes[:, 2].astype(int), nodes[:, 1].astype(int),
                                                         nodes[:, 0].astype(int)], rtol=0, atol=1e-5 * (hi - lo))
    # another grid: the kernel in the original voxel spacing, 27 evaluations of the network
    dims = (13, 9, 31)
    axes = [unit_axis(n, 0, n - 1) for n in dims]
    zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
    points = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)
    by_points = vol.post_filter.apply_shifted(lambda p: evaluate_points(vol.network, p), points, vol.dims)
    np.testing.assert_allclose(vol.decode_values(dims=dims), lo + (hi - lo) * by_points.reshape(31, 9, 13),
                               rtol=0, atol=1e-5 * (hi - lo))


def test_post_filter_false_writes_the_unfiltered_format(hydrogen, tmp_path):
    vol = nv.compress(hydrogen, ratio=40, steps=60, seed=1, post_filter=False)
    assert vol.post_filter is None
    vol.save(tmp_path / "plain.nvc")
    assert nv.read_header(tmp_path / "plain.nvc")["version"] == container.COMPACT_VERSION


def test_several_filtered_models_use_the_json_layout_version_6(filtered, tmp_path):
    path = tmp_path / "two.nvc"
    nv.save_models(path, [filtered, filtered])
    assert nv.read_header(path)["version"] == container.FILTERED_VERSION
    back = nv.open_all(path)
    assert [v.post_filter for v in back] == [filtered.post_filter] * 2
    np.testing.assert_array_equal(back[1].decode_values(), filtered.decode_values())


def test_damaged_post_filters_are_one_line_format_errors(filtered, tmp_path):
    data = bytearray(_bytes(filtered, tmp_path))
    # a version-5 body relabelled version 3: the filter's presence bit is then unknown
    data[8:10] = container.VERSION_FIELD.pack(container.COMPACT_VERSION)
    body = bytes(data[:-4])
    path = tmp_path / "relabelled.nvc"
    path.write_bytes(body + container.CRC_FIELD.pack(zlib.crc32(body)))
    with pytest.raises(FormatError, match="post filter"):
        nv.open(path)
    # the JSON layout with a malformed entry
    path = tmp_path / "two.nvc"
    nv.save_models(path, [filtered, filtered])
    raw = path.read_bytes()
    hdr, arrays = container.decode(raw)
    hdr["models"][0]["post_filter"]["weights"] = [1, 2]
    sections = [container.Section(s["name"], arrays[s["name"]], coded=True) for s in hdr.pop("sections")]
    path.write_bytes(container.encode(hdr, sections, compact=False))
    with pytest.raises(FormatError, match="invalid post filter"):
        nv.open_all(path)


def _bytes(vol, tmp_path) -> bytes:
    path = tmp_path / "v.nvc"
    vol.save(path)
    return path.read_bytes()
