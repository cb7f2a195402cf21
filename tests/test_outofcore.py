"""Out-of-core input (lazy .raw/.npy/zarr/HDF5), decoding to zarr/HDF5 chunk by chunk, and
the numcodecs codec, on real volumes."""
import os
import pickle
import sys
import tracemalloc
import warnings

import numpy as np
import pytest

import neuralvol as nv
from neuralvol.cli import main
from neuralvol.errors import InputError
from neuralvol.lazy_arrays import HDF5Array, MemmapArray, ZarrArray, open_lazy, split_source
from neuralvol.metrics import psnr
from neuralvol.volume_io import read_volume

from conftest import DATA, REPO

h5py = pytest.importorskip("h5py")
zarr = pytest.importorskip("zarr")


@pytest.fixture()
def h5_file(tmp_path, headsq):
    path = tmp_path / "sim.h5"
    with h5py.File(path, "w") as fh:
        ds = fh.create_dataset("/fields/density", data=headsq, chunks=(16, 32, 32))
        ds.attrs["spacing"] = [3.2, 3.2, 1.5]
        ds.attrs["origin"] = [10.0, -5.0, 2.5]
        fh.create_dataset("/fields/slice", data=headsq[0])
        fh.create_dataset("/fields/complex", data=np.zeros((4, 4, 4), np.complex64))
    return path


@pytest.fixture()
def zarr_store(tmp_path, head_mr):
    path = tmp_path / "scan.zarr"
    root = zarr.open_group(str(path), mode="w")
    arr = root.create_array("mri/t1", shape=head_mr.shape, chunks=(16, 16, 16), dtype=head_mr.dtype,
                            attributes={"spacing": [4.0, 4.0, 4.0], "origin": [1, 2, 3], "array_name": "T1"})
    arr[...] = head_mr
    return path


def test_split_source_keeps_colons_outside_the_container():
    assert split_source("a/b.h5:/x/y") == ("a/b.h5", "/x/y")
    assert split_source("C:/data/run:3/v.zarr:g/a") == ("C:/data/run:3/v.zarr", "g/a")
    assert split_source("v.zarr/") == ("v.zarr", None)
    assert split_source("v.npy") == ("v.npy", None)


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux /proc")
def test_no_mapping_outlives_a_read(tmp_path, headsq):
    # a kept mapping holds the pages read through it in RSS: 64 brick tasks of a 512^3
    # .npy on one Dask worker reported 8.5 GiB
    def mappings(path):
        with open("/proc/self/maps") as maps:
            return sum(str(path) in line for line in maps)
    np.save(tmp_path / "head.npy", headsq)
    headsq.tofile(tmp_path / "head.raw")
    for arr, path in ((open_lazy(tmp_path / "head.npy"), tmp_path / "head.npy"),
                      (open_lazy(tmp_path / "head.raw", dims=(64, 64, 93), dtype="int16"), tmp_path / "head.raw")):
        part = arr[10:20, :, 5:9]
        assert np.array_equal(part, headsq[10:20, :, 5:9])
        assert mappings(path) == 0, f"{path.name} is still mapped after the read"


def test_raw_is_memory_mapped_and_pickles_as_its_path(tmp_path, headsq):
    path = tmp_path / "head.raw"
    headsq.tofile(path)
    arr = open_lazy(path, dims=(64, 64, 93), dtype="int16")
    assert isinstance(arr, MemmapArray) and arr.shape == headsq.shape and arr.dtype == np.int16
    tracemalloc.start()
    part = arr[40:50, 10:20, :]
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert np.array_equal(part, headsq[40:50, 10:20, :])
    assert peak < headsq.nbytes // 20          # a slice read, never the whole file
    blob = pickle.dumps(arr)
    assert len(blob) < 1000                     # the source, not the 760 kB of data
    assert np.array_equal(np.asarray(pickle.loads(blob)), headsq)
    with pytest.raises(InputError, match="has 761856 bytes but dims 64x64x92 of int16 need 753664"):
        open_lazy(path, dims=(64, 64, 92), dtype="int16")
    with pytest.raises(InputError, match="--dims X Y Z and --dtype"):
        open_lazy(path)


def test_npy_is_memory_mapped_and_2d_is_one_slice(tmp_path, headsq):
    arr = open_lazy(DATA / "headsq_quarter.npy")
    assert isinstance(arr.handle, np.memmap) and arr.array_name == "headsq_quarter"
    assert np.array_equal(arr[5], headsq[5])
    np.save(tmp_path / "slice.npy", headsq[7])
    flat = open_lazy(tmp_path / "slice.npy")
    assert flat.shape == (1, 64, 64) and np.array_equal(flat[0], headsq[7])
    assert np.array_equal(pickle.loads(pickle.dumps(flat))[:, 3, :], headsq[7][None, 3, :])


