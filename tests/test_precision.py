"""Decode arithmetic (``compute=``): the batch-major MLP, bfloat16 hidden layers, and what "auto" picks."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import neuralvol as nv
from neuralvol import evaluate
from neuralvol.cli import main
from neuralvol.errors import InputError
from neuralvol.metrics import psnr

from conftest import DATA


@pytest.fixture(scope="module")
def head_mr_fit():
    """The bundled MR head at 30:1 (a 2-layer MLP, ~25 dB), and the original."""
    original = np.load(DATA / "head_mr_small.npy")
    return nv.compress(original, ratio=30, steps=200, seed=1, record_timings=False), original


def test_batch_major_mlp_equals_the_feature_major_one(head_mr_fit):
    """The decode's batch-major GEMMs compute the fitting path's MLP (fp32 rounding apart)."""
    field = head_mr_fit[0].network
    points = torch.rand((5000, 3), generator=torch.Generator().manual_seed(3))
    feats = field.encoding.encode_feature_major(points)
    with torch.no_grad():
        reference = field.mlp(feats)
        workspace = {}
        for _ in range(2):   # the second call reuses the workspace's buffers
            batch_major = field.mlp(feats, torch.float32, workspace)
            torch.testing.assert_close(batch_major, reference, rtol=0, atol=2e-6)


def test_bfloat16_decode_stays_within_a_fifth_of_a_db(head_mr_fit):
    vol, original = head_mr_fit
    exact = vol.decode()
    np.testing.assert_array_equal(exact, vol.decode(compute="float32"))   # the default
    low = vol.decode(compute="bfloat16")
    assert not np.array_equal(exact, low)   # bf16 was really used
    assert abs(psnr(original, low) - psnr(original, exact)) < 0.2
    assert abs(psnr(original, exact) - vol.training.psnr) < 1e-3   # the recorded PSNR is fp32's


def test_auto_takes_bfloat16_only_where_its_error_is_a_small_share_of_the_model_error(head_mr_fit):
    vol, _ = head_mr_fit
    share = evaluate.bf16_error(vol.network) / 10.0 ** (-vol.training.psnr / 20.0)
    native = evaluate.bf16_is_native("cpu") and evaluate.bf16_speedup(vol.network, "cpu") >= evaluate.BF16_MIN_SPEEDUP
    expected = torch.bfloat16 if native and share <= evaluate.BF16_ERROR_SHARE else torch.float32
    assert vol.mlp_dtype("auto") == expected
    assert (vol.decode(compute="auto") ==
            vol.decode(compute="bfloat16" if expected == torch.bfloat16 else "float32")).all()
    # a model claimed to be far more exact than bf16 can follow decodes in fp32
    precise = nv.NeuralVolume(vol.network, vol.info, dataclasses.replace(vol.training, psnr=140.0), vol.storage)
    assert precise.mlp_dtype("auto") == torch.float32
    # without a recorded PSNR nothing says bf16 is harmless
    unknown = nv.NeuralVolume(vol.network, vol.info, dataclasses.replace(vol.training, psnr=None), vol.storage)
    assert unknown.mlp_dtype("auto") == torch.float32
    # a model far less exact than bf16's rounding takes bf16 wherever it is native
    coarse = nv.NeuralVolume(vol.network, vol.info, dataclasses.replace(vol.training, psnr=5.0), vol.storage)
    assert coarse.mlp_dtype("auto") == (torch.bfloat16 if native else torch.float32)


def test_auto_takes_bfloat16_only_where_it_is_faster(head_mr_fit, monkeypatch):
    vol, _ = head_mr_fit
    coarse = dataclasses.replace(vol.training, psnr=5.0)   # bf16's error is no concern
    monkeypatch.setattr(evaluate, "bf16_is_native", lambda device: True)
    monkeypatch.setattr(evaluate, "bf16_speedup", lambda field, device: 0.66)   # the AMX Xeon's kernel
    assert nv.NeuralVolume(vol.network, vol.info, coarse, vol.storage).mlp_dtype("auto") == torch.float32
    monkeypatch.setattr(evaluate, "bf16_speedup", lambda field, device: 1.9)    # the EPYC's
    assert nv.NeuralVolume(vol.network, vol.info, coarse, vol.storage).mlp_dtype("auto") == torch.bfloat16
    monkeypatch.undo()
    # the measurement: once per device type, thread count and MLP shape, a positive finite ratio on CPU
    assert 0.0 < evaluate.bf16_speedup(vol.network, "cpu") < float("inf")
    assert (torch.device("cpu").type, torch.get_num_threads(),
            tuple(vol.network.config.mlp_shapes())) in evaluate._bf16_speedups


def test_a_bounded_file_decodes_in_float32_and_refuses_bfloat16(headsq):
    original = np.ascontiguousarray(headsq[30:50, 14:46, 12:44])
    vol = nv.compress(original, ratio=30, max_error=40, steps=60, seed=0, record_timings=False)
    assert vol.mlp_dtype("auto", bounded=True) == torch.float32
    auto = vol.decode(compute="auto")
    np.testing.assert_array_equal(auto, vol.decode(compute="float32"))
    assert np.abs(auto.astype(np.int64) - original).max() <= 40
    with pytest.raises(InputError, match="max_error bound holds only for a float32 decode"):
        vol.decode(compute="bfloat16")
    vol.decode(dims=(16, 16, 10), compute="bfloat16")   # off the original grid nothing is bounded


def test_an_unknown_compute_names_the_choices(head_mr_fit):
    with pytest.raises(InputError, match="compute must be one of float32, auto, bfloat16; got 'fp16'"):
        head_mr_fit[0].decode(compute="fp16")


def test_the_command_line_offers_the_same_compute_choices(head_mr_fit, tmp_path, capsys):
    path = tmp_path / "mr.nvc"
    head_mr_fit[0].save(path)
    for compute in evaluate.COMPUTE_CHOICES:
        out = tmp_path / f"{compute}.npy"
        assert main(["decompress", str(path), str(out), "--compute", compute, "-q"]) == 0
        expected = head_mr_fit[0].decode(compute=compute)
        np.testing.assert_array_equal(np.load(out), expected)
    with pytest.raises(SystemExit):
        main(["decompress", str(path), str(tmp_path / "x.npy"), "--compute", "fp16"])
    assert "invalid choice: 'fp16'" in capsys.readouterr().err


def test_grid_decode_into_a_tensor_gives_the_same_values_and_checks_it(head_mr_fit):
    """``into=`` keeps a decode on the device (no host copy on a GPU); wrong buffers are refused."""
    vol = head_mr_fit[0]
    net = vol.network
    axes = [evaluate.unit_axis(n, 0, n - 1) for n in vol.dims]
    expected = evaluate.evaluate_grid(net, *axes)
    into = torch.full(expected.shape, float("nan"))
    assert evaluate.evaluate_grid(net, *axes, into=into) is into
    np.testing.assert_array_equal(into.numpy(), expected)
    for bad in (torch.empty(expected.shape[:2]), torch.empty(expected.shape, dtype=torch.float64)):
        with pytest.raises(InputError, match="into must be a float32 tensor of shape"):
            evaluate.evaluate_grid(net, *axes, into=bad)
