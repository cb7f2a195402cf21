"""The post filter (neuralvol.postfilter): its fit, where it is kept, how every decode path
applies it, and how files carry it."""
from __future__ import annotations

import json
import math
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
    r = pf.radius
    padded = np.pad(values.astype(np.float64), r, mode="edge")
    nz, ny, nx = values.shape
    out = np.full(values.shape, pf.offset * pf.scale)
    for (dx, dy, dz), w in pf.taps():
        out += w * padded[r + dz:r + dz + nz, r + dy:r + dy + ny, r + dx:r + dx + nx]
    return out


@pytest.fixture(scope="module")
def hydrogen() -> np.ndarray:
    """A 24^3 corner of the bundled hydrogen simulation (float32): smooth, where the filter pays."""
    return np.ascontiguousarray(read_volume(DATA / "hydrogen.vti").array[20:44, 20:44, 20:44], dtype=np.float32)


@pytest.fixture(scope="module")
def filtered(hydrogen) -> nv.NeuralVolume:
    return nv.compress(hydrogen, ratio=40, steps=150, seed=1)


def _fit_3x3x3(raw, target):
    found = postfilter.fit_kernels(raw, target, (1,))[1]
    return found.kernel, found.before, found.after


def test_fit_recovers_a_known_kernel_and_rounds_it_to_few_bits():
    rng = np.random.default_rng(0)
    raw = rng.normal(size=(11, 13, 17))
    truth = postfilter.PostFilter(shift=10, weights=(700, 40, -30, 12, 25, -8, 6, -3), offset=-50)
    target = _reference_filter(truth, raw)
    found, before, after = _fit_3x3x3(raw, target)
    # the coarsest weights that keep all but MAX_SHIFT_LOSS of the gain: here shift 7
    assert found.shift < truth.shift
    exact = np.array([*truth.weights, truth.offset]) * truth.scale
    rounded = np.array([*found.weights, found.offset]) * found.scale
    np.testing.assert_allclose(rounded, exact, rtol=0, atol=0.5 * found.scale)
    assert before > 0.1 and after <= postfilter.MAX_SHIFT_LOSS * before
    # the slab-by-slab application is the kernel written out tap by tap
    padded = raw[np.ix_(*(postfilter.padded_indices(n, 0, n - 1) for n in raw.shape))]
    np.testing.assert_allclose(found.apply_padded(padded), _reference_filter(found, raw), atol=1e-5)


