"""The `neuralvol` command: compress / info / decompress, exit codes and one-line errors."""
import json
import subprocess
import sys

import numpy as np
import pytest

import neuralvol as nv
from neuralvol.cli import main
from neuralvol.metrics import psnr

from conftest import DATA


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def cli_file(tmp_path_factory):
    """The bundled MR head compressed through the command line."""
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "mr.nvc"
    assert main(["compress", str(DATA / "head_mr_small.npy"), str(path), "--ratio", "30", "--steps", "120",
                 "--seed", "1", "-q"]) == 0
    return path


def test_compress_info_decompress_round_trip(cli_file, capsys, tmp_path):
    original = np.load(DATA / "head_mr_small.npy")
    code, out, _ = run(capsys, "info", cli_file, "--json")
    assert code == 0
    info = json.loads(out)
    assert info["bytes"] == cli_file.stat().st_size and info["ratio"] >= 30
    (model,) = info["models"]
    assert model["dims"] == [48, 62, 42] and model["dtype"] == "uint8"
    assert model["value_range"] == [float(original.min()), float(original.max())]
    assert model["model"]["parameters"] > 0
    # a 4 KB file records its PSNR alone (steps, seconds and device would cost 10-13 bytes)
    assert set(model["training"]) == {"psnr", "exact"} and model["training"]["psnr"] > 20
    code, out, _ = run(capsys, "info", cli_file)
    assert code == 0 and "48x62x42 uint8" in out and "PSNR" in out and "ratio" in out
    assert "records no fitting details" in out

    code, _, _ = run(capsys, "decompress", cli_file, tmp_path / "full.npy")
    full = np.load(tmp_path / "full.npy")
    assert code == 0 and full.dtype == np.uint8 and full.shape == original.shape
    assert psnr(original, full) == pytest.approx(model["training"]["psnr"], abs=1e-3)

    code, _, _ = run(capsys, "decompress", cli_file, tmp_path / "half.npy", "--scale", "0.5")
    assert code == 0 and np.load(tmp_path / "half.npy").shape == (22, 32, 25)  # (n - 1) / 2 + 1 nodes

    code, _, _ = run(capsys, "decompress", cli_file, tmp_path / "roi.npy", "--region", 10, 40, 0, 61, 20, 30)
    assert code == 0 and np.array_equal(np.load(tmp_path / "roi.npy"), full[20:31, 0:62, 10:41])

    code, _, _ = run(capsys, "decompress", cli_file, tmp_path / "roi.raw", "--region", 0, 1, 0, 1, 0, 1)
    assert code == 0 and (tmp_path / "roi.raw").read_bytes() == full[0:2, 0:2, 0:2].tobytes()


def test_vti_in_and_out_keep_spacing_origin_and_name(capsys, tmp_path):
    pytest.importorskip("vtkmodules")
    from neuralvol.volume_io import read_volume
    src = read_volume(DATA / "hydrogen.vti")
    code, _, _ = run(capsys, "compress", DATA / "hydrogen.vti", tmp_path / "h.nvc", "--ratio", "40", "--steps", "60", "-q")
    assert code == 0
    vol = nv.open(tmp_path / "h.nvc")
    assert vol.array_name == src.array_name and vol.spacing == src.spacing and vol.origin == src.origin
    code, _, _ = run(capsys, "decompress", tmp_path / "h.nvc", tmp_path / "h.vti")
    back = read_volume(tmp_path / "h.vti")
    assert code == 0 and back.array.dtype == src.array.dtype and back.array.shape == src.array.shape
    assert back.spacing == src.spacing and back.origin == src.origin and back.array_name == src.array_name
    # a region written as .vti is placed where it was cut from
    code, _, _ = run(capsys, "decompress", tmp_path / "h.nvc", tmp_path / "r.vti", "--region", 4, 9, 0, 63, 2, 3)
    part = read_volume(tmp_path / "r.vti")
    assert part.array.shape == (2, 64, 6)
    assert part.origin == pytest.approx(tuple(o + s * i for o, s, i in zip(src.origin, src.spacing, (4, 0, 2))))


