"""The hash grid reproduces tiny-cuda-nn's maths; checked against hand-computed cases."""
import math

import numpy as np
import pytest
import torch

from neuralvol.encodings import CubicHashGridConfig, HashGridConfig, HashGridEncoding, QuadraticHashGridConfig
from neuralvol.encodings.hashgrid import HASHGRID_CONFIGS, PRIMES


def test_level_scales_and_resolutions_follow_tcnn():
    cfg = HashGridConfig(n_levels=4, n_features=2, table_size=64, base_resolution=2, finest_resolution=16)
    b = math.exp(math.log(16 / 2) / 3)  # per-level scale: 2
    assert b == pytest.approx(2.0)
    # scale_l = 2^(l log2 b) * N0 - 1 ; res_l = ceil(scale_l) + 1
    assert np.allclose(cfg.level_scales(), [1.0, 3.0, 7.0, 15.0])
    assert cfg.level_resolutions() == [2, 4, 8, 16]
    # min(res^3, T) rounded up to a multiple of 8; dense while res^3 fits
    assert cfg.level_sizes() == [8, 64, 64, 64]
    assert cfg.level_is_dense() == [True, True, False, False]
    assert cfg.level_offsets() == [0, 8, 72, 136, 200]
    assert cfg.n_params == 400


def _encoding(cfg):
    enc = HashGridEncoding(cfg)
    with torch.no_grad():
        enc.table.copy_(torch.arange(enc.table.numel(), dtype=torch.float32).view_as(enc.table))
    return enc


def test_dense_level_indices_and_weights_by_hand():
    # One dense level: N0 = 4 -> scale 3, res 4, 64 entries.
    cfg = HashGridConfig(n_levels=1, n_features=1, table_size=1024, base_resolution=4, finest_resolution=4)
    enc = _encoding(cfg)
    x = torch.tensor([[0.25, 0.5, 0.0]])
    # pos = x*3 + 0.5 = (1.25, 2.0, 0.5): cell (1, 2, 0), fractions (0.25, 0.0, 0.5)
    index, weight = enc.corner_indices_weights((x[:, 0], x[:, 1], x[:, 2]), (1,))
    expected_idx = []
    expected_w = []
    for c in range(8):
        cx, cy, cz = 1 + (c & 1), 2 + ((c >> 1) & 1), 0 + ((c >> 2) & 1)
        expected_idx.append((cx + 4 * cy + 16 * cz) % 64)
        wx = 0.25 if c & 1 else 0.75
        wy = 0.0 if (c >> 1) & 1 else 1.0
        wz = 0.5 if (c >> 2) & 1 else 0.5
        expected_w.append(wx * wy * wz)
    assert index[0, :, 0].tolist() == expected_idx
    assert weight[0, :, 0].tolist() == pytest.approx(expected_w)
    # With table[i] = i the encoding is the trilinear interpolation of the indices.
    assert enc(x).item() == pytest.approx(sum(i * w for i, w in zip(expected_idx, expected_w)))


@pytest.mark.parametrize("config, shift", [(QuadraticHashGridConfig, 0.0), (CubicHashGridConfig, 1.0)],
                         ids=["quadratic", "cubic"])
