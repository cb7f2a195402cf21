"""The C++ hash-grid kernel against the pure-PyTorch path it replaces on CPU.

Both paths are always exercised: the PyTorch one directly
(``encode_feature_major_pytorch``, and whole fits with ``NEURALVOL_KERNELS=0`` in a
subprocess), the kernel wherever a C++ compiler exists (CI installs one).
"""
import contextlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from neuralvol.encodings import CubicHashGridConfig, HashGridConfig, HashGridEncoding, QuadraticHashGridConfig
from neuralvol.kernels import build

HEADSQ = Path(__file__).resolve().parents[1] / "data" / "headsq_quarter.npy"
needs_kernel = pytest.mark.skipif(build.library() is None, reason=f"kernel unavailable: {build.status()}")

CONFIGS = [
    # dense and hashed levels, table sizes that are not powers of two, one feature and four
    HashGridConfig(n_levels=16, n_features=2, table_size=2952, base_resolution=8, finest_resolution=88),
    HashGridConfig(n_levels=6, n_features=1, table_size=96, base_resolution=4, finest_resolution=22),
    HashGridConfig(n_levels=4, n_features=4, table_size=1 << 12, base_resolution=3, finest_resolution=200),
    # the B-spline levels: 27 and 64 lattice points a level, dense lattices padded for the taps
    QuadraticHashGridConfig(n_levels=6, n_features=2, table_size=600, base_resolution=4, finest_resolution=40),
    CubicHashGridConfig(n_levels=5, n_features=1, table_size=1000, base_resolution=3, finest_resolution=30),
]
CONFIG_IDS = ["L16F2", "L6F1", "L4F4", "quadratic", "cubic"]


def _encoding(cfg, seed=0):
    enc = HashGridEncoding(cfg, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        enc.table.uniform_(-1.0, 1.0, generator=torch.Generator().manual_seed(seed + 1))
    return enc


def _points(n=3000, seed=0):
    pts = torch.rand(n, 3, generator=torch.Generator().manual_seed(seed))
    # the cube's corners and faces, where a cell index reaches res and wraps by the modulo
    pts[:8] = torch.tensor([[0, 0, 0], [1, 1, 1], [1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0.5, 1, 0.5]],
                           dtype=torch.float32)
    return pts


@needs_kernel
@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_kernel_forward_and_backward_equal_pytorch(cfg):
    enc, pts = _encoding(cfg), _points()
    fast, ref = enc.encode_feature_major(pts), enc.encode_feature_major_pytorch(pts)
    assert fast.shape == ref.shape == (cfg.n_features * cfg.n_levels, pts.shape[0])
    # only the order of the corner products in the sum differs
    torch.testing.assert_close(fast, ref, rtol=0, atol=4e-7 * cfg.interpolator.taps ** 3 / 8)
    grad_out = torch.randn(ref.shape, generator=torch.Generator().manual_seed(5))
    grads = []
    for encode in (enc.encode_feature_major, enc.encode_feature_major_pytorch):
        enc.table.grad = None
        (encode(pts) * grad_out).sum().backward()
        grads.append(enc.table.grad.clone())
    scale = grads[1].abs().max().item()
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=2e-6 * scale * cfg.interpolator.taps ** 3 / 8)
    assert grads[0].abs().sum() > 0


@needs_kernel
def test_kernel_gives_the_same_bits_on_every_thread_count():
    enc, pts = _encoding(CONFIGS[0]), _points(5000, seed=3)
    grad_out = torch.randn(32, 5000, generator=torch.Generator().manual_seed(9))
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2, 5):
            torch.set_num_threads(threads)
            enc.table.grad = None
            out = enc.encode_feature_major(pts)
            (out * grad_out).sum().backward()
            results.append((out.detach().clone(), enc.table.grad.clone()))
    finally:
        torch.set_num_threads(before)
    for out, grad in results[1:]:
        assert torch.equal(out, results[0][0]) and torch.equal(grad, results[0][1])


