"""Region importance: the fit spends its bytes where the weights are high."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import neuralvol as nv
from neuralvol.importance import importance_weights, region_mask

ROI = [[4, 23, 10, 33, 5, 24]]  # 10 % of the block below


def _psnr(decoded, original, sel) -> float:
    span = float(original.max() - original.min())
    d = (decoded.astype(np.float64) - original)[sel]
    return 10 * np.log10(span ** 2 / np.mean(d * d))


@pytest.fixture(scope="module")
def block(headsq):
    return np.ascontiguousarray(headsq[30:70, 8:56, 8:56])  # 48 x 48 x 40, int16


def test_roi_fits_its_box_better_at_equal_size(block):
    # measured (seeds 0/1, 60 and 120 steps): +1.2 to +3.8 dB inside, -1 to -2.6 dB outside
    mask = region_mask(block.shape, ROI)
    opts = dict(ratio=30, steps=60, seed=0, device="cpu", record_timings=False)
    plain = nv.compress(block, **opts)
    weighted = nv.compress(block, roi=ROI, roi_weight=10, **opts)
    assert abs(weighted.nbytes - plain.nbytes) <= 0.01 * plain.nbytes
    assert weighted.config == plain.config
    inside_gain = _psnr(weighted.decode(), block, mask) - _psnr(plain.decode(), block, mask)
    assert inside_gain > 0.5


def test_an_importance_volume_equals_the_same_boxes(block):
    w_roi = importance_weights(block.shape, roi=ROI, roi_weight=4)
    mask = region_mask(block.shape, ROI)
    assert w_roi.mean() == pytest.approx(1.0)
    assert w_roi[mask].min() == pytest.approx(4 * w_roi[~mask].max())
    w_vol = importance_weights(block.shape, importance=np.where(mask, 4.0, 1.0))
    np.testing.assert_array_equal(w_roi, w_vol)
    # overlapping boxes take the weight once; a flat box is one box
    np.testing.assert_array_equal(importance_weights(block.shape, roi=ROI + ROI, roi_weight=4), w_roi)
    np.testing.assert_array_equal(importance_weights(block.shape, roi=ROI[0], roi_weight=4), w_roi)


def test_zero_weight_voxels_are_never_trained_on(block):
    # all weight on one half: the other half stays at the untrained network's output
    weights = np.zeros(block.shape)
    weights[:, :, :24] = 1.0
    opts = dict(ratio=30, steps=40, seed=0, device="cpu", record_timings=False)
    vol = nv.compress(block, importance=weights, **opts)
    sel = np.zeros(block.shape, bool)
    sel[:, :, :24] = True
    assert _psnr(vol.decode(), block, sel) > _psnr(vol.decode(), block, ~sel) + 3


def test_importance_and_max_error_work_together(block):
    vol = nv.compress(block, ratio=30, steps=20, seed=0, device="cpu", roi=ROI, max_error=5)
    assert np.abs(vol.decode().astype(np.float64) - block).max() <= 5


def test_foreground_sampling_keeps_the_loss_the_plain_mse_in_expectation():
    from neuralvol.fitting import FOREGROUND_MIN_VOXELS, ForegroundSampler, foreground_sampler
    z, y, x = np.mgrid[:32, :32, :32]
    volume = np.where((x - 16) ** 2 + (y - 12) ** 2 + (z - 16) ** 2 < 49, 1.0 + x / 32.0, 0.0).astype(np.float32)
    assert foreground_sampler(volume, "cpu") is None        # under FOREGROUND_MIN_VOXELS: uniform
    assert volume.size < FOREGROUND_MIN_VOXELS
    sampler = foreground_sampler(volume, "cpu", min_voxels=0)
    assert isinstance(sampler, ForegroundSampler)
    # the foreground is the ball grown by two voxels (a box), nothing wraps round the edges
    inside = sampler.inside.numpy().reshape(volume.shape)
    assert inside[volume > 0].all() and not inside[0].any() and not inside[31].any()
    assert inside[16, 12, 16 + 6 + 2] and not inside[16, 12, 16 + 6 + 3]
    generator = torch.Generator().manual_seed(0)
    draws = [sampler.draw(8192, generator) for _ in range(60)]
    flat = torch.cat([d[0] for d in draws])
    weights = torch.cat([d[1] for d in draws]).double()
    share = inside.mean()
    assert float(sampler.inside[flat].double().mean()) == pytest.approx(0.5 * share + 0.5, abs=0.01)
    # any per-voxel loss: the weighted sample mean estimates the mean over every voxel
    loss = torch.as_tensor(volume.reshape(-1) ** 2 + 0.25, dtype=torch.float64)
    assert float((weights * loss[flat]).mean()) == pytest.approx(float(loss.mean()), rel=0.02)
    # a volume without a dominant value (or all one value) is sampled uniformly
    noise = np.random.default_rng(0).random((32, 32, 32), dtype=np.float32)
    assert foreground_sampler(noise, "cpu", min_voxels=0) is None
    assert foreground_sampler(np.zeros((8, 8, 8), np.float32), "cpu", min_voxels=0) is None