def test_hdf5_dataset_with_placement_and_clear_errors(h5_file, headsq):
    vf = read_volume(f"{h5_file}:/fields/density", lazy=True)
    assert isinstance(vf.array, HDF5Array)
    assert (vf.spacing, vf.origin, vf.array_name) == ((3.2, 3.2, 1.5), (10.0, -5.0, 2.5), "density")
    assert np.array_equal(vf.array[20:30, ::2, 5], headsq[20:30, ::2, 5])
    again = pickle.loads(pickle.dumps(vf.array))
    assert np.array_equal(again[...], headsq)
    assert np.array_equal(read_volume(h5_file, array_name="density").array, headsq)   # --array names it
    with pytest.raises(InputError, match=r"'/fields/nope' is not in the file .*datasets: /fields/complex "
                                         r"\(4, 4, 4\), /fields/density \(93, 64, 64\), /fields/slice \(64, 64\)"):
        open_lazy(f"{h5_file}:/fields/nope")
    with pytest.raises(InputError, match="is a group, not a dataset"):
        open_lazy(f"{h5_file}:/fields")
    with pytest.raises(InputError, match="has 2 dimensions .* needs 3"):
        open_lazy(f"{h5_file}:/fields/slice")
    with pytest.raises(InputError, match="dtype complex64, which is not supported"):
        open_lazy(f"{h5_file}:fields/complex")
    with pytest.raises(InputError, match=r"holds 2 3D datasets: name one as sim.h5:/DATASET"):
        open_lazy(h5_file)
    with pytest.raises(InputError, match="is not a readable HDF5 file"):
        (h5_file.parent / "junk.h5").write_bytes(b"not hdf5")
        open_lazy(h5_file.parent / "junk.h5")


def test_zarr_array_in_a_group(zarr_store, head_mr):
    arr = open_lazy(f"{zarr_store}:mri/t1")
    assert isinstance(arr, ZarrArray) and arr.array_name == "T1"
    assert (arr.spacing, arr.origin) == ((4.0, 4.0, 4.0), (1.0, 2.0, 3.0))
    assert np.array_equal(arr[3:9, :, 7:40], head_mr[3:9, :, 7:40])
    assert np.array_equal(np.asarray(pickle.loads(pickle.dumps(arr))), head_mr)
    assert open_lazy(zarr_store).array_path == "mri/t1"            # the only 3D array needs no name
    with pytest.raises(InputError, match=r"has no array 'mri/t2'; arrays: mri/t1 \(42, 62, 48\)"):
        open_lazy(f"{zarr_store}:mri/t2")


def test_missing_optional_package_names_the_extra(monkeypatch, h5_file):
    monkeypatch.setitem(sys.modules, "h5py", None)
    with pytest.raises(InputError, match=r"needs the 'h5py' package: pip install neuralvol\[large\]"):
        open_lazy(f"{h5_file}:/fields/density")


