"""The VTK layer imports the codec (and torch) only when a file is read, so that a Python
without torch (ParaView's own, no PV_VENV) gets a readable VTK error, not an import crash."""
import os
import subprocess
import sys

import pytest

pytest.importorskip("vtkmodules.vtkCommonDataModel")

from neuralvol.version import LIBRARY_VERSION  # noqa: E402
from nvc_files import REPO, small_nvc  # noqa: E402


def run_python(code, *args):
    """``code`` in a fresh interpreter that imports this checkout's neuralvol."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=120)


def test_importing_the_vtk_layer_imports_no_torch():
    proc = run_python(
        "import sys, neuralvol, neuralvol.vtk_algorithms\n"
        "loaded = [m for m in ('torch', 'neuralvol.volume', 'neuralvol.compress') if m in sys.modules]\n"
        "print(neuralvol.__version__, 'loaded=' + ','.join(loaded))\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"{LIBRARY_VERSION} loaded="


def test_reader_without_torch_reports_the_missing_dependency():
    proc = run_python(
        "import sys\n"
        "sys.modules['torch'] = None  # unimportable, as in a Python without torch\n"
        "from neuralvol.vtk_algorithms import NeuralVolumeReader\n"
        "r = NeuralVolumeReader()\n"
        "r.SetFileName(sys.argv[1])\n"
        "r.UpdateInformation()\n"
        "print('HAS_WHOLE_EXTENT', r.GetOutputInformation(0).Has(r.GetExecutive().WHOLE_EXTENT()))\n"
        "print('LAST_ERROR', r.last_error)\n", small_nvc())
    assert proc.returncode == 0, proc.stderr
    message = ("neuralvol cannot be imported in this Python (import of torch halted; None in "
               "sys.modules); inside ParaView set PV_VENV to a venv holding torch==2.13.0")
    assert f"LAST_ERROR {message}" in proc.stdout
    assert "HAS_WHOLE_EXTENT 0" in proc.stdout  # the information pass failed: no extent published
    assert f"NeuralVolumeReader (vtkPythonAlgorithm): {message}" in proc.stderr
    assert "REQUEST_INFORMATION" in proc.stderr and "Traceback" not in proc.stderr