def test_raw_input_needs_dims_and_dtype(capsys, tmp_path):
    original = np.load(DATA / "head_mr_small.npy")
    raw = tmp_path / "mr.raw"
    raw.write_bytes(original.tobytes())
    code, _, err = run(capsys, "compress", raw, tmp_path / "x.nvc", "--steps", "1")
    assert code == 2 and "--dims X Y Z and --dtype" in err and err.count("\n") == 1
    code, _, err = run(capsys, "compress", raw, tmp_path / "x.nvc", "--dims", 48, 62, 41, "--dtype", "uint8")
    assert code == 2 and "need" in err
    code, _, _ = run(capsys, "compress", raw, tmp_path / "x.nvc", "--dims", 48, 62, 42, "--dtype", "uint8",
                     "--steps", "5", "-q")
    assert code == 0 and nv.open(tmp_path / "x.nvc").dims == (48, 62, 42)


@pytest.mark.parametrize("argv, message", [
    (["info", "missing.nvc"], "no such file"),
    (["decompress", "{bad}", "out.npy"], "not a neuralvol .nvc file"),
    (["decompress", "{good}", "out.xyz"], "unknown suffix '.xyz'"),
    (["decompress", "{good}", "out.npy", "--region", "0", "99", "0", "1", "0", "1"], "outside"),
    (["decompress", "{good}", "no_such_dir/out.npy"], "does not exist"),
    (["compress", "{nan}", "x.nvc", "--steps", "1"], "NaN"),
    (["compress", "{good}", "x.nvc"], "unknown suffix '.nvc'"),
    (["compress", "{npy}", "x.nvc", "--ratio", "1e9"], "lower ratio"),
])
def test_bad_input_exits_2_with_one_line(cli_file, capsys, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.nvc").write_bytes(b"hello, this is not a neural volume at all")
    nan = np.ones((4, 4, 4), np.float32)
    nan[1, 1, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    subst = {"{bad}": "bad.nvc", "{good}": str(cli_file), "{nan}": "nan.npy", "{npy}": str(DATA / "head_mr_small.npy")}
    code, _, err = run(capsys, *[subst.get(a, a) for a in argv])
    assert code == 2
    assert message in err and err.startswith("neuralvol: error:") and err.count("\n") == 1
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "a temp file was left behind"


def test_usage_errors_exit_2():
    proc = subprocess.run([sys.executable, "-m", "neuralvol.cli", "compress"], capture_output=True, text=True)
    assert proc.returncode == 2 and "required" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "neuralvol.cli", "compress", "a.npy", "b.nvc", "--ratio", "5",
                           "--size", "100"], capture_output=True, text=True)
    assert proc.returncode == 2 and "not allowed with" in proc.stderr


def test_console_script_is_installed(tmp_path):
    import shutil
    exe = shutil.which("neuralvol") or str((DATA.parent / ".venv" / "bin" / "neuralvol"))
    proc = subprocess.run([exe, "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("neuralvol ")


def test_post_filter_is_reported_and_can_be_left_out(capsys, tmp_path):
    """hydrogen (a smooth simulation) keeps a post filter; --no-post-filter writes a
    version-3 file without one, and info says which."""
    pytest.importorskip("vtkmodules")
    from neuralvol.volume_io import read_volume
    src = np.ascontiguousarray(read_volume(DATA / "hydrogen.vti").array[16:48, 16:48, 16:48])
    np.save(tmp_path / "h.npy", src)
    for extra, version in (([], 5), (["--no-post-filter"], 3)):
        out_file = tmp_path / f"h{version}.nvc"
        code, _, _ = run(capsys, "compress", tmp_path / "h.npy", out_file, "--ratio", "40", "--steps", "150",
                         "-q", *extra)
        assert code == 0 and nv.read_header(out_file)["version"] == version
        code, out, _ = run(capsys, "info", out_file)
        assert code == 0 and f"format v{version}" in out and ("post filter" in out) == (version == 5)