@needs_kernel
def test_kernel_zeroes_features_of_non_finite_points_and_handles_points_outside_the_cube():
    enc = _encoding(CONFIGS[1])
    pts = torch.tensor([[float("nan"), 0.5, 0.5], [0.5, float("inf"), 0.5], [-0.4, 1.7, 0.2], [2.5, -3.0, 1.0]])
    out = enc.encode_feature_major(pts)
    assert torch.all(out[:, :2] == 0)
    # outside the unit cube a dense level's index is negative and takes the floor modulo
    torch.testing.assert_close(out[:, 2:], enc.encode_feature_major_pytorch(pts[2:]), rtol=0, atol=4e-7)


@needs_kernel
@pytest.mark.parametrize("cfg", CONFIGS, ids=CONFIG_IDS)
def test_kernel_vector_blocks_give_the_scalar_bits(cfg):
    """The AVX-512 path (16 points a block) against the scalar one, forward and backward bit
    for bit: blocks of points in the cube, blocks holding one point outside it or a NaN (the
    block falls back to the scalar path), a tail shorter than a block, 1 and 3 threads."""
    lib = build.library()
    if lib.nv_points_vector(-1) != 1:
        pytest.skip("no AVX-512 on this CPU: the scalar path is the only one")
    enc = _encoding(cfg, seed=2)
    pts = _points(16 * 40 + 11, seed=4)
    pts[16 * 3 + 5] = torch.tensor([1.3, 0.5, -0.2])           # outside: its block goes scalar
    pts[16 * 7 + 15, 1] = float("nan")
    pts[16 * 9:16 * 10] = torch.rand(16, 3, generator=torch.Generator().manual_seed(1)) * 3 - 1
    grad_out = torch.randn(cfg.n_features * cfg.n_levels, pts.shape[0], generator=torch.Generator().manual_seed(6))
    before = torch.get_num_threads()
    results = {}
    try:
        for vector in (1, 0):
            assert lib.nv_points_vector(vector) == vector
            for threads in (1, 3):
                torch.set_num_threads(threads)
                enc.table.grad = None
                out = enc.encode_feature_major(pts)
                (out * grad_out).sum().backward()
                results[vector, threads] = (out.detach().clone(), enc.table.grad.clone())
    finally:
        lib.nv_points_vector(1)
        torch.set_num_threads(before)
    reference = results[0, 1]
    for out, grad in results.values():
        assert torch.equal(out.view(torch.int32), reference[0].view(torch.int32))
        assert torch.equal(grad.view(torch.int32), reference[1].view(torch.int32))
    assert torch.all(reference[0][:, 16 * 7 + 15] == 0) and reference[1].abs().sum() > 0


def _run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **env})


FIT = """
import numpy as np, neuralvol as nv
from neuralvol.kernels import build
data = np.load({path!r})[:24, :32, :32].astype(np.float32)
vol = nv.compress(data, ratio=20, steps=60, seed=3, record_timings=False)
print(build.status()); print(vol.training.psnr)
"""


def test_fit_falls_back_to_pytorch_when_kernels_are_switched_off():
    done = _run(FIT.format(path=str(HEADSQ)), NEURALVOL_KERNELS="0")
    assert done.returncode == 0, done.stderr
    status, psnr = done.stdout.strip().splitlines()[-2:]
    assert status == "pure PyTorch (disabled by NEURALVOL_KERNELS=0)"
    if build.library() is not None:  # the same fit through the kernel: same quality
        fast = _run(FIT.format(path=str(HEADSQ)))
        assert fast.returncode == 0, fast.stderr
        fast_status, fast_psnr = fast.stdout.strip().splitlines()[-2:]
        assert fast_status.startswith("C++ kernel")
        assert abs(float(fast_psnr) - float(psnr)) < 0.2
        assert float(psnr) > 20


@needs_kernel
def test_library_is_compiled_into_the_cache_atomically_and_outside_the_time_budget(tmp_path):
    """A first compress on a machine (an empty cache) builds the library before its clock
    starts, so its fit spends the budget fitting: built inside it (5.5 s here), the fit of a
    2 s budget would stop after its first step. The floor is low on purpose: this machine fits
    ~190 steps in the 2 s, the CI machine 38 (a floor of 40 failed there)."""
    code = ("import numpy as np, neuralvol as nv\nfrom neuralvol.kernels import build\n"
            f"data = np.load({str(HEADSQ)!r})[:16, :32, :32].astype(np.float32)\n"
            "vol = nv.compress(data, ratio=20, time_budget=2, seed=0)\n"
            "print(build.status())\nprint(vol.training.steps)")
    done = _run(code, NEURALVOL_KERNEL_CACHE=str(tmp_path))
    assert done.returncode == 0, done.stderr
    status, steps = done.stdout.strip().splitlines()[-2:]
    assert status.startswith("C++ kernel") and int(steps) >= 10, done.stdout
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 1 and files[0].startswith("kernels_cpu-") and files[0].endswith(".so")