def test_cli_compresses_hdf5_and_zarr_inputs(h5_file, zarr_store, tmp_path, capsys):
    out = tmp_path / "h.nvc"
    assert main(["compress", f"{h5_file}:/fields/density", str(out), "--ratio", "40", "--steps", "60", "-q"]) == 0
    vol = nv.open(out)
    assert (vol.spacing, vol.origin, vol.array_name, vol.dims) == ((3.2, 3.2, 1.5), (10.0, -5.0, 2.5), "density",
                                                                  (64, 64, 93))
    assert main(["compress", str(zarr_store), str(tmp_path / "z.nvc"), "--ratio", "40", "--steps", "5", "-q"]) == 0
    assert nv.open(tmp_path / "z.nvc").array_name == "T1"
    capsys.readouterr()
    assert main(["compress", f"{h5_file}:/fields/gone", str(tmp_path / "x.nvc"), "--steps", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "datasets: /fields/complex" in err and not (tmp_path / "x.nvc").exists()


def test_decode_to_zarr_matches_decode_with_placement(crop_file, tmp_path):
    vol = nv.open(crop_file)
    target = tmp_path / "out.zarr"
    assert main(["decompress", str(crop_file), str(target), "--chunks", "16", "--decode-threads", "2", "-q"]) == 0
    z = zarr.open_array(str(target), mode="r")
    assert z.shape == (30, 36, 40) and z.chunks == (16, 16, 16) and z.dtype == vol.dtype
    assert np.array_equal(z[...], vol.decode())
    assert dict(z.attrs) == {"spacing": [3.2, 3.2, 1.5], "origin": [10.0, -5.0, 2.5], "array_name": "density"}
    # read back lazily, with its placement: the zarr store is a volume neuralvol reads
    back = read_volume(target)
    assert (back.spacing, back.origin, back.array_name) == ((3.2, 3.2, 1.5), (10.0, -5.0, 2.5), "density")
    # a region of a finer grid: origin moves with it, values are that region's decode
    nv.decode_to_zarr(vol, target, chunks=(8, 16, 16), scale=2, region=(4, 30, 0, 20, 10, 25), zarr_format=2)
    z = zarr.open_array(str(target), mode="r")
    assert z.shape == (16, 21, 27) and z.attrs["origin"] == [10.0 + 4 * 1.6, -5.0, 2.5 + 10 * 0.75]
    assert np.array_equal(z[...], vol.decode(dims=vol.output_dims(scale=2), region=(4, 30, 0, 20, 10, 25)))
    nv.decode_to_zarr(vol, f"{target}:fields/density", chunks=32)       # an array inside a group
    assert np.array_equal(open_lazy(f"{target}:fields/density")[...], vol.decode())


def test_decode_to_zarr_leaves_nothing_half_written(crop_file, tmp_path):
    vol = nv.open(crop_file)
    target = tmp_path / "keep.zarr"
    nv.decode_to_zarr(vol, target, chunks=32)
    before = sorted(os.listdir(tmp_path))
    calls = []
    with pytest.raises(InputError, match="cancelled"):
        nv.decode_to_zarr(vol, target, chunks=8, progress=lambda f: calls.append(f) and False or (len(calls) < 3))
    assert sorted(os.listdir(tmp_path)) == before                 # no temporary store left
    assert zarr.open_array(str(target), mode="r").chunks == (30, 32, 32)   # the old store is intact
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(InputError, match="exists and is not a zarr store"):
        nv.decode_to_zarr(vol, tmp_path / "mine", chunks=32)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_decode_to_hdf5(crop_file, tmp_path):
    vol = nv.open(crop_file)
    assert main(["decompress", str(crop_file), f"{tmp_path / 'o.h5'}:/grid/rho", "--chunks", "16", "-q"]) == 0
    with h5py.File(tmp_path / "o.h5", "r") as fh:
        ds = fh["/grid/rho"]
        assert ds.chunks == (16, 16, 16) and np.array_equal(ds[...], vol.decode())
        assert list(ds.attrs["origin"]) == [10.0, -5.0, 2.5] and ds.attrs["array_name"] == "density"
    assert [n for n in os.listdir(tmp_path) if n.startswith(".")] == []


# -- numcodecs codec --------------------------------------------------------------------

def test_codec_config_round_trip_and_chunk_coding(headsq_crop):
    import numcodecs
    from neuralvol.numcodecs import NeuralVolCodec
    codec = NeuralVolCodec(ratio=10, steps=100, seed=1)
    again = numcodecs.get_codec(codec.get_config())
    assert isinstance(again, NeuralVolCodec) and again.get_config() == codec.get_config()
    chunk = headsq_crop[:24, :24, :24].copy()
    data = codec.encode(chunk)
    assert data[:4] == nv_magic() and len(data) <= chunk.nbytes / 10
    assert again.encode(chunk) == data                              # deterministic: same chunk, same bytes
    values = codec.decode(data)
    assert values.shape == chunk.shape and values.dtype == chunk.dtype and psnr(chunk, values) > 21   # 23.1 measured; the chunk's mean scores 16.8
    out = np.zeros(chunk.size, chunk.dtype)
    assert codec.decode(data, out=out) is out and np.array_equal(out.reshape(chunk.shape), values)
    small = NeuralVolCodec(ratio=10, steps=5)      # a leading axis of length 1 (time) is dropped
    assert small.decode(small.encode(chunk[None]), out=np.empty((1, 24, 24, 24), chunk.dtype)).shape == (1, 24, 24, 24)
    with pytest.raises(InputError, match="at most 3 dimensions"):
        codec.encode(np.zeros((2, 4, 4, 4), np.float32))
    with pytest.raises(InputError, match="out= has 8 elements"):
        codec.decode(data, out=np.empty(8, chunk.dtype))


def nv_magic() -> bytes:
    from neuralvol.bitstream.container import MAGIC
    return MAGIC[:4]


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_zarr_codec_example_round_trips_a_real_volume(zarr_format, tmp_path):
    sys.path.insert(0, str(REPO / "examples"))
    try:
        from zarr_codec import run
    finally:
        sys.path.remove(str(REPO / "examples"))
    volume = np.load(DATA / "head_mr_small.npy")[5:37, :, 8:40].copy()        # 32 x 62 x 32: two chunks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = run(volume, tmp_path / "v.zarr", ratio=10, steps=60, chunks=32, zarr_format=zarr_format)
    # zarr pads the edge chunk to 32^3 and each chunk gets 1/10 of its bytes: 10 * 62/64 overall
    assert res["ratio"] > 9.6 and res["psnr"] > 22        # the volume's mean scores 16.4 dB
    assert res["back"].shape == volume.shape and res["back"].dtype == volume.dtype


def test_decode_to_zarr_memory_is_bounded_by_chunks(crop_file, tmp_path):
    vol = nv.open(crop_file)
    dims = vol.output_dims(scale=3)                                   # 118 x 106 x 88: 1.1 M voxels
    nv.decode_to_zarr(vol, tmp_path / "warm.zarr", chunks=8, region=(0, 7, 0, 7, 0, 7))
    tracemalloc.start()
    nv.decode_to_zarr(vol, tmp_path / "big.zarr", chunks=32, dims=dims, workers=2)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    whole = int(np.prod(dims)) * (2 + 12)     # the result plus decode's float32/float64 work per voxel
    assert peak < whole / 4, (peak, whole)
    z = zarr.open_array(str(tmp_path / "big.zarr"), mode="r")
    assert np.array_equal(z[40:72, 50:60, :], vol.decode(dims=dims, region=(0, dims[0] - 1, 50, 59, 40, 71)))