def test_bspline_levels_reproduce_linear_functions_with_every_tap_inside_the_lattice(config, shift):
    # Uniform B-splines of any degree have linear precision: with each dense entry holding its
    # own lattice x (or y, z) coordinate, the blend at pos = x * scale + 0.5 is pos itself,
    # plus the lattice's shift (cubic taps start one point below the cell, so its lattice
    # starts one lower). A tap wrapped by the modulo (a lattice too small for the taps, at
    # the cube's faces) would break it, so the faces and corners are among the points.
    cfg = config(n_levels=1, n_features=3, table_size=4096, base_resolution=5, finest_resolution=5)
    res = cfg.level_resolutions()[0]
    assert cfg.level_is_dense() == [True] and res == 4 + cfg.interpolator.taps  # ceil(scale 4) + taps
    enc = HashGridEncoding(cfg)
    i = torch.arange(cfg.n_entries)
    with torch.no_grad():  # feature a holds coordinate a of entry i = x + res * y + res^2 * z
        enc.table.copy_(torch.stack([i % res, (i // res) % res, i // (res * res)]).float())
    pts = torch.rand(500, 3, generator=torch.Generator().manual_seed(0))
    pts[:4] = torch.tensor([[0, 0, 0], [1, 1, 1], [0, 1, 0.5], [1, 0, 0.999]])
    torch.testing.assert_close(enc.encode_feature_major(pts).t(), pts * 4.0 + 0.5 + shift, rtol=0, atol=2e-5)
    torch.testing.assert_close(enc.encode_feature_major_pytorch(pts).t(), pts * 4.0 + 0.5 + shift, rtol=0,
                               atol=2e-5)
    _, weight = enc.corner_indices_weights(tuple(pts.t()), (500,), coords_t=pts.t().contiguous())
    assert weight.shape == (1, cfg.interpolator.taps ** 3, 500) and bool((weight >= 0).all())
    torch.testing.assert_close(weight.sum(dim=1), torch.ones(1, 500), rtol=0, atol=1e-6)  # partition of unity


def test_hashed_level_uses_coherent_prime_xor_hash():
    # Level 1 of this config: scale 15, res 16, 16^3 > 64 -> hashed into 64 entries.
    cfg = HashGridConfig(n_levels=2, n_features=1, table_size=64, base_resolution=2, finest_resolution=16)
    assert cfg.level_is_dense() == [True, False]
    enc = _encoding(cfg)
    x = torch.tensor([[0.3, 0.7, 0.9]])
    index, weight = enc.corner_indices_weights((x[:, 0], x[:, 1], x[:, 2]), (1,))
    pos = x[0].numpy().astype(np.float32) * np.float32(15.0) + np.float32(0.5)
    cell = np.floor(pos).astype(np.int64)
    frac = pos - np.floor(pos)
    for c in range(8):
        corner = [cell[d] + ((c >> d) & 1) for d in range(3)]
        h = 0
        for d in range(3):
            h ^= (corner[d] * PRIMES[d]) & 0xFFFFFFFF
        assert index[1, c, 0].item() == 8 + h % 64  # offset of level 1 is 8
        w = np.prod([frac[d] if (c >> d) & 1 else 1 - frac[d] for d in range(3)])
        assert weight[1, c, 0].item() == pytest.approx(w, rel=1e-6)


def test_table_init_is_small_uniform_and_seeded():
    cfg = HashGridConfig(n_levels=4, n_features=2, table_size=256, base_resolution=4, finest_resolution=32)
    a = HashGridEncoding(cfg, generator=torch.Generator().manual_seed(1)).table
    b = HashGridEncoding(cfg, generator=torch.Generator().manual_seed(1)).table
    assert torch.equal(a, b)
    assert a.abs().max() <= 1e-4 and a.abs().max() > 5e-5


def test_grid_path_equals_scattered_points():
    cfg = HashGridConfig(n_levels=6, n_features=2, table_size=512, base_resolution=4, finest_resolution=40)
    enc = HashGridEncoding(cfg, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        enc.table.normal_()
    ux, uy, uz = (torch.linspace(0, 1, n) for n in (5, 4, 3))
    index, weight = enc.corner_indices_weights((ux[None, None, :], uy[None, :, None], uz[:, None, None]), (3, 4, 5))
    grid = enc.features_from_corners(index.reshape(6, 8, -1), weight.reshape(6, 8, -1))
    z, y, x = torch.meshgrid(uz, uy, ux, indexing="ij")
    points = torch.stack([x.reshape(-1), y.reshape(-1), z.reshape(-1)], dim=1)
    assert torch.allclose(grid, enc.encode_feature_major(points), atol=1e-6)
    # the public layout is level-major, as tiny-cuda-nn's: column l * F + f
    level_major = enc(points)
    assert torch.allclose(level_major[:, 1 * 2 + 0], grid[0 * 6 + 1], atol=1e-6)


def test_gather_backward_accumulates_into_the_table():
    cfg = HashGridConfig(n_levels=2, n_features=2, table_size=64, base_resolution=2, finest_resolution=8)
    enc = HashGridEncoding(cfg, generator=torch.Generator().manual_seed(0))
    x = torch.rand(100, 3, generator=torch.Generator().manual_seed(1))
    enc(x).sum().backward()
    fast = enc.table.grad.clone()
    # Reference: plain autograd through advanced indexing.
    table = enc.table.detach().clone().requires_grad_(True)
    index, weight = enc.corner_indices_weights((x[:, 0], x[:, 1], x[:, 2]), (100,))
    feats = table[:, index.reshape(-1)].reshape(2, 2, 8, 100)
    (feats * weight.unsqueeze(0)).sum().backward()
    assert torch.allclose(fast, table.grad, atol=1e-5)


def _grid_inputs(nx, ny, nz, start=(0, 0, 0), stop=None, dims=None):
    """Per-axis unit coordinates of an index box of a (possibly resampled) grid."""
    from neuralvol.evaluate import unit_axis
    dims = dims or (nx, ny, nz)
    stop = stop or tuple(s + n - 1 for s, n in zip(start, (nx, ny, nz)))
    return [torch.as_tensor(unit_axis(d, a, b), dtype=torch.float32) for d, a, b in zip(dims, start, stop)]


@pytest.mark.parametrize("dims, start, grid_dims", [
    ((13, 7, 9), (0, 0, 0), None),            # whole grid, odd sizes
    ((5, 11, 6), (3, 2, 17), (23, 19, 31)),   # sub-extent of a grid
    ((17, 9, 12), (0, 0, 0), (17, 9, 12)),    # resolution unrelated to any level's lattice
    ((1, 6, 4), (2, 0, 1), (5, 6, 8)),         # a single x column
])
@pytest.mark.parametrize("use_kernel", [True, False], ids=["kernel", "pytorch"])
@pytest.mark.parametrize("interpolation", list(HASHGRID_CONFIGS))
def test_separable_grid_equals_per_voxel_gather(dims, start, grid_dims, use_kernel, interpolation):
    # Levels 0-1 dense (0 only for the B-splines' padded lattices), the rest hashed (with
    # wrap-around into 512 entries). The level kernel is trilinear; other blends take PyTorch ops.
    cfg = HASHGRID_CONFIGS[interpolation](n_levels=6, n_features=2, table_size=512, base_resolution=4,
                                          finest_resolution=40)
    assert cfg.level_is_dense() == [True, interpolation == "linear", False, False, False, False]
    enc = HashGridEncoding(cfg, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        enc.table.normal_()
    nx, ny, nz = dims
    ux, uy, uz = _grid_inputs(nx, ny, nz, start, dims=grid_dims)
    reference = enc.encode_grid((ux[None, None, :], uy[None, :, None], uz[:, None, None]), (nz, ny, nx))
    grid = enc.separable_grid(ux, uy, uz)
    grid.use_kernel = use_kernel  # the C++ level kernel where it built, else the same ops in PyTorch
    assert torch.allclose(grid.features(0, nz), reference, atol=2e-6)
    # Slabs of planes give the same values as the whole grid at once.
    slabs = [grid.features(z0, min(nz, z0 + 2)).view(12, -1, ny * nx) for z0 in range(0, nz, 2)]
    assert torch.allclose(torch.cat(slabs, dim=1).reshape(12, -1), reference, atol=2e-6)


def test_separable_grid_touches_only_the_lattice_points_a_coarse_output_needs():
    # A level of resolution 25000 decoded at 4^3 (a hostile header once asked for 660 GB
    # here): only the cells touched and their successors are gathered, same values.
    cfg = HashGridConfig(n_levels=6, n_features=2, table_size=152, base_resolution=4, finest_resolution=25000)
    enc = HashGridEncoding(cfg, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        enc.table.normal_()
    ux, uy, uz = _grid_inputs(4, 4, 4)
    reference = enc.encode_grid((ux[None, None, :], uy[None, :, None], uz[:, None, None]), (4, 4, 4))
    grid = enc.separable_grid(ux, uy, uz)
    grid.use_kernel = False
    terms, rel = grid._lattice_terms(cfg.n_levels - 1, grid.levels[-1][0][0], 0)
    assert terms.numel() <= 8 and rel.tolist() == [0, 2, 4, 6]
    assert torch.allclose(grid.features(0, 4), reference, atol=2e-6)


@pytest.mark.skipif(__import__("neuralvol.kernels.build", fromlist=["x"]).library() is None,
                    reason="C++ kernel unavailable")
@pytest.mark.parametrize("interpolation", list(HASHGRID_CONFIGS))
def test_separable_grid_kernel_equals_its_pytorch_ops_on_a_real_model_and_every_thread_count(interpolation):
    # B-splines: the kernel's y blends on lattice planes, then z blends, split over rows by
    # threads; the bits must not depend on the thread count
    cfg = HASHGRID_CONFIGS[interpolation](n_levels=16, n_features=2, table_size=2952, base_resolution=8,
                                          finest_resolution=88)
    enc = HashGridEncoding(cfg, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        enc.table.normal_()
    ux, uy, uz = _grid_inputs(37, 30, 21, (2, 5, 1), dims=(45, 40, 30))
    grid = enc.separable_grid(ux, uy, uz)
    grid.use_kernel = False
    reference = grid.features(0, 21)
    grid.use_kernel = True
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(grid.features(0, 21))
    finally:
        torch.set_num_threads(before)
    torch.testing.assert_close(results[0], reference, rtol=0, atol=1e-6)
    assert all(torch.equal(r, results[0]) for r in results[1:])