def test_missing_compiler_is_reported_not_raised(tmp_path):
    done = _run("from neuralvol.kernels import build; print(build.status())",
                NEURALVOL_KERNEL_CACHE=str(tmp_path), CXX="", PATH=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "pure PyTorch (no C++ compiler found (set CXX, or install g++))"
    assert not list(tmp_path.iterdir())


THREADS_CODE = """
import sys, numpy as np, torch
from neuralvol.kernels import build
if sys.argv[1] == "std":
    build.OPENMP_FLAGS = ()   # the fallback build: std::thread instead of torch's OpenMP pool
torch.set_num_threads(2)
from neuralvol.encodings import HashGridConfig, HashGridEncoding
enc = HashGridEncoding(HashGridConfig(6, 2, 512, 4, 40), generator=torch.Generator().manual_seed(0))
with torch.no_grad():
    enc.table.normal_(generator=torch.Generator().manual_seed(1))
pts = torch.rand((3000, 3), generator=torch.Generator().manual_seed(2))
feats = enc.encode_feature_major(pts)
feats.backward(torch.randn(feats.shape, generator=torch.Generator().manual_seed(3)))
u = torch.linspace(0, 1, 19)
grid = enc.separable_grid(u, u[:11], u[:7]).features(0, 7)
np.savez(sys.argv[2], feats=feats.detach().numpy(), grad=enc.table.grad.numpy(), grid=grid.numpy())
maps = open("/proc/self/maps").read() if sys.platform == "linux" else ""
print(build.status(), sorted({line.split()[-1] for line in maps.splitlines() if "libgomp" in line}))
"""


@needs_kernel
def test_openmp_and_std_thread_builds_give_the_same_bits_on_one_openmp_runtime(tmp_path):
    """The kernels run on torch's OpenMP pool where -fopenmp builds (no second libgomp in the
    process); the std::thread fallback build gives the same bits."""
    results = {}
    for kind in ("omp", "std"):
        done = subprocess.run([sys.executable, "-c", THREADS_CODE, kind, str(tmp_path / f"{kind}.npz")],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "NEURALVOL_KERNEL_CACHE": str(tmp_path / kind)})
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("C++ kernel"), done.stdout
        results[kind] = (np.load(tmp_path / f"{kind}.npz"), done.stdout)
    for name in ("feats", "grad", "grid"):
        np.testing.assert_array_equal(results["omp"][0][name], results["std"][0][name])
    omp_lib, std_lib = (next((tmp_path / kind).glob("kernels_cpu-*.so")).read_bytes() for kind in ("omp", "std"))
    assert b"GOMP_parallel" in omp_lib and b"GOMP_parallel" not in std_lib
    if sys.platform == "linux":
        loaded = results["omp"][1].split("[", 1)[1]
        assert loaded.count("libgomp") == 1, loaded   # torch's own copy, not a second runtime


# --- the decoder's MLP kernel (mlp_cpu.cpp) -------------------------------------------------

from neuralvol.kernels import mlp as mlp_kernel  # noqa: E402

_probe = torch.zeros((1, 1))
needs_mlp_fp32 = pytest.mark.skipif(not mlp_kernel.usable(_probe, torch.float32),
                                    reason=f"MLP kernel unavailable: {build.status()}")
needs_mlp_bf16 = pytest.mark.skipif(not mlp_kernel.usable(_probe, torch.bfloat16),
                                    reason=f"bf16 MLP kernel unavailable: {build.status()}")


