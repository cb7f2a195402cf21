"""Compressing real volumes: quality floors, size guarantee, decoding anywhere, edge cases."""
import math
import time

import numpy as np
import torch
import pytest

import neuralvol as nv
from neuralvol.evaluate import unit_axis
from neuralvol.metrics import psnr
from neuralvol.volume import cast_to_dtype


def test_ct_head_round_trip_quality_and_size(headsq):
    vol = nv.compress(headsq, spacing=(3.2, 3.2, 1.5), ratio=50, steps=300, seed=0)
    decoded = vol.decode()
    assert decoded.dtype == np.int16 and decoded.shape == headsq.shape
    assert psnr(headsq, decoded) == pytest.approx(vol.training.psnr, abs=1e-3)
    assert psnr(headsq, decoded) > 27.0
    assert vol.nbytes <= headsq.nbytes / 50


def test_mr_head_round_trip(head_mr, tmp_path):
    vol = nv.compress(head_mr, spacing=(4, 4, 4), ratio=20, steps=200, seed=0)
    path = tmp_path / "mr.nvc"
    vol.save(path)
    decoded = nv.open(path).decode()
    assert decoded.dtype == np.uint8
    assert psnr(head_mr, decoded) > 24.0
    assert path.stat().st_size <= head_mr.nbytes / 20


@pytest.mark.parametrize("kwargs, budget", [
    (dict(ratio=25), lambda n, v: n / 25),
    (dict(ratio=150), lambda n, v: n / 150),
    (dict(bpv=0.5), lambda n, v: v * 0.5 / 8),
    (dict(size=3000), lambda n, v: 3000),
])
def test_file_never_exceeds_the_budget(headsq, tmp_path, kwargs, budget):
    vol = nv.compress(headsq, steps=2, **kwargs)
    path = tmp_path / "x.nvc"
    vol.save(path)
    limit = budget(headsq.nbytes, headsq.size)
    assert path.stat().st_size <= limit
    # and the budget is used: at least 80 % of it, so the guarantee is not met by wasting quality
    assert path.stat().st_size >= 0.8 * limit


def test_impossible_budget_is_a_clear_error(headsq):
    with pytest.raises(nv.InputError, match="lower ratio|larger size"):
        nv.compress(headsq, ratio=20000, steps=1)
    with pytest.raises(nv.InputError, match="only one of"):
        nv.compress(headsq, ratio=10, size=1000, steps=1)


def test_unknown_encoding_is_one_clear_error(headsq_crop):
    with pytest.raises(nv.InputError, match="unknown encoding 'quadratic'; use one of auto, hashgrid, ") as err:
        nv.compress(headsq_crop, ratio=20, steps=1, encoding="quadratic")
    assert err.value.__context__ is None   # not raised again inside a planning fallback's traceback


def test_region_decode_equals_region_of_full_decode(crop_volume):
    full = crop_volume.decode(dtype=np.float32)
    roi = crop_volume.decode(region=(10, 30, 0, 35, 5, 20), dtype=np.float32)
    assert roi.shape == (16, 36, 21)
    np.testing.assert_allclose(roi, full[5:21, 0:36, 10:31], rtol=0, atol=1e-3)
    # the README's example: --region 10 40 0 63 20 50 == full[20:51, 0:64, 10:41] on a finer grid
    fine_full = crop_volume.decode(dims=(64, 64, 64), dtype=np.float32)
    fine_roi = crop_volume.decode(dims=(64, 64, 64), region=(10, 40, 0, 63, 20, 50), dtype=np.float32)
    np.testing.assert_allclose(fine_roi, fine_full[20:51, 0:64, 10:41], rtol=0, atol=1e-3)


