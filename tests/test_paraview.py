"""The ParaView plugin under the real ParaView (Debian's 5.11 in CI).

Runs scripts from tests/paraview/ with ``pvpython``, ``mpiexec -n 2 pvbatch`` and
``pvbatch`` under a private Xvfb in subprocesses. Needs ``.ci/setup-paraview.sh`` (ParaView, xvfb and
the ``.venv-paraview`` venv with torch for ParaView's Python); skipped when absent.
"""
import contextlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from nvc_files import REPO, SHARED_DATA, series_nvc, small_nvc

PLUGIN = REPO / "plugin" / "neuralvol_paraview.py"
SCRIPTS = REPO / "tests" / "paraview"
PV_VENV = Path(os.environ.get("NV_PV_VENV", REPO / ".venv-paraview"))
PVPYTHON = shutil.which("pvpython")
PVBATCH = shutil.which("pvbatch")

pytestmark = [
    pytest.mark.skipif(PVPYTHON is None or PVBATCH is None,
                       reason="ParaView's pvpython/pvbatch not installed "
                              "(run .ci/setup-paraview.sh)"),
    pytest.mark.skipif(not (PV_VENV / "bin" / "python").exists(),
                       reason=f"no venv for ParaView's Python at {PV_VENV} "
                              "(run .ci/setup-paraview.sh)"),
]


def pv_env():
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["PV_VENV"] = str(PV_VENV)
    env["PYTHONPATH"] = str(REPO / "plugin" / "shim")  # getargspec fix + PV_VENV
    env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
    env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
    env["OMPI_MCA_rmaps_base_oversubscribe"] = "1"
    env.pop("PV_PLUGIN_PATH", None)
    env.pop("PV_PLUGIN_CONFIG_FILE", None)
    return env


def run(cmd, timeout=300, env=None):
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, env=env or pv_env(), cwd=REPO)
    return proc, proc.stdout + proc.stderr


XVFB = shutil.which("Xvfb")