def _reference_mlp(weights, bias, feats, bf16):
    """float64 ReLU MLP; with ``bf16`` the hidden layers' inputs and weights rounded to bf16
    first, as the kernel does (it accumulates in fp32 and runs the output layer in fp32)."""
    h = feats.t().double()
    for w in weights[:-1]:
        if bf16:
            h, w = h.to(torch.bfloat16).double(), w.to(torch.bfloat16)
        h = torch.relu(h @ w.double().t())
    return h @ weights[-1].double().t() + bias.double()


# (input features, hidden widths, outputs, batch): the 100:1 and 800:1 shapes, widths and
# inputs that are not multiples of the kernel's 8-neuron blocks or of bf16 pairs, several
# outputs, a linear model, batches with a partial 32-voxel tile and below one tile.
MLP_SHAPES = [(32, (64, 64), 1, 4099), (32, (32, 32), 1, 64), (33, (17,), 1, 5), (24, (20, 20, 20), 3, 77),
              (7, (8, 8), 4, 31), (16, (), 1, 50)]


# bf16 runs on AMX tiles where the CPU has them, else on AVX512-BF16; "bf16-avx512" asks
# for the latter everywhere (the same path as "bf16" on a CPU without AMX)
@pytest.mark.parametrize("arithmetic", ["fp32", "bf16", "bf16-avx512"])
@pytest.mark.parametrize("shape", MLP_SHAPES, ids=lambda s: f"{s[0]}-{'x'.join(map(str, s[1])) or 'linear'}-{s[2]}-{s[3]}")
def test_mlp_kernel_equals_the_float64_network(shape, arithmetic):
    bf16 = arithmetic != "fp32"
    if not mlp_kernel.usable(_probe, torch.bfloat16 if bf16 else torch.float32):
        pytest.skip(f"MLP kernel unavailable here: {build.status()}")
    n_in, hidden, n_out, k = shape
    g = torch.Generator().manual_seed(k)
    dims = (n_in, *hidden, n_out)
    weights = [torch.randn(dims[i + 1], dims[i], generator=g) / dims[i] ** 0.5 for i in range(len(dims) - 1)]
    bias = torch.randn(n_out, generator=g)
    # a column slice of a wider feature-major buffer: rows k + 13 apart, as a slab's chunk
    feats = torch.randn(n_in, k + 13, generator=g)[:, 5:5 + k]
    with mlp_kernel.without_amx() if arithmetic == "bf16-avx512" else contextlib.nullcontext():
        out = mlp_kernel.forward(weights, bias, feats, torch.bfloat16 if bf16 else torch.float32)
    ref = _reference_mlp(weights, bias, feats, bf16)
    assert out.shape == (k, n_out) and out.dtype == torch.float32
    # fp32: sums in another order; bf16: an fp32 activation on a rounding boundary may round
    # the other way into the next layer
    scale = ref.abs().max().item()
    torch.testing.assert_close(out.double(), ref, rtol=0, atol=(3e-4 if bf16 else 2e-6) * scale)


@needs_mlp_fp32
def test_mlp_kernel_gives_the_same_bits_on_any_thread_count():
    g = torch.Generator().manual_seed(0)
    weights = [torch.randn(64, 32, generator=g), torch.randn(64, 64, generator=g), torch.randn(1, 64, generator=g)]
    feats = torch.randn(32, 5000, generator=g)
    results = {}
    before = torch.get_num_threads()
    try:
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            for dtype in ([torch.float32, torch.bfloat16] if mlp_kernel.usable(feats, torch.bfloat16)
                          else [torch.float32]):
                results[threads, dtype] = mlp_kernel.forward(weights, torch.zeros(1), feats, dtype)
    finally:
        torch.set_num_threads(before)
    for (threads, dtype), out in results.items():
        assert torch.equal(out, results[1, dtype]), (threads, dtype)


