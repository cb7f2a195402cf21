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
    plain = nv.compress(block, post_filter=False, **opts)   # a weighted fit stores no post filter
    weighted = nv.compress(block, roi=ROI, roi_weight=10, **opts)
    assert weighted.post_filter is None
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


def test_error_sampling_keeps_the_loss_the_plain_mse_and_follows_the_observed_error():
    from neuralvol.fitting import ERROR_MIN_VOXELS, ERROR_REPLAN_STEPS, ErrorSampler, error_sampler
    z, y, x = np.mgrid[:30, :21, :37]   # no side a multiple of the 8-voxel blocks
    volume = np.where((x - 16) ** 2 + (y - 10) ** 2 + (z - 15) ** 2 < 49, 1.0 + x / 32.0, 0.0).astype(np.float32)
    assert error_sampler(volume, "cpu") is None         # under ERROR_MIN_VOXELS: uniform
    assert volume.size < ERROR_MIN_VOXELS
    assert error_sampler(volume[..., None].repeat(2, axis=3), "cpu", min_voxels=0) is None   # a vector field
    assert error_sampler(np.full((9, 9, 9), 3.0, np.float32), "cpu", min_voxels=0) is None
    sampler = error_sampler(volume, "cpu", min_voxels=0)
    assert isinstance(sampler, ErrorSampler)
    generator = torch.Generator().manual_seed(0)

    def draws(n):
        out = [sampler.draw(8192, generator) for _ in range(n)]
        return torch.cat([d[0] for d in out]), torch.cat([d[1] for d in out]).double()

    flat, weights = draws(40)
    assert int(flat.min()) >= 0 and int(flat.max()) < volume.size
    # started from the blocks' variance: the ball's edge is sampled more than the empty corners
    ball = torch.as_tensor(volume.reshape(-1) > 0)
    assert float(ball[flat].double().mean()) > 2 * float(ball.double().mean())
    # any per-voxel loss: the weighted sample mean estimates the mean over every voxel
    loss = torch.as_tensor(volume.reshape(-1) ** 2 + 0.25, dtype=torch.float64)
    assert float((weights * loss[flat]).mean()) == pytest.approx(float(loss.mean()), rel=0.02)
    # the guide table finds exactly the block torch.searchsorted would
    u = torch.rand(5000, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    start = sampler.guide[(u * sampler.guide.numel()).long()]
    assert bool((start <= torch.searchsorted(sampler.cdf, u, right=True)).all())
    # observed error far from the ball (the corner x, y, z < 8) moves the samples there
    corner = torch.zeros(volume.shape, dtype=torch.bool)
    corner[:8, :8, :8] = True
    corner = corner.reshape(-1)
    before = float(corner[flat].double().mean())
    for _ in range(10 * ERROR_REPLAN_STEPS):
        flat, _ = sampler.draw(256, generator)
        sampler.observe(corner[flat].double() * 10.0)
    flat, weights = draws(10)
    assert float(corner[flat].double().mean()) > 0.5 > 5 * before
    assert float((weights * loss[flat]).mean()) == pytest.approx(float(loss.mean()), rel=0.03)