def test_the_normal_equations_do_not_depend_on_the_slabs_or_their_sampling(monkeypatch):
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(40, 24, 20))
    truth = postfilter.PostFilter(shift=10, weights=(700, 40, -30, 12, 25, -8, 6, -3), offset=-50)
    target = _reference_filter(truth, raw) + 0.01 * rng.normal(size=raw.shape)
    whole = postfilter.fit_kernels(raw, target)   # one slab: 19 200 voxels
    monkeypatch.setattr(postfilter, "FIT_SLAB_VOXELS", 24 * 20 * 3)   # 14 slabs of 3 planes
    sliced = postfilter.fit_kernels(raw, target)
    for r in postfilter.RADII:
        assert sliced[r].kernel == whole[r].kernel and sliced[r].after == pytest.approx(whole[r].after, rel=1e-9)
    # past FIT_MAX_VOXELS every k-th slab is accumulated: here every 2nd, a 7-slab sample
    monkeypatch.setattr(postfilter, "FIT_MAX_VOXELS", raw.size // 2)
    slab, starts = postfilter._fit_slabs(raw.shape)
    assert slab == 3 and list(starts) == list(range(0, 40, 6))
    sampled = postfilter.fit_kernels(raw, target)
    np.testing.assert_allclose(np.array(sampled[1].kernel.weights) * sampled[1].kernel.scale,
                               np.array(truth.weights) * truth.scale, atol=0.01)
    # the fit's own time is set aside from the first slab's; none under MIN_VOXELS
    assert postfilter.fit_seconds(raw) > 0 and postfilter.fit_seconds(raw[:2, :3, :3]) == 0


@pytest.mark.parametrize("kernel", ["3x3x3", "5x5x5"])
def test_the_filter_kernel_applies_the_taps_as_pytorch_does_on_any_thread_count(kernel):
    """The C++ post filter (kernels.postfilter) against the tap-by-tap float64 reference and
    PyTorch's slab-by-slab sums (its fallback), on odd sizes down to one voxel per axis; its bits
    do not depend on the thread count, nor on the block a voxel's row sits in."""
    import torch

    from neuralvol.kernels import build
    from neuralvol.kernels import postfilter as postfilter_kernel

    pf = {"3x3x3": KERNEL_3X3X3, "5x5x5": KERNEL_5X5X5}[kernel]
    if not postfilter_kernel.usable(pf.radius):
        pytest.skip(f"post-filter kernel unavailable here: {build.status()}")
    rng = np.random.default_rng(4)
    for shape in ((9, 13, 37), (1, 1, 1), (2, 7, 1)):
        raw = rng.normal(size=shape).astype(np.float32)
        padded = raw[np.ix_(*(postfilter.padded_indices(n, 0, n - 1, pf.radius) for n in shape))]
        fast = pf.apply_padded(padded)
        with build.pytorch_only():
            slow = pf.apply_padded(padded)
        assert fast.shape == slow.shape == shape and fast.dtype == np.float32
        np.testing.assert_allclose(fast, _reference_filter(pf, raw), rtol=0, atol=2e-6)
        np.testing.assert_allclose(fast, slow, rtol=0, atol=2e-6)
        before = torch.get_num_threads()
        try:
            for threads in (1, 3):
                torch.set_num_threads(threads)
                assert np.array_equal(pf.apply_padded(padded), fast)
        finally:
            torch.set_num_threads(before)
    # a block inside: its rows are the whole block's rows
    raw = rng.normal(size=(11, 12, 13)).astype(np.float32)
    whole = pf.apply_padded(raw[np.ix_(*(postfilter.padded_indices(n, 0, n - 1, pf.radius) for n in raw.shape))])
    inner = pf.apply_padded(raw[np.ix_(*(postfilter.padded_indices(n, 3, 8, pf.radius) for n in raw.shape))])
    assert np.array_equal(inner, whole[3:9, 3:9, 3:9])


def test_a_5x5x5_kernel_is_fitted_applied_and_chosen_only_where_it_pays():
    rng = np.random.default_rng(2)
    raw = rng.normal(size=(12, 14, 15))
    weights = [0] * 27
    for c, w in ((0, 600), (1, 50), (2, -40), (3, 30), (4, 20), (9, -25), (13, 10), (26, -7)):
        weights[c] = w
    truth = postfilter.PostFilter(shift=10, weights=tuple(weights), offset=12)
    # taps per class: 2 for each nonzero offset component, so 1 + 2 + 2 + 2 + 4 + 2 + 8 + 8
    assert (truth.radius, truth.size, len(truth.taps())) == (2, "5x5x5", 29)
    # the class of (dx, dy, dz) = (2, 0, 1) is (1 * 3 + 0) * 3 + 2 = 11
    assert postfilter.offset_class(2, 0, -1, 2) == 11 and postfilter.offset_class(-1, 1, 1, 1) == 7
    target = _reference_filter(truth, raw)
    fitted = postfilter.fit_kernels(raw, target)
    found = fitted[2].kernel
    rounded = np.array([*found.weights, found.offset]) * found.scale
    np.testing.assert_allclose(rounded, np.array([*truth.weights, truth.offset]) * truth.scale, rtol=0,
                               atol=0.5 * found.scale)
    assert fitted[1].after > 10 * fitted[2].after   # a 3x3x3 kernel cannot say it
    padded = raw[np.ix_(*(postfilter.padded_indices(n, 0, n - 1, 2) for n in raw.shape))]
    np.testing.assert_allclose(found.apply_padded(padded), _reference_filter(found, raw), atol=1e-5)
    assert postfilter.best_kernel(fitted, 100_000) == found
    # a 3x3x3 truth under noise: the 5x5x5 fit gains no more, so its ~20 more bytes lose
    # (0.17 dB of a 1000-byte file)
    small = postfilter.PostFilter(shift=10, weights=(700, 40, -30, 12, 25, -8, 6, -3), offset=-50)
    noisy = _reference_filter(small, raw) + 0.1 * rng.normal(size=raw.shape)
    fitted = postfilter.fit_kernels(raw, noisy)
    assert fitted[2].kernel.header_bytes() > fitted[1].kernel.header_bytes() + 15
    assert postfilter.best_kernel(fitted, 1000).radius == 1
    # neither kernel pays in a file whose bytes would all be its header
    assert postfilter.best_kernel(fitted, fitted[1].kernel.header_bytes()) is None
    # bytes already held back for a kernel cost nothing more: in a file two bytes longer than
    # the 3x3x3 kernel, its ~10 dB pay for its bytes only once they are free
    tiny = fitted[1].kernel.header_bytes() + 2
    gain = 10 * np.log10(fitted[1].before / fitted[1].after)
    assert postfilter.net_gain_db(fitted[1].before, fitted[1].after, tiny - 2, tiny) < 0 < gain
    assert postfilter.best_kernel(fitted, tiny, free_bytes=tiny - 2).radius == 1
    # where bytes were held back, a kernel that fits in them beats a longer one that gains more
    five = postfilter.fit_kernels(raw, target)     # the 5x5x5 truth above: the larger kernel gains far more
    assert postfilter.best_kernel(five, 100_000).radius == 2
    held = five[1].kernel.header_bytes()
    assert five[2].kernel.header_bytes() > held
    assert postfilter.best_kernel(five, 100_000, free_bytes=held).radius == 1
    # a kernel a few bytes longer than those held back is rounded coarser to fit in them
    # (while that still beats the 3x3x3 kernel)
    assert [k.shift for k, _ in five[2].coarser] == list(range(five[2].kernel.shift - 1, 0, -1))[:len(five[2].coarser)]
    fitting = [(k, after) for k, after in five[2].coarser
               if k.header_bytes() < five[2].kernel.header_bytes() and after < five[1].after]
    assert fitting, "no coarser rounding is both shorter and better than the 3x3x3 kernel"
    shorter, after = fitting[0]
    assert five[2].after < after
    chosen = postfilter.best_kernel(five, 100_000, free_bytes=shorter.header_bytes())
    assert chosen == shorter and chosen.radius == 2
    with pytest.raises(ValueError, match="8 or 27"):
        postfilter.PostFilter(shift=3, weights=(1,) * 9, offset=0)


def test_a_finer_rounding_that_fits_the_plain_files_unused_bytes_is_tried_too(filtered, hydrogen, tmp_path,
                                                                              monkeypatch):
    """compress tries the best kernel within the bytes QAT held back and, where it differs, the
    best within all the bytes the plain file leaves unused (a finer rounding of the same
    kernel that the held-back bytes were a little short of)."""
    import importlib

    compress_module = importlib.import_module("neuralvol.compress")   # the package exports the function
    fine = KERNEL_5X5X5
    coarse = postfilter.PostFilter(shift=8, weights=tuple(w >> 4 for w in fine.weights), offset=0)
    assert coarse.header_bytes() < fine.header_bytes()
    fitted = {2: postfilter.FittedKernel(fine, before=1e-4, after=5e-5, coarser=((coarse, 6e-5),))}
    monkeypatch.setattr(compress_module, "_fitted_kernels", lambda network, target, device: fitted)
    plain = nv.open(_save(filtered, tmp_path))
    plain.post_filter = None
    plain.invalidate_size()

    def candidates(held_back: int, unused: int) -> list:
        return compress_module._post_filter_candidates(plain, hydrogen, plain.nbytes + unused, "cpu", held_back)

    short = fine.header_bytes() - 1   # holds the coarse rounding, not the fine one
    assert candidates(short, unused=fine.header_bytes() + 3) == [coarse, fine]
    assert candidates(short, unused=short) == [coarse]
    assert candidates(fine.header_bytes(), unused=fine.header_bytes()) == [fine]
    # nothing held back: the kernel is paid for from the network's bytes, or from the unused ones
    assert candidates(0, unused=0) == [fine]
    assert candidates(0, unused=fine.header_bytes()) == [fine]


def test_fit_declines_where_it_gains_nothing_and_bytes_decide_small_files():
    rng = np.random.default_rng(1)
    raw = rng.normal(size=(9, 9, 9))
    found, before, after = _fit_3x3x3(raw, raw)   # already exact up to the identity kernel
    assert found is None or after >= before * (1 - 1e-9)
    assert _fit_3x3x3(raw[:2, :2, :2], raw[:2, :2, :2])[0] is None   # too few voxels
    # 0.2 dB is worth 20 bytes of a 10 kB file, not of a 300-byte one
    ratio = 10 ** (-0.02)
    assert postfilter.net_gain_db(1.0, ratio, 20, 10_000) > postfilter.MIN_GAIN_DB
    assert postfilter.net_gain_db(1.0, ratio, 20, 300) < postfilter.MIN_GAIN_DB
    assert postfilter.net_gain_db(1.0, 1.0, 20, 10_000) == -math.inf


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


# a smoothing 5x5x5 kernel (weights sum to 1): every decode path must apply it as it does the fitted one
KERNEL_5X5X5 = postfilter.PostFilter(shift=12, weights=(1000, 300, 40, 280, 90, 12, 30, 9, 1, 260, 80, 10, 75, 25,
                                                        3, 8, 2, 0, 20, 6, 1, 6, 2, 0, 1, 0, 0), offset=2)


KERNEL_3X3X3 = postfilter.PostFilter(shift=11, weights=(1500, 120, 60, -20, 90, -10, 5, -3), offset=-7)


@pytest.fixture(params=["fitted", "3x3x3", "5x5x5"])
def kernel_volume(request, filtered, tmp_path):
    """The filtered volume as fitted, and copies read back from files carrying given kernels."""
    if request.param == "fitted":
        return filtered
    kernel = {"3x3x3": KERNEL_3X3X3, "5x5x5": KERNEL_5X5X5}[request.param]
    path = tmp_path / "kernel.nvc"
    copy = nv.open(_save(filtered, tmp_path))
    copy.post_filter = kernel
    copy.save(path)
    back = nv.open(path)
    assert back.post_filter == kernel and back.post_filter.size == request.param
    assert nv.read_header(path)["version"] == compact_header.FILTERED_COMPACT_VERSION
    return back


def test_every_decode_path_applies_the_filter(kernel_volume, monkeypatch):
    vol = kernel_volume
    nx, ny, nz = vol.dims
    unfiltered = evaluate_grid(vol.network, *(unit_axis(n, 0, n - 1) for n in (nx, ny, nz)))
    lo, hi = vol.value_range
    np.testing.assert_allclose(vol.decode_values(), lo + (hi - lo) * _reference_filter(vol.post_filter, unfiltered),
                               rtol=0, atol=1e-6 * (hi - lo))
    full = vol.decode_values()
    # regions, at the border and inside, are exactly the full decode's voxels
    for region in ((0, 5, 0, 23, 0, 0), (7, 16, 3, 9, 11, 23), (23, 23, 23, 23, 23, 23)):
        x0, x1, y0, y1, z0, z1 = region
        np.testing.assert_array_equal(vol.decode_values(region=region), full[z0:z1 + 1, y0:y1 + 1, x0:x1 + 1])
    # points at the grid's nodes give the grid's values (float32 coordinates: to ~1e-6)
    nodes = np.array([[0, 0, 0], [5, 17, 9], [23, 23, 23], [12, 0, 23]], dtype=np.float64)
    np.testing.assert_allclose(vol.sample(nodes), full[nodes[:, 2].astype(int), nodes[:, 1].astype(int),
                                                         nodes[:, 0].astype(int)], rtol=0, atol=1e-5 * (hi - lo))
    # off the grid: the network's own value plus the correction interpolated from the nodes,
    # written out point by point from the whole grid's correction
    correction = _reference_filter(vol.post_filter, unfiltered) - unfiltered
    rng = np.random.default_rng(3)
    # down- and upsampled (anisotropically; the nodes they touch form one block), sparsely
    # downsampled (they do not: evaluated slab by slab), and a sub-extent of each
    for dims in ((13, 9, 31), (48, 47, 24), (4, 5, 3)):
        axes = [unit_axis(n, 0, n - 1) for n in dims]
        zz, yy, xx = np.meshgrid(axes[2], axes[1], axes[0], indexing="ij")
        points = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)
        expected = lo + (hi - lo) * (evaluate_points(vol.network, points).astype(np.float64)
                                     + _interpolate(correction, points))
        np.testing.assert_allclose(vol.decode_values(dims=dims), expected.reshape(dims[::-1]),
                                   rtol=0, atol=1e-5 * (hi - lo))
        region = (1, dims[0] - 2, 2, 3, dims[2] // 2, dims[2] - 1)
        x0, x1, y0, y1, z0, z1 = region
        np.testing.assert_allclose(vol.decode_values(dims=dims, region=region),
                                   expected.reshape(dims[::-1])[z0:z1 + 1, y0:y1 + 1, x0:x1 + 1],
                                   rtol=0, atol=1e-5 * (hi - lo))
    # many scattered points take the correction from one block of nodes around them all, a
    # few from the nodes their corners' kernels reach: both give the same field
    blocks = []
    from_block = postfilter.PostFilter._apply_points_from_block
    monkeypatch.setattr(postfilter.PostFilter, "_apply_points_from_block",
                        lambda self, *a: blocks.append(len(a[0])) or from_block(self, *a))
    many = np.concatenate([rng.random((500, 3)), np.array([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.5, 0.0, 1.0]])])
    for scattered, by_block in ((many, True), (many[-4:], False)):
        physical = scattered * (np.array(vol.dims) - 1) * np.array(vol.spacing) + np.array(vol.origin)
        expected = lo + (hi - lo) * (evaluate_points(vol.network, scattered).astype(np.float64)
                                     + _interpolate(correction, scattered))
        blocks.clear()
        np.testing.assert_allclose(vol.sample(physical), expected, rtol=0, atol=1e-5 * (hi - lo))
        assert blocks == ([len(scattered)] if by_block else [])