@needs_mlp_fp32
def test_real_model_decodes_alike_through_the_mlp_kernel_and_torch_gemms():
    """A fitted headsq model: the full grid through the kernel (fp32 and bf16) against the
    same decode with every kernel off (oneDNN's GEMMs); the kernel must also be in use."""
    import neuralvol as nv
    from neuralvol import metrics

    data = np.load(HEADSQ).astype(np.float32)
    vol = nv.compress(data, ratio=40, steps=150, seed=1, record_timings=False)
    calls = []
    original = mlp_kernel.grid_forward   # the decode feeds the kernel from the lattice planes
    mlp_kernel.grid_forward = lambda *a: calls.append(a[4]) or original(*a)
    try:
        fast = {c: vol.decode(compute=c) for c in ("float32", "bfloat16")}
    finally:
        mlp_kernel.grid_forward = original
    assert torch.float32 in calls and (torch.bfloat16 in calls or not mlp_kernel.usable(_probe, torch.bfloat16))
    with build.pytorch_only():
        slow = {c: vol.decode(compute=c) for c in ("float32", "bfloat16")}
    value_range = float(data.max() - data.min())
    np.testing.assert_allclose(fast["float32"], slow["float32"], rtol=0, atol=1e-5 * value_range)
    # bf16 both ways: the same rounding of inputs and weights, so within bf16's own error
    np.testing.assert_allclose(fast["bfloat16"], slow["bfloat16"], rtol=0, atol=2e-2 * value_range)
    psnr = {c: metrics.psnr(data, fast[c]) for c in fast}
    assert psnr["float32"] > 25 and abs(psnr["bfloat16"] - psnr["float32"]) < 0.1, psnr


@needs_mlp_fp32
@pytest.mark.parametrize("encoding", ["hashgrid", "hashgrid_quadratic", "hashgrid_cubic"])
def test_fused_grid_decode_gives_the_bits_of_features_then_mlp(encoding, monkeypatch):
    """The decode that feeds the MLP from each level's lattice planes, row by row, against
    the features written out whole and then the MLP kernel: the same operations in the same
    order, so the same bits. Odd sizes (a partial 32-voxel tile), a resampled sub-extent,
    three components, and blocks of a few rows as a very wide volume would take."""
    import neuralvol as nv
    from neuralvol import evaluate

    data = np.load(HEADSQ)[:40, :37, :29]
    vector = np.stack([data, 0.5 * data + 3, -data], axis=-1).astype(np.float32)
    dtypes = [torch.float32] + ([torch.bfloat16] if mlp_kernel.grid_usable(torch.bfloat16) else [])
    for array in (data, vector):
        vol = nv.compress(array, ratio=20, steps=10, encoding=encoding, seed=0, record_timings=False)
        for dims, region in (((29, 37, 40), (0, 28, 0, 36, 0, 39)), ((50, 21, 33), (3, 40, 2, 20, 5, 31))):
            axes = [evaluate.unit_axis(n, region[2 * i], region[2 * i + 1]) for i, n in enumerate(dims)]
            for dtype in dtypes:
                with mlp_kernel.features_then_mlp():
                    reference = evaluate.evaluate_grid(vol.network, *axes, dtype=dtype)
                for block, min_planes in ((1 << 21, 8), (64, 2), (1000, 3)):
                    monkeypatch.setattr(evaluate, "FUSED_BLOCK_VOXELS", block)
                    monkeypatch.setattr(evaluate, "FUSED_MIN_PLANES", min_planes)
                    blocks = []
                    monkeypatch.setattr(mlp_kernel, "grid_forward",
                                        lambda *a, f=mlp_kernel.grid_forward: blocks.append(a[3]) or f(*a))
                    fused = evaluate.evaluate_grid(vol.network, *axes, dtype=dtype)
                    monkeypatch.undo()
                    assert np.array_equal(fused, reference), (array.ndim, dims, dtype, block)
                    # the blocks tile the output exactly
                    assert sum(a * b * c for a, b, c in blocks) == np.prod([len(u) for u in axes])
                    assert (len(blocks) == 1) == (block == 1 << 21)
            # threads split the output rows: the bits must not depend on how many (a one-row
            # block, y fixed, still splits across them)
            before = torch.get_num_threads()
            try:
                for threads in (1, 3):
                    torch.set_num_threads(threads)
                    assert np.array_equal(evaluate.evaluate_grid(vol.network, *axes, dtype=dtype), reference)
                    one_row = evaluate.evaluate_grid(vol.network, axes[0], axes[1][4:5], axes[2], dtype=dtype)
                    assert np.array_equal(one_row, reference[:, 4:5])
            finally:
                torch.set_num_threads(before)