def test_resampling_covers_the_same_physical_bounds(crop_volume):
    nx, ny, nz = crop_volume.dims
    fine = crop_volume.decode(dims=(2 * nx - 1, 2 * ny - 1, 2 * nz - 1), dtype=np.float32)
    coarse = crop_volume.decode(dtype=np.float32)
    # every second node of the refined grid is an original node
    np.testing.assert_allclose(fine[::2, ::2, ::2], coarse, atol=1e-3)
    assert crop_volume.grid_spacing((2 * nx - 1, 2 * ny - 1, 2 * nz - 1)) == pytest.approx((1.6, 1.6, 0.75))
    half = crop_volume.decode(dims=(20, 18, 15))
    assert half.shape == (15, 18, 20) and half.dtype == np.int16


def test_sample_at_voxel_centres_matches_decode_and_nan_outside(crop_volume):
    rng = np.random.default_rng(0)
    nx, ny, nz = crop_volume.dims
    idx = np.stack([rng.integers(0, n, 200) for n in (nx, ny, nz)], axis=1)
    points = np.asarray(crop_volume.origin) + idx * np.asarray(crop_volume.spacing)
    full = crop_volume.decode(dtype=np.float64)
    values = crop_volume.sample(points)
    np.testing.assert_allclose(values, full[idx[:, 2], idx[:, 1], idx[:, 0]], rtol=1e-5, atol=1e-2)
    outside = np.array([[crop_volume.bounds[1] + 1.0, crop_volume.origin[1], crop_volume.origin[2]],
                        [np.nan, 0, 0]])
    assert np.isnan(crop_volume.sample(outside)).all()
    with pytest.raises(nv.InputError, match=r"shape \(N, 3\)"):
        crop_volume.sample(np.zeros((4, 2)))


def test_bad_regions_and_dims(crop_volume):
    with pytest.raises(nv.InputError, match="x-range 0..40 is outside 0..39"):
        crop_volume.decode(region=(0, 40, 0, 1, 0, 1))
    with pytest.raises(nv.InputError, match="six integers"):
        crop_volume.decode(region=(0, 1, 2))
    with pytest.raises(nv.InputError, match="three positive integers"):
        crop_volume.decode(dims=(0, 4, 4))


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32", "int64", "uint64",
                                   "float16", "float32", "float64"])
def test_every_dtype_round_trips_to_itself(head_mr, dtype, tmp_path):
    block = head_mr[10:26, 20:40, 12:36].astype(np.float64)
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else None
    if info is not None:  # spread over most of the dtype's range, to exercise rounding and clipping
        lo, hi = max(info.min, -(2 ** 40)), min(info.max, 2 ** 40)
        block = lo + (block / 255.0) * (hi - lo)
    array = block.astype(dtype)
    vol = nv.compress(array, ratio=4, steps=60, seed=0)
    vol.save(tmp_path / "d.nvc")
    out = nv.open(tmp_path / "d.nvc").decode()
    assert out.dtype == np.dtype(dtype) and out.shape == array.shape
    if info is not None:
        assert out.min() >= info.min and out.max() <= info.max
    assert psnr(array, out) > 15.0


def whole_array_decode(vol, region, dtype):
    """decode()'s values by the whole-array numpy formula it replaced: float32 network
    output, float64 rescaling, rint and clip for integers, then the cast."""
    dims = vol.dims
    axes = [unit_axis(n, region[2 * a], region[2 * a + 1]) for a, n in enumerate(dims)]
    offset, scale = vol._normalisation()
    shape = tuple(region[2 * a + 1] - region[2 * a] + 1 for a in (2, 1, 0)) + \
        (() if vol.info.components is None else (vol.n_components,))
    # the field: the network, then the post filter where the file has one
    values = offset + scale * vol.field_grid(axes, "cpu", None, torch.float32).astype(np.float64).reshape(shape)
    return values, cast_to_dtype(values, np.dtype(dtype))


@pytest.mark.parametrize("dtype", ["int16", "uint8", "int8", "uint16", "float32", "float64"])
def test_slab_cast_equals_the_whole_array_cast(crop_volume, dtype):
    # the rescale + round + clip + cast run per slab in torch; the bytes must not change
    for region in ((0, 39, 0, 35, 0, 29), (3, 17, 0, 35, 9, 9)):
        values, expected = whole_array_decode(crop_volume, region, dtype)
        out = crop_volume.decode(region=region, dtype=dtype)
        assert out.dtype == expected.dtype and np.array_equal(out, expected)
        assert np.array_equal(crop_volume.decode_values(region=region), values)
    assert crop_volume.decode(dtype="uint8").max() == 255   # the CT (up to ~3000) clips