@contextlib.contextmanager
def x_server(screen):
    """A private Xvfb that has said it is ready (``-displayfd``), as ``DISPLAY`` in an env.

    ``xvfb-run -a`` picks a display number by looking for lock files and can hand the
    client a server that is not accepting connections yet: CI once aborted with "bad X
    server connection. DISPLAY=:100" while every local run passed. Xvfb writes its
    display number to the pipe only once it accepts clients, so there is no race.
    """
    read_end, write_end = os.pipe()
    server = subprocess.Popen([XVFB, "-displayfd", str(write_end), "-screen", "0", screen,
                               "-nolisten", "tcp"], pass_fds=(write_end,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    os.close(write_end)
    try:
        with os.fdopen(read_end, "rb") as pipe:
            number = pipe.readline().strip().decode()
        if not number:
            raise RuntimeError("Xvfb did not start: " + server.stderr.read().decode()[-2000:])
        env = pv_env()
        env["DISPLAY"] = ":" + number
        yield env
    finally:
        server.terminate()
        server.wait(timeout=30)


def run_on_x(cmd, screen, env_update=None, timeout=300):
    """Run ``cmd`` under a fresh Xvfb; once more on a new server if X refused the client."""
    for attempt in (1, 2):
        with x_server(screen) as env:
            env.update(env_update or {})
            proc, text = run(cmd, timeout=timeout, env=env)
        if "bad X server connection" not in text or attempt == 2:
            return proc, text


def vti_file():
    for p in (SHARED_DATA / "vti" / "hydrogen.vti", REPO / "data" / "hydrogen.vti"):
        if p.exists():
            return p
    pytest.skip("hydrogen.vti not found in ../shared/data/vti or data/")


@pytest.fixture(scope="module")
def pvpython_checks(tmp_path_factory):
    out = tmp_path_factory.mktemp("pv")
    proc, text = run([PVPYTHON, SCRIPTS / "pv_checks.py", PLUGIN, small_nvc(), vti_file(), out,
                      series_nvc()])
    return proc.returncode, text


@pytest.mark.parametrize("check", [
    "load_plugin", "open_data_file", "extract_subset_decodes_only_the_subset",
    "resolution_scale", "bad_file_is_an_error_message", "probe_on_a_slice",
    "save_data_from_vti", "series_as_time_steps"])
def test_pvpython(pvpython_checks, check):
    rc, text = pvpython_checks
    if f"PASS {check}" not in text:
        pytest.fail(f"pvpython check {check} did not pass:\n{text[-6000:]}")


def test_plugin_from_a_checkout_in_a_python_without_neuralvol_or_torch():
    """No PV_VENV: ParaView's own Python has neither neuralvol nor torch. The plugin finds
    the package beside plugin/ (its sys.path fallback) and loads; reading a file is then
    the VTK layer's one-line missing-dependency error, not a traceback."""
    env = pv_env()
    del env["PV_VENV"]
    proc, text = run([PVPYTHON, SCRIPTS / "pv_checkout_fallback.py", PLUGIN, small_nvc()], env=env)
    assert "NO NEURALVOL BEFORE THE PLUGIN" in text, text[-4000:]  # else no fallback ran
    assert f"LOADED True {REPO / 'neuralvol' / '__init__.py'} " in text, text[-4000:]
    assert "TORCH IMPORTED False" in text, text[-4000:]
    assert ("NeuralVolumeReader (vtkPythonAlgorithm): neuralvol cannot be imported in this "
            "Python (No module named 'torch'); inside ParaView set PV_VENV") in text, text[-4000:]
    assert "Traceback" not in text and "DONE" in text, text[-4000:]


def test_auto_load_through_pv_plugin_path(tmp_path):
    script = tmp_path / "auto.py"
    script.write_text(
        "from paraview.simple import OpenDataFile\n"
        f"r = OpenDataFile({small_nvc()!r})\n"
        "print('READER', r.GetXMLName())\n")
    env = pv_env()
    env["PV_PLUGIN_PATH"] = str(REPO / "plugin")
    proc, text = run([PVPYTHON, script], env=env)
    assert "READER NeuralVolumeReader" in text, text[-4000:]


def test_auto_load_through_plugin_config_xml(tmp_path):
    template = (REPO / "xml" / "neuralvol.plugins.xml.in").read_text()
    config = tmp_path / "neuralvol.plugins.xml"
    config.write_text(template.replace("@NEURALVOL_PLUGIN_DIR@", str(REPO / "plugin")))
    script = tmp_path / "auto.py"
    script.write_text(
        "from paraview.simple import OpenDataFile\n"
        f"r = OpenDataFile({small_nvc()!r})\n"
        "print('READER', r.GetXMLName())\n")
    env = pv_env()
    env["PV_PLUGIN_CONFIG_FILE"] = str(config)
    proc, text = run([PVPYTHON, script], env=env)
    assert "READER NeuralVolumeReader" in text, text[-4000:]


def decode_pieces_on_two_ranks(path, outdir):
    """Run pv_pieces.py on two MPI ranks; return each rank's report line, rank order."""
    outdir.mkdir(exist_ok=True)
    proc, text = run(["mpiexec", "-n", "2", PVBATCH, "--symmetric", SCRIPTS / "pv_pieces.py",
                      PLUGIN, path, outdir])
    reports = [outdir / f"rank{r}.txt" for r in range(2)]
    assert all(f.exists() for f in reports), text[-4000:]
    lines = [f.read_text().strip() for f in reports]
    assert all(l.startswith("RANK ") and l.endswith(" OK") for l in lines), lines
    return lines


@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="mpiexec not installed")
def test_mpi_pvbatch_decodes_each_piece_only(tmp_path):
    lines = decode_pieces_on_two_ranks(small_nvc(), tmp_path / "ranks")
    import neuralvol as nv
    total = 1
    for n in nv.open(small_nvc()).dims:
        total *= n
    extents, points = [], []
    for line in lines:
        words = line.split()
        extents.append(tuple(int(v) for v in words[3:9]))
        points.append(int(words[10]))
    assert extents[0] != extents[1]
    assert all(p < 0.6 * total for p in points), points  # each rank decoded about half
    assert sum(points) >= total


@pytest.mark.skipif(shutil.which("mpiexec") is None, reason="mpiexec not installed")
def test_mpi_pvbatch_ranks_decode_only_their_bricks(tmp_path, headsq):
    import numpy as np
    from neuralvol.bricks import compress_bricked
    data = np.ascontiguousarray(headsq[20:52, 16:48, 16:48])
    path = tmp_path / "bricked.nvc"
    compress_bricked(data, (16, 16, 8), ratio=10, overlap=2, workers=0, steps=4, record_timings=False).save(path)
    lines = decode_pieces_on_two_ranks(path, tmp_path / "ranks")
    bricks = [int(l.split()[12]) for l in lines]
    assert all(0 < b < 16 for b in bricks), bricks   # of 2 x 2 x 4 bricks, each rank decodes its own


@pytest.mark.skipif(XVFB is None, reason="Xvfb not installed")
def test_headless_volume_rendering_is_not_blank(tmp_path):
    png = tmp_path / "volume.png"
    proc, text = run_on_x([PVBATCH, "--force-offscreen-rendering", SCRIPTS / "pv_render.py",
                           PLUGIN, small_nvc(), png], "1024x768x24")
    assert proc.returncode == 0 and png.exists(), text[-4000:]
    frac = float(next(l for l in text.splitlines() if l.startswith("NONBLANK")).split()[1])
    assert frac > 0.02


@pytest.mark.skipif(XVFB is None or shutil.which("paraview") is None,
                    reason="Xvfb or the paraview GUI not installed")
def test_gui_auto_loads_the_plugin(tmp_path):
    """The Qt GUI (under Xvfb) auto-loads the plugin through PV_PLUGIN_PATH + the shim."""
    result = tmp_path / "gui.txt"
    script = tmp_path / "gui.py"
    script.write_text(
        "from paraview.simple import OpenDataFile, Show, Render\n"
        f"r = OpenDataFile({small_nvc()!r})\n"
        "Show(r); Render()\n"
        f"open({str(result)!r}, 'w').write('READER %s' % r.GetXMLName())\n")
    proc, text = run_on_x(["paraview", f"--script={script}", "--exit"], "1280x900x24",
                          env_update={"PV_PLUGIN_PATH": str(REPO / "plugin")}, timeout=180)
    assert result.exists(), text[-4000:]
    assert result.read_text() == "READER NeuralVolumeReader"


@pytest.fixture(scope="module")
def pvpython_field_checks(tmp_path_factory):
    out = tmp_path_factory.mktemp("pvfields")
    proc, text = run([PVPYTHON, SCRIPTS / "pv_fields.py", PLUGIN, out])
    return proc.returncode, text


@pytest.mark.parametrize("check", ["vector_file_is_a_three_component_array",
                                   "writer_saves_several_arrays_and_vectors", "series_times_and_data_time_step"])
def test_pvpython_fields(pvpython_field_checks, check):
    rc, text = pvpython_field_checks
    if f"PASS {check}" not in text:
        pytest.fail(f"pvpython check {check} did not pass:\n{text[-6000:]}")
