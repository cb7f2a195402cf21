"""Bricked compression (issue 14): layout, global budget, Dask runs with a killed worker, bricked reading."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import neuralvol as nv
from neuralvol.bitstream import container
from neuralvol.bricks import BrickLayout, MemmapArray, compress_bricked
from neuralvol.bricks.quality import seam_psnr
from neuralvol.cli import main
from neuralvol.metrics import psnr

STEPS = 40
OPTIONS = dict(steps=STEPS, record_timings=False, seed=3)
QUICK = dict(steps=8, record_timings=False, seed=3)   # where only the bytes matter, not the PSNR


@pytest.fixture(scope="module")
def ct64(headsq) -> np.ndarray:
    """64^3 of the CT head (int16): 8 bricks of 32."""
    return np.ascontiguousarray(headsq[14:78])


@pytest.fixture(scope="module")
def bricked(ct64, tmp_path_factory):
    vol = compress_bricked(ct64, 32, ratio=40, workers=0, **OPTIONS)
    path = tmp_path_factory.mktemp("bricks") / "ct.nvc"
    vol.save(path)
    return vol, path


@pytest.fixture(scope="module")
def cluster_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as c, \
            distributed.Client(c) as client:
        yield client


def test_blend_weights_are_a_partition_of_unity_and_stay_inside_each_extent():
    layout = BrickLayout.for_volume((50, 37, 9), 16, 3)
    assert layout.shape == (4, 3, 1)   # cores of at most 16: ceil(50 / 16), ceil(37 / 16)
    for axis in range(3):
        u = np.linspace(0, layout.dims[axis] - 1, 301)
        total = np.zeros_like(u)
        for j in range(layout.shape[axis]):
            w = layout.axis_weight(axis, j, u)
            total += w
            i = layout.index(*[j if a == axis else 0 for a in range(3)])
            e = layout.extent(i)
            assert np.all(u[w > 0] >= e[2 * axis] - 0.5) and np.all(u[w > 0] <= e[2 * axis + 1] + 0.5)
        np.testing.assert_allclose(total, 1.0)
    with pytest.raises(nv.InputError, match="overlap 8 must be smaller"):
        BrickLayout.for_volume((16, 16, 16), 8, 8)


def test_bricked_file_round_trips_within_budget_and_decodes_only_touched_bricks(bricked, ct64):
    vol, path = bricked
    budget = ct64.nbytes // 40
    assert os.path.getsize(path) <= budget and vol.nbytes == os.path.getsize(path)
    back = nv.open(path)
    # bricks keep post filters like single models (7 of 8 here), which makes the file version 7
    assert sum(b.post_filter is not None for b in back.bricks) >= 4
    assert nv.read_header(path)["version"] == container.BRICKED_FILTERED_VERSION == 7
    assert back.dims == (64, 64, 64) and back.dtype == np.int16 and len(back.bricks) == 8
    assert len(nv.open_all(path)) == 8 and nv.open_all(path)[7].info.extent == (30, 63, 30, 63, 30, 63)
    full = back.decode()
    assert full.dtype == np.int16
    assert psnr(ct64, full) > 23.0   # 24.84 measured (24.66 with no post filters); one 64^3 model at 40 steps: 25.3
    assert back.decoded_bricks == set(range(8))
    # a region inside brick 0's core (beyond the overlap) touches brick 0 only, and equals the whole decode
    back.reset_decoded_bricks()
    region = back.decode(region=(2, 20, 0, 27, 5, 9))
    assert back.decoded_bricks == {0}
    np.testing.assert_array_equal(region, full[5:10, 0:28, 2:21])
    # a coarser grid blends the same field: each brick decoded once
    back.reset_decoded_bricks()
    third = back.decode(dims=(22, 22, 22))   # nodes 0, 3, ..., 63
    assert back.decoded_bricks == set(range(8)) and psnr(ct64[::3, ::3, ::3], third) > 21.0
    np.testing.assert_allclose(back.sample([[10.0, 20.0, 30.0]]), full[30, 20, 10], atol=1)


def test_bricks_post_filters_raise_the_blended_psnr_on_and_off_the_grid(bricked, ct64):
    _, path = bricked
    filtered = nv.open(path)
    bare = nv.open(path)
    for b in bare.bricks:
        b.post_filter = None
    # measured: 24.84 dB filtered, 24.65 bare (the same bricks fitted with no filter: 24.66)
    assert psnr(ct64, filtered.decode()) > psnr(ct64, bare.decode()) + 0.1
    # other grids and scattered points add each brick's correction interpolated from its nodes
    third_f, third_b = filtered.decode(dims=(22, 22, 22)), bare.decode(dims=(22, 22, 22))
    assert psnr(ct64[::3, ::3, ::3], third_f) > psnr(ct64[::3, ::3, ::3], third_b) + 0.1
    rng = np.random.default_rng(0)
    nodes = rng.integers(0, 64, size=(500, 3))   # x, y, z: points on the grid, across brick overlaps
    on_nodes = filtered.sample(nodes.astype(float))
    np.testing.assert_allclose(on_nodes, filtered.decode(dtype=np.float64)[nodes[:, 2], nodes[:, 1], nodes[:, 0]], atol=1e-3)
    with filtered.sampling():   # one request (the probe filter's chunks): the same values
        np.testing.assert_allclose(filtered.sample(nodes.astype(float)), on_nodes, atol=1e-6)
    assert all(b._block_cache is None for b in filtered.bricks)


def test_filtered_bricks_in_a_version_6_file_are_refused(bricked, tmp_path, monkeypatch):
    vol, _ = bricked
    monkeypatch.setattr(container, "version_for", lambda *args, **kwargs: container.FILTERED_VERSION)
    vol.save(tmp_path / "v6.nvc")   # what no writer makes: a version-6 reader would blend the bare networks
    monkeypatch.undo()
    with pytest.raises(nv.FormatError, match="a post filter in a bricked file needs format version 7; this file "
                                             "says 6: it was not written by neuralvol$") as err:
        nv.open(tmp_path / "v6.nvc")
    assert str(err.value).startswith(str(tmp_path / "v6.nvc")) and "\n" not in str(err.value)


def test_budget_goes_to_the_harder_bricks(bricked, ct64):
    vol, _ = bricked
    grad = [s["variance"] for s in vol.report["difficulty"]]
    sizes = vol.report["sizes"]
    assert len(set(sizes)) > 1
    assert sizes[int(np.argmax(grad))] == max(sizes) and sizes[int(np.argmin(grad))] == min(sizes)


def test_overlap_blending_leaves_no_seam(bricked, ct64):
    vol, path = bricked
    s = seam_psnr(ct64, nv.open(path).decode(), vol.layout, width=2)
    assert s["seam"] > s["interior"] - 1.0, s


def test_dask_lazy_input_gives_the_in_process_file(cluster_client, ct64, tmp_path):
    np.save(tmp_path / "ct.npy", ct64)
    lazy = MemmapArray(tmp_path / "ct.npy")
    seen = []
    vol = compress_bricked(lazy, 32, ratio=40, client=cluster_client,
                           progress=lambda done, total, b: seen.append((done, total)), **QUICK)
    assert seen[-1] == (8, 8) and [d for d, _ in seen] == list(range(1, 9))
    vol.save(tmp_path / "dask.nvc")
    compress_bricked(ct64, 32, ratio=40, workers=0, **QUICK).save(tmp_path / "here.nvc")
    assert (tmp_path / "dask.nvc").read_bytes() == (tmp_path / "here.nvc").read_bytes()
    assert vol.report["peak_rss_workers"] and all(v > 0 for v in vol.report["peak_rss_workers"].values())


# Nothing in this module comes from `conftest` by import: Dask workers unpickle
# KillOnFitRead by importing this module, and there `conftest` can be tests/vtk/conftest.py.
class KillOnFitRead(MemmapArray):
    """Reads of brick ``victim`` kill the worker once, on the fit pass (the 2nd read), marked by files."""

    def __init__(self, path, marker_dir, victim_start):
        super().__init__(path)
        self.marker_dir, self.victim_start = str(marker_dir), victim_start

    def __getitem__(self, key):
        if key[0].start == self.victim_start and key[1].start == self.victim_start:
            seen, killed = (os.path.join(self.marker_dir, n) for n in ("seen", "killed"))
            if os.path.exists(seen) and not os.path.exists(killed):
                open(killed, "w").close()
                os._exit(1)   # the worker dies mid-run, like an OOM kill
            open(seen, "w").close()
        return super().__getitem__(key)


def test_workers_get_glibcs_usual_mmap_threshold_back(cluster_client, monkeypatch):
    from neuralvol.bricks import runner
    # dask's nanny sets MALLOC_TRIM_THRESHOLD_ in every worker, which pins glibc's mmap
    # threshold (fits ran ~30 % fewer steps); the fit task restores it there
    assert cluster_client.submit(os.environ.get, "MALLOC_TRIM_THRESHOLD_", pure=False).result() is not None
    if sys.platform.startswith("linux"):
        assert cluster_client.submit(runner.restore_mmap_threshold, pure=False).result() is True
    calls = []

    class Libc:
        def mallopt(self, param, value):
            calls.append((param, value))
            return 1

    monkeypatch.setattr(runner.ctypes, "CDLL", lambda name: Libc())
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert runner.restore_mmap_threshold() is False and calls == []   # an ordinary process: untouched
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "1048576")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    assert runner.restore_mmap_threshold() is False and calls == []   # someone chose a threshold
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_")
    assert runner.restore_mmap_threshold() is sys.platform.startswith("linux")
    assert calls == ([(runner.M_MMAP_THRESHOLD, 32 << 20)] if sys.platform.startswith("linux") else [])
    monkeypatch.undo()   # the real ctypes again (the kernels load through it)
    import neuralvol.bricks.compress as bc
    restored = []
    monkeypatch.setattr(runner, "restore_mmap_threshold", lambda: restored.append(True))
    block = np.arange(512, dtype=np.float32).reshape(8, 8, 8)
    bc.fit_task(block, (slice(None),) * 3, (0, 7, 0, 7, 0, 7), (0.0,) * 3, (1.0,) * 3, "v", 1500,
                dict(steps=2, record_timings=False))
    assert restored == [True]


def test_a_killed_worker_loses_nothing(cluster_client, headsq, tmp_path):
    data = np.ascontiguousarray(headsq[20:52, 16:48, 16:48])
    np.save(tmp_path / "ct.npy", data)
    reference = compress_bricked(data, 16, ratio=20, workers=0, overlap=2, **QUICK)
    source = KillOnFitRead(tmp_path / "ct.npy", tmp_path, victim_start=14)   # brick 7 (1,1,1): starts at 16 - 2
    vol = compress_bricked(source, 16, ratio=20, client=cluster_client, overlap=2, **QUICK)
    assert (tmp_path / "killed").exists()
    vol.save(tmp_path / "out.nvc")
    reference.save(tmp_path / "ref.nvc")
    assert (tmp_path / "out.nvc").read_bytes() == (tmp_path / "ref.nvc").read_bytes()


def test_cli_bricks_info_and_region_decompress(ct64, tmp_path, capsys):
    np.save(tmp_path / "ct.npy", ct64)
    assert main(["compress", str(tmp_path / "ct.npy"), str(tmp_path / "ct.nvc"), "--ratio", "40", "--brick", "32",
                 "--workers", "0", "--steps", "8", "--seed", "3", "--reproducible", "-q"]) == 0
    assert main(["info", str(tmp_path / "ct.nvc")]) == 0
    out = capsys.readouterr().out
    assert "in 2x2x2 bricks, overlap 2" in out and "format v7" in out and out.count("post filter: a") == 8
    assert main(["compress", str(tmp_path / "ct.npy"), str(tmp_path / "bare.nvc"), "--ratio", "40", "--brick", "32",
                 "--workers", "0", "--steps", "8", "--seed", "3", "--reproducible", "-q", "--no-post-filter"]) == 0
    assert nv.read_header(tmp_path / "bare.nvc")["version"] == container.EXTENDED_VERSION == 4
    assert all(b.post_filter is None for b in nv.open(tmp_path / "bare.nvc").bricks)
    assert main(["decompress", str(tmp_path / "ct.nvc"), str(tmp_path / "part.npy"),
                 "--region", "0", "31", "0", "31", "0", "15", "-q"]) == 0
    part = np.load(tmp_path / "part.npy")
    np.testing.assert_array_equal(part, nv.open(tmp_path / "ct.nvc").decode(region=(0, 31, 0, 31, 0, 15)))


def test_cli_errors_are_one_line(ct64, tmp_path, capsys):
    np.save(tmp_path / "ct.npy", ct64)
    assert main(["compress", str(tmp_path / "ct.npy"), str(tmp_path / "a.nvc"), "--workers", "2"]) == 2
    assert "add --brick N" in capsys.readouterr().err
    assert main(["compress", str(tmp_path / "ct.npy"), str(tmp_path / "a.nvc"), "--brick", "8", "--workers", "0",
                 "--size", "3000", "--steps", "1"]) == 2
    err = capsys.readouterr().err
    assert "too small for 512 bricks" in err and err.count("\n") == 1
    assert not (tmp_path / "a.nvc").exists()


def test_large_volumes_are_bricked_automatically_small_ones_unchanged(ct64, tmp_path, capsys, monkeypatch):
    small = np.ascontiguousarray(ct64[:24, :24, :24])
    np.save(tmp_path / "s.npy", small)
    args = ["--ratio", "20", "--steps", "5", "--reproducible"]
    assert main(["compress", str(tmp_path / "s.npy"), str(tmp_path / "s.nvc"), *args]) == 0
    direct = nv.compress(small, array_name="s", ratio=20, steps=5, record_timings=False)
    direct.save(tmp_path / "direct.nvc")
    assert (tmp_path / "s.nvc").read_bytes() == (tmp_path / "direct.nvc").read_bytes()
    # a volume that fits in one brick makes the unbricked file
    assert main(["compress", str(tmp_path / "s.npy"), str(tmp_path / "one.nvc"), "--brick", "32", "--workers", "0",
                 *args]) == 0
    assert (tmp_path / "one.nvc").read_bytes() == (tmp_path / "direct.nvc").read_bytes()
    import neuralvol.bricks.compress as bc
    import neuralvol.bricks.cli as bcli
    monkeypatch.setattr(bc, "AUTO_BRICK_VOXELS", 12 ** 3)
    monkeypatch.setattr(bcli, "DEFAULT_BRICK", 16)
    assert main(["compress", str(tmp_path / "s.npy"), str(tmp_path / "auto.nvc"), "--workers", "0",
                 "--ratio", "5", "--steps", "5"]) == 0
    assert "compressing in bricks of 16" in capsys.readouterr().err
    assert "bricks" in nv.read_header(tmp_path / "auto.nvc")


def test_a_header_larger_than_reserved_is_paid_for_by_refitting(headsq, monkeypatch):
    import neuralvol.bricks.compress as bc
    monkeypatch.setattr(bc, "HEADER_BYTES_PER_BRICK", 0)   # reserve nothing: the first assembly is too big
    monkeypatch.setattr(bc, "HEADER_BYTES_FIXED", 0)
    data = np.ascontiguousarray(headsq[20:52, 16:48, 16:48])
    budget = data.nbytes // 15
    vol = compress_bricked(data, 16, size=budget, overlap=2, workers=0, **QUICK)
    assert sum(vol.report["sizes"]) < budget and vol.nbytes <= budget


def test_a_time_budget_is_the_whole_calls_shared_by_the_bricks(ct64, monkeypatch):
    import importlib

    from neuralvol.bricks.compress import FINISH_SHARE
    module = importlib.import_module("neuralvol.compress")
    real, given = module.compress, []

    def recording(block, **options):   # what each brick's fit was given; the fits stay short
        given.append(options.pop("time_budget"))
        return real(block, steps=8, **options)
    monkeypatch.setattr(module, "compress", recording)
    vol = compress_bricked(ct64, 32, ratio=40, workers=0, time_budget=40, record_timings=False, seed=3)
    # 8 bricks one after another in this process: an eighth each of what the statistics left
    assert len(given) == 8 and len(set(given)) == 1
    assert 0.9 * 40 * (1 - FINISH_SHARE) / 8 < given[0] <= 40 * (1 - FINISH_SHARE) / 8
    assert vol.report["brick_time_budget"] == given[0] and vol.report["worker_threads"] == 1
    with pytest.raises(nv.InputError, match=r"^a time budget of 3 s leaves 0\.\d s for each of 8 bricks on 1 "
                                            r"worker thread\(s\), under the 2 s a fit needs; give a longer"):
        compress_bricked(ct64, 32, ratio=40, workers=0, time_budget=3)
    with pytest.raises(nv.InputError, match=r"^a time budget of 0 s leaves 0\.0 s for each of 8 bricks"):
        compress_bricked(ct64, 32, ratio=40, workers=0, time_budget=0)
    for bad in (-5, float("nan"), float("inf")):   # the same check as an unbricked compress
        with pytest.raises(nv.InputError, match="time budget must be a finite number of seconds >= 0"):
            compress_bricked(ct64, 32, ratio=40, workers=0, time_budget=bad)


def test_bricks_run_in_waves_of_the_clusters_threads(cluster_client):
    from neuralvol.bricks import runner
    assert runner.slots(None) == 1 and runner.slots(cluster_client) == 2


def test_pyvista_reads_a_bricked_file_as_one_image(bricked):
    pytest.importorskip("pyvista")
    from neuralvol.pyvista_support import NVCReader, to_image
    vol, path = bricked
    reader = NVCReader(str(path))
    image = reader.read()
    assert image.dimensions == (64, 64, 64)
    full = nv.open(path).decode()
    np.testing.assert_array_equal(np.asarray(image.point_data[vol.array_name]).reshape(full.shape), full)
    part = to_image(nv.open(path), region=(0, 9, 0, 9, 0, 9))
    assert part.dimensions == (10, 10, 10)


def test_workers_get_the_file_not_the_array(ct64, tmp_path):
    import pickle
    from neuralvol.bricks.lazy import as_brick_source
    np.save(tmp_path / "ct.npy", ct64)
    mm = np.load(tmp_path / "ct.npy", mmap_mode="r")
    assert len(pickle.dumps(mm)) > ct64.nbytes          # why a memmap is not sent as it is
    lazy = as_brick_source(mm)
    assert isinstance(lazy, MemmapArray) and len(pickle.dumps(lazy)) < 1000
    back = pickle.loads(pickle.dumps(lazy))
    np.testing.assert_array_equal(back[(slice(3, 9), slice(0, 5), slice(60, 64))], ct64[3:9, 0:5, 60:64])


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="needs Linux /proc")
def test_a_spawned_process_reports_its_own_peak_memory():
    # ru_maxrss survives execve: Dask workers spawned by a client that had made a 512^3
    # field reported the client's 2275 MiB as their own peak
    held = np.ones(100_000_000)   # 763 MiB resident in this process
    code = "from neuralvol.bricks.runner import peak_rss_bytes; print(peak_rss_bytes())"
    repo = Path(__file__).resolve().parents[1]
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=repo)
    assert int(child.stdout) < held.nbytes * 3 // 4, int(child.stdout)
