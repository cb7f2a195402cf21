"""The Triton hash-grid kernels against the PyTorch reference.

Where Triton is installed they run compiled on CUDA tensors when torch sees a GPU, and
otherwise in Triton's CPU interpreter (how CI, which has no GPU, checks the kernels' maths;
setup.cfg's test extra installs Triton on Linux x86-64). Without Triton the module skips.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from neuralvol.encodings.hashgrid import HashGridConfig, HashGridEncoding
from neuralvol.kernels import hashgrid_triton

pytestmark = pytest.mark.skipif(not hashgrid_triton.available(), reason="Triton is not installed")

# The interpreter checks the kernels where no GPU can (its behaviour follows Triton's
# version: 3.9's runs them, 3.6's failed on scalar loads); with a GPU the compiled ones run.
MODES = ["cuda"] if torch.cuda.is_available() else ["interpret"]

# dense coarse levels (res^3 <= 512) and hashed fine ones; F=2 as the codec writes, F=3
# (padded to 4 inside the kernel) and F=1 to cover the feature mask
CONFIGS = [HashGridConfig(6, 2, 2 ** 9, 4, 40), HashGridConfig(4, 3, 2 ** 8, 3, 17),
           HashGridConfig(3, 1, 2 ** 10, 5, 64)]


def _device(mode: str) -> torch.device:
    return torch.device("cuda" if mode == "cuda" else "cpu")


def _encoding(config: HashGridConfig, device, seed: int = 0) -> HashGridEncoding:
    enc = HashGridEncoding(config, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():  # table values of a fitted model's size, not the 1e-4 init
        enc.table.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(seed + 1))
    return enc.to(device)


def _points(n: int, device, seed: int = 3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand((n, 3), generator=g)
    pts[:8] = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 0.5], [0, 1, 1],
                            [-0.03, 0.5, 1.02], [1.04, -0.01, 0.2], [0.5, 0.5, 0.5], [0.25, 0.75, 0.125]])
    return pts.to(device)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"L{c.n_levels}F{c.n_features}")
def test_forward_points_match_pytorch(mode, config):
    device = _device(mode)
    enc = _encoding(config, device)
    pts = _points(1000, device)
    with torch.no_grad():
        ref = enc.encode_feature_major_pytorch(pts)
        got = hashgrid_triton.forward_points(enc.kernel_levels(device), pts, enc.table, interpret=mode != "cuda")
    assert got.shape == ref.shape == (config.n_features * config.n_levels, 1000)
    # points outside [0, 1] (the probe filter's) wrap like the reference: dense levels modulo
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=5e-6)


@pytest.mark.parametrize("mode", MODES)
def test_forward_grid_matches_per_voxel(mode):
    """Odd sizes, a sub-extent of planes (z0 > 0) and axes not spanning [0, 1] (scale != 1)."""
    device = _device(mode)
    config = CONFIGS[0]
    enc = _encoding(config, device)
    ux = torch.linspace(0.1, 0.9, 13, device=device)
    uy = torch.linspace(0.0, 1.0, 7, device=device)
    uz = torch.linspace(0.2, 1.0, 9, device=device)
    z0, z1 = 3, 8
    k = (z1 - z0) * 7 * 13
    out = torch.full((config.n_output_dims, k), float("nan"), device=device)
    with torch.no_grad():
        hashgrid_triton.forward_grid_into(enc.kernel_levels(device), enc.table, (ux, uy, uz), z0, z1, out,
                                          interpret=mode != "cuda")
        ref = enc.encode_grid((ux[None, None, :], uy[None, :, None], uz[z0:z1, None, None]), (z1 - z0, 7, 13))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=5e-6)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("config", CONFIGS[:2], ids=lambda c: f"L{c.n_levels}F{c.n_features}")
def test_backward_matches_autograd_and_is_deterministic(mode, config):
    device = _device(mode)
    enc = _encoding(config, device)
    pts = _points(700, device, seed=5)
    grad_out = torch.randn((config.n_output_dims, 700), generator=torch.Generator().manual_seed(7)).to(device)
    enc.encode_feature_major_pytorch(pts).backward(grad_out)
    ref = enc.table.grad.clone()
    levels = enc.kernel_levels(device)
    interpret = mode != "cuda"
    got = hashgrid_triton.backward_points(levels, pts, grad_out, interpret=interpret)
    # fixed-point accumulation: exact sums of contributions rounded to 2^-39 of max |g|
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)
    again = hashgrid_triton.backward_points(levels, pts, grad_out, interpret=interpret)
    assert torch.equal(got, again)
    zeros = hashgrid_triton.backward_points(levels, pts, torch.zeros_like(grad_out), interpret=interpret)
    assert not zeros.any()


@pytest.mark.parametrize("mode", MODES)
def test_autograd_function_trains_like_pytorch(mode):
    """encode_points through autograd: same loss and same table gradient as the reference."""
    device = _device(mode)
    enc = _encoding(CONFIGS[0], device)
    pts = _points(512, device, seed=11)
    target = torch.linspace(-1, 1, 512, device=device)
    feats = hashgrid_triton.encode_points(enc, pts, interpret=mode != "cuda")
    loss = ((feats.sum(0) - target) ** 2).mean()
    loss.backward()
    got_loss, got_grad = float(loss.detach()), enc.table.grad.clone()
    enc.table.grad = None
    ref_loss = ((enc.encode_feature_major_pytorch(pts).sum(0) - target) ** 2).mean()
    ref_loss.backward()
    assert got_loss == pytest.approx(float(ref_loss.detach()), rel=1e-6)
    torch.testing.assert_close(got_grad, enc.table.grad, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA GPU")
def test_cuda_fit_is_deterministic_and_decodes_as_on_cpu(headsq_crop, tmp_path):
    """A file fitted on CUDA (Triton encode + fixed-point backward): a fixed seed gives the
    same bytes twice, and it decodes and samples on CUDA as on CPU."""
    import neuralvol as nv

    paths = []
    for i in range(2):
        paths.append(tmp_path / f"fit{i}.nvc")
        nv.compress(headsq_crop, ratio=20, steps=80, seed=4, device="cuda", record_timings=False).save(paths[-1])
    assert paths[0].read_bytes() == paths[1].read_bytes()
    model = nv.open(paths[0])
    on_cpu = model.decode(dtype=np.float32, device="cpu")
    on_gpu = model.decode(dtype=np.float32, device="cuda")
    span = float(np.ptp(on_cpu))
    np.testing.assert_allclose(on_gpu.astype(np.float64), on_cpu, rtol=0, atol=1e-4 * span)
    pts = np.random.default_rng(0).random((5000, 3)) * (np.array(model.dims) - 1)
    np.testing.assert_allclose(model.sample(pts, device="cuda"), model.sample(pts, device="cpu"),
                               rtol=0, atol=1e-4 * span)
