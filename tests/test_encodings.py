"""Every input encoding: container round trip, byte budget, quality floor, grid == points."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import neuralvol as nv
from neuralvol.cli import main
from neuralvol.encodings import (ENCODINGS, FrequencyConfig, FrequencyEncoding, TriangleWaveConfig,
                                 TriangleWaveEncoding, encoding_config_from_dict)
from neuralvol.errors import FormatError

KINDS = ["hashgrid", "frequency", "triangle_wave", "dense_grid", "identity", "hashgrid_quadratic", "hashgrid_cubic"]
RATIO = 10


@pytest.fixture(scope="module")
def crop(head_mr):
    return np.ascontiguousarray(head_mr[10:30, 10:40, 10:40])


@pytest.fixture(scope="module")
def fitted(crop):
    return {k: nv.compress(crop, ratio=RATIO, steps=100, seed=0, encoding=k, record_timings=False) for k in KINDS}


def test_registry_has_every_kind():
    assert sorted(ENCODINGS) == sorted(KINDS)
    for kind, registered in ENCODINGS.items():
        cfg_cls = registered.config
        cfg = cfg_cls()
        assert cfg.kind == kind
        assert encoding_config_from_dict(cfg.to_dict()) == cfg
        assert cfg.n_output_dims > 0 and cfg.n_params >= 0
    with pytest.raises(FormatError):
        encoding_config_from_dict({"type": "nope"})


@pytest.mark.parametrize("kind", KINDS)
def test_round_trip_budget_and_quality(kind, fitted, crop, tmp_path):
    vol = fitted[kind]
    assert vol.config.encoding.kind == kind
    path = tmp_path / f"{kind}.nvc"
    vol.save(path)
    assert path.stat().st_size == vol.nbytes <= crop.nbytes // RATIO
    assert nv.read_header(path)["models"][0]["encoding"]["type"] == kind
    before = vol.decode()
    after = nv.open(path).decode()
    np.testing.assert_array_equal(before, after)
    assert vol.training.psnr > 14.0, (kind, vol.training.psnr)


@pytest.mark.parametrize("kind", KINDS)
def test_grid_decode_equals_point_samples(kind, fitted):
    vol = fitted[kind]
    grid = vol.decode(dtype=np.float32).astype(np.float64)
    rng = np.random.default_rng(0)
    nx, ny, nz = vol.dims
    idx = np.stack([rng.integers(0, n, 300) for n in (nx, ny, nz)], axis=1)
    pts = np.asarray(vol.origin) + idx * np.asarray(vol.spacing)
    vals = vol.sample(pts)
    expected = grid[idx[:, 2], idx[:, 1], idx[:, 0]]
    span = vol.value_range[1] - vol.value_range[0]
    np.testing.assert_allclose(vals, expected, atol=1e-4 * span)


def test_frequency_matches_tiny_cuda_nn_definition():
    cfg = FrequencyConfig(3)
    x = torch.rand(5, 3)
    out = FrequencyEncoding(cfg).encode_feature_major(x)
    assert out.shape == (cfg.n_output_dims, 5)
    for d in range(3):
        for i in range(3):
            arg = (2 ** i) * math.pi * x[:, d]
            torch.testing.assert_close(out[d * 6 + 2 * i], torch.sin(arg), atol=1e-5, rtol=0)
            torch.testing.assert_close(out[d * 6 + 2 * i + 1], torch.cos(arg), atol=1e-5, rtol=0)


def test_triangle_wave_matches_tiny_cuda_nn_definition():
    cfg = TriangleWaveConfig(4)
    x = torch.rand(7, 3)
    out = TriangleWaveEncoding(cfg).encode_feature_major(x)
    assert out.shape == (12, 7)
    for d in range(3):
        for i in range(4):
            v = x[:, d] * 2.0 ** (i - 1) + 0.25 * i
            torch.testing.assert_close(out[d * 4 + i], (v - torch.floor(v) - 0.5).abs() * 4 - 1)
    assert out.min() >= -1 and out.max() <= 1


def test_cli_compress_with_encoding(crop, tmp_path, capsys):
    src = tmp_path / "crop.npy"
    np.save(src, crop)
    out = tmp_path / "f.nvc"
    assert main(["compress", str(src), str(out), "--ratio", "10", "--steps", "20", "--encoding", "triangle_wave",
                 "-q"]) == 0
    assert main(["info", str(out)]) == 0
    assert "triangle_wave frequencies=12" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        main(["compress", str(src), str(out), "--steps", "5", "--encoding", "bogus"])
    assert exc.value.code == 2


@pytest.mark.parametrize("kind", KINDS)
def test_fast_grid_decode_equals_per_voxel_reference(kind, fitted):
    # Hash and dense grids take the separable path, the others fall back; both must give
    # the per-voxel gather's values on a resampled sub-extent.
    from neuralvol.evaluate import evaluate_grid, evaluate_grid_per_voxel, unit_axis
    axes = [unit_axis(n, a, b) for n, a, b in ((37, 3, 30), (29, 0, 28), (23, 5, 11))]
    net = fitted[kind].network
    fast = evaluate_grid(net, *axes)
    assert fast.shape == (7, 29, 28)
    assert np.allclose(fast, evaluate_grid_per_voxel(net, *axes), atol=1e-5)


def test_auto_is_the_quadratic_hash_grid_under_a_time_budget_and_trilinear_with_steps(crop, tmp_path, capsys):
    src = tmp_path / "crop.npy"
    np.save(src, crop)
    timed, stepped = tmp_path / "timed.nvc", tmp_path / "stepped.nvc"
    # 9000 bytes: over CURVE_MIN_BUDGET, so no small-file trial (which also tries the trilinear plan)
    assert main(["compress", str(src), str(timed), "--size", "9000", "--time-budget", "2", "-q"]) == 0
    assert main(["compress", str(src), str(stepped), "--size", "9000", "--steps", "20", "-q"]) == 0
    assert nv.read_header(timed)["models"][0]["encoding"]["type"] == "hashgrid_quadratic"
    assert nv.read_header(stepped)["models"][0]["encoding"]["type"] == "hashgrid"
    assert main(["info", str(timed)]) == 0
    assert "hashgrid_quadratic L=" in capsys.readouterr().out
    # the file is self-describing: the B-spline levels decode on their own, to the fitted values
    vol = nv.open(timed)
    assert vol.config.encoding.interpolation == "quadratic" and vol.training.psnr > 14.0
    assert nv.compress(crop, size=9000, time_budget=1.0, encoding="hashgrid", seed=0).config.encoding.kind == "hashgrid"


@pytest.mark.parametrize("n_params, linear_levels, bspline_levels",
                         [(250_000, 16, 16), (40_000, 16, 8), (10_000, 12, 8), (3_000, 8, 8)])
def test_bspline_plans_spend_the_same_parameters_on_fewer_larger_levels(n_params, linear_levels, bspline_levels):
    # see BSPLINE_MAX_LEVELS: below 100k parameters 8 levels measured up to +0.9 dB
    from neuralvol.architecture import choose_architecture
    dims = (128, 96, 114)
    linear = choose_architecture(dims, n_params)
    assert linear.encoding.n_levels == linear_levels
    for interpolation in ("quadratic", "cubic"):
        bspline = choose_architecture(dims, n_params, interpolation)
        assert bspline.encoding.interpolation == interpolation
        assert bspline.encoding.n_levels == bspline_levels and bspline.n_params <= n_params
        assert (bspline.mlp_width, bspline.encoding.finest_resolution) == (linear.mlp_width,
                                                                             linear.encoding.finest_resolution)
        if bspline_levels < linear_levels:
            assert bspline.encoding.table_size > linear.encoding.table_size