def test_nan_and_inf_are_rejected_with_counts(headsq_crop):
    bad = headsq_crop.astype(np.float32)
    bad[0, 0, :3] = np.nan
    bad[1, 1, 1] = np.inf
    with pytest.raises(nv.InputError, match="3 NaN and 1 infinite"):
        nv.compress(bad, steps=1)


@pytest.mark.parametrize("array, message", [
    (np.zeros((0, 4, 4), np.float32), "empty volume"),
    (np.zeros((2, 3, 4, 3, 2), np.float32), "or a \\[z, y, x, C\\] array of C components, got 5 dimensions"),
    (np.zeros((4, 4, 4), bool), "dtype bool is not supported"),
    (np.zeros((4, 4, 4), complex), "dtype complex128 is not supported"),
])
def test_unusable_arrays_are_rejected(array, message):
    with pytest.raises(nv.InputError, match=message):
        nv.compress(array, steps=1)


@pytest.mark.parametrize("bad", [float("inf"), float("nan"), -1.0])
def test_bad_time_budgets_are_rejected_before_any_work(headsq_crop, bad, monkeypatch):
    import importlib
    monkeypatch.setattr(importlib.import_module("neuralvol.compress"), "fit", None)   # never reached
    for extra in ({}, {"max_error": 5.0}):   # the error-bounded search must not split a bad budget
        with pytest.raises(nv.InputError, match=r"^time budget must be a finite number of seconds >= 0, got "
                                                r"(inf|nan|-1\.0); leave it out for the default \(60 s\), or give steps$"):
            nv.compress(headsq_crop, ratio=20, time_budget=bad, steps=5, **extra)
    with pytest.raises(nv.InputError, match="time budget must be a number of seconds, got 'soon'"):
        nv.compress(headsq_crop, ratio=20, time_budget="soon", steps=5)


def test_bad_spacing_is_rejected(headsq_crop):
    with pytest.raises(nv.InputError, match="spacing"):
        nv.compress(headsq_crop, spacing=(1, 0, 1), steps=1)


def test_constant_volume_is_exact(tmp_path):
    array = np.full((16, 17, 18), 17, dtype=np.uint16)
    vol = nv.compress(array, ratio=2, steps=50)
    assert vol.training.exact and vol.training.psnr is None and vol.training.steps == 0
    vol.save(tmp_path / "c.nvc")
    again = nv.open(tmp_path / "c.nvc")
    assert np.array_equal(again.decode(), array) and again.decode().dtype == np.uint16
    assert np.array_equal(again.decode(dims=(3, 3, 3)), np.full((3, 3, 3), 17, np.uint16))
    assert again.decode(dtype="float32").dtype == np.float32 and again.decode_values().dtype == np.float64


def test_one_voxel_volume(tmp_path):
    array = np.array([[[3.5]]], dtype=np.float32)
    vol = nv.compress(array, size=4096, steps=5)
    vol.save(tmp_path / "one.nvc")
    again = nv.open(tmp_path / "one.nvc")
    assert again.dims == (1, 1, 1)
    assert again.decode().tolist() == [[[3.5]]]
    assert again.sample([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0]])[0] == 3.5
    assert math.isnan(again.sample([[0.5, 0.0, 0.0]])[0])


def test_two_dimensional_image(head_mr, tmp_path):
    image = head_mr[20]  # [y, x]
    vol = nv.compress(image, ratio=4, steps=300, seed=0)
    assert vol.dims == (48, 62, 1)
    out = vol.decode()
    assert out.shape == (1, 62, 48)
    assert psnr(image[None], out) > 18.0  # 2D images leave most of a 3D grid unused
    assert vol.decode(dims=(96, 124, 1)).shape == (1, 124, 96)