def test_one_sampling_request_evaluates_its_block_once(filtered, monkeypatch):
    vol = filtered
    lo, hi = vol.value_range
    unit = np.random.default_rng(5).random((3, 400, 3))   # three chunks of a randomly ordered cloud
    unit[0, :2] = [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]        # the first chunk's block holds the others'
    chunks = unit * (np.array(vol.dims) - 1) * np.array(vol.spacing) + np.array(vol.origin)
    alone = [vol.sample(c) for c in chunks]
    evaluated = []
    block = postfilter.PostFilter._block_correction
    monkeypatch.setattr(postfilter.PostFilter, "_block_correction",
                        lambda self, *a, **k: evaluated.append(a[1]) or block(self, *a, **k))
    with vol.sampling():
        shared = [vol.sample(c) for c in chunks]
    assert len(evaluated) == 1 and vol._block_cache is None
    for a, b in zip(alone, shared):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * (hi - lo))
    evaluated.clear()
    for c in chunks:   # outside a request each call evaluates its own block
        vol.sample(c)
    assert len(evaluated) == 3


def _interpolate(grid: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Trilinear interpolation of ``grid`` ``[z, y, x]`` at unit ``points`` ``[N, 3]`` (x, y, z)."""
    n = np.array(grid.shape[::-1])
    x = points * (n - 1)
    i0 = np.clip(np.floor(x).astype(int), 0, n - 2)
    t = x - i0
    out = np.zeros(len(points))
    for c in np.ndindex(2, 2, 2):
        i = i0 + np.array(c)
        w = np.prod(np.where(np.array(c) == 1, t, 1 - t), axis=1)
        out += w * grid[i[:, 2], i[:, 1], i[:, 0]]
    return out


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


@pytest.mark.parametrize("declared", [container.CODED_SECTIONS_VERSION, container.EXTENDED_VERSION])
def test_a_json_file_declaring_a_version_below_6_is_refused_with_its_post_filters(filtered, tmp_path, declared):
    """A version-4 reader would decode without the filters: a file saying 2 or 4 whose models
    hold them is refused (container.decode's one rule), and reads once they are taken out."""
    assert filtered.post_filter is not None
    path = tmp_path / "two.nvc"
    nv.save_models(path, [filtered, filtered])
    data = path.read_bytes()

    def relabelled(edit=lambda h: None) -> bytes:
        magic, version, flags, hlen, _ = container.PREAMBLE.unpack_from(data, 0)
        assert version == container.FILTERED_VERSION
        start = container.PREAMBLE.size
        header = json.loads(container.unpack_header(data[start:start + hlen], flags, "test"))
        header["version"] = declared
        edit(header)
        stored, flags = container.pack_header(json.dumps(header, separators=(",", ":")).encode(), declared)
        return container.PREAMBLE.pack(magic, declared, flags, len(stored), zlib.crc32(stored)) + stored + data[start + hlen:]

    old = tmp_path / f"v{declared}.nvc"
    old.write_bytes(relabelled())
    with pytest.raises(FormatError) as err:
        nv.open_all(old)
    assert str(err.value) == (f"{old}: a post filter in a model entry needs format version 6; this file says "
                              f"{declared}: it was not written by neuralvol")
    old.write_bytes(relabelled(lambda h: [m.pop("post_filter") for m in h["models"]]))
    back = nv.open_all(old)
    assert [v.post_filter for v in back] == [None, None]
    bare = nv.open_all(path)[1]
    bare.post_filter = None
    np.testing.assert_array_equal(back[1].decode_values(), bare.decode_values())


def _save(vol, tmp_path):
    path = tmp_path / "v.nvc"
    vol.save(path)
    return path


def _bytes(vol, tmp_path) -> bytes:
    return _save(vol, tmp_path).read_bytes()


def test_other_grids_report_progress_over_both_evaluations(filtered, monkeypatch):
    """Off the original grid a filtered decode evaluates the grid, then the original nodes
    around it: progress rises through both, to 1 at the end (as one block and slab by slab)."""
    assert filtered.post_filter is not None
    apply_grid = postfilter.PostFilter.apply_grid
    seen, at_nodes = [], []
    monkeypatch.setattr(postfilter.PostFilter, "apply_grid",
                        lambda self, *a: at_nodes.append(len(seen)) or apply_grid(self, *a))
    for dims in ((48, 47, 24), (4, 5, 3)):
        seen.clear()
        at_nodes.clear()
        filtered.decode(dims=dims, progress=seen.append)
        assert len(at_nodes) == 1 and 0 < at_nodes[0] < len(seen)   # reports in both parts
        assert seen[at_nodes[0] - 1] < 1.0 - 1e-6 and seen[-1] == pytest.approx(1.0)
        assert all(0.0 <= a <= b + 1e-12 for a, b in zip(seen, seen[1:])) and max(seen) <= 1.0 + 1e-12


def test_node_run_finds_consecutive_original_nodes_only():
    assert postfilter.node_run(unit_axis(33, 4, 20), 33) == (4, 20)
    # a brick's share of a bricked decode: (index - extent start) / span, with rounding
    u = (np.arange(30.0, 64.0) - 30.0) / 33.0
    assert postfilter.node_run(u, 34) == (0, 33)
    assert postfilter.node_run(unit_axis(33, 0, 32)[::2], 33) is None        # every other node
    assert postfilter.node_run(unit_axis(33, 0, 9) + 0.001, 33) is None      # off the nodes
    assert postfilter.node_run(np.array([0.0]), 1) == (0, 0)
    assert postfilter.node_run(np.array([0.0, 0.0]), 1) is None
    assert postfilter.node_run(np.array([]), 5) is None