def test_same_seed_same_bytes_on_this_machine(headsq_crop):
    a = nv.compress(headsq_crop, ratio=20, steps=40, seed=7, record_timings=False)
    b = nv.compress(headsq_crop, ratio=20, steps=40, seed=7, record_timings=False)
    c = nv.compress(headsq_crop, ratio=20, steps=40, seed=8, record_timings=False)
    from neuralvol.bitstream.schema import to_bytes
    assert to_bytes([a]) == to_bytes([b])
    assert to_bytes([a]) != to_bytes([c])
    # with timings recorded, everything but the wall-clock fields is identical
    d = nv.compress(headsq_crop, ratio=20, steps=40, seed=7)
    assert np.array_equal(d.decode(), a.decode())


def test_cuda_fits_switch_deterministic_kernels_on_and_back_off():
    """The switch runs on any machine (a CUDA fit once died in it: a missing import that no
    CPU test reached)."""
    import torch
    from neuralvol.fitting import deterministic_kernels
    before = torch.are_deterministic_algorithms_enabled()
    with deterministic_kernels(torch.device("cuda")):
        assert torch.are_deterministic_algorithms_enabled()
    assert torch.are_deterministic_algorithms_enabled() == before


def test_progress_callback_reports_and_can_cancel(headsq_crop):
    seen = []
    nv.compress(headsq_crop, ratio=20, steps=30, progress=lambda p: seen.append(p))
    assert seen and seen[-1].fraction == 1.0 and seen[-1].step == 30
    assert all(0.0 <= p.fraction <= 1.0 and p.elapsed >= 0 for p in seen)
    with pytest.raises(nv.FitCancelled, match="cancelled"):
        nv.compress(headsq_crop, ratio=20, steps=10_000, progress=lambda p: p.step < 5)


def test_psnr_target_stops_early(headsq_crop):
    vol = nv.compress(headsq_crop, ratio=10, steps=3000, psnr=22.0, seed=0)
    assert vol.training.stopped == "psnr"
    assert vol.training.steps < 3000
    assert vol.training.psnr >= 22.0 - 0.2  # measured after rounding to the stored dtype


def test_time_budget_bounds_the_whole_call(headsq):
    """Planning, fitting, rate control and the final PSNR decode all end within budget + 5 %.

    Before the finishing work was measured at run time, a 10 s budget on this volume took
    13.2 s (the first Adam's torch._dynamo import, 1.2-2 s of final decode), and this test's
    4 s took 10-11 s; now 9.4-10.2 s and 3.6-4.1 s.
    The constant absorbs a loaded 2-core machine's jitter. The process's first compress
    imports torch._dynamo (1.5-6 s here) before its clock starts, so it is paid first."""
    nv.compress(headsq[:8, :8, :8], ratio=2, steps=1)
    budget = 4.0
    start = time.perf_counter()
    vol = nv.compress(headsq, ratio=100, time_budget=budget, seed=0)
    elapsed = time.perf_counter() - start
    assert vol.training.stopped == "time_budget"
    # the fit left room for the finishing work (reserved from its measured cost: about 0.5 s
    # here; 3.516 s of fitting was seen in CI once decoding stopped page-faulting)
    assert vol.training.seconds < budget - 0.2
    assert elapsed <= budget * 1.05 + 1.0, f"compress took {elapsed:.2f} s for a {budget} s budget"


def test_cuda_path_matches_cpu(headsq_crop):
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU visible to torch")
    vol = nv.compress(headsq_crop, ratio=10, steps=100, device="cuda")
    assert vol.training.device.startswith("cuda")
    np.testing.assert_allclose(vol.decode(device="cuda", dtype=np.float32), vol.decode(dtype=np.float32), atol=1e-2)


def test_cuda_request_without_gpu_is_a_clear_error(headsq_crop):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(nv.InputError, match="no CUDA GPU"):
        nv.compress(headsq_crop, steps=1, device="cuda")
