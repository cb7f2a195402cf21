"""The package's lazy public names (PEP 562): ``import neuralvol`` imports no torch, and
every name of ``__all__`` resolves to the codec's object on first use."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

import neuralvol as nv
from neuralvol.version import LIBRARY_VERSION

REPO = Path(__file__).resolve().parents[1]


def run_python(code):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_import_and_version_import_no_torch():
    out = run_python("import sys, neuralvol; v = neuralvol.__version__; "
                     "print(v, 'torch' in sys.modules)")
    assert out == f"{LIBRARY_VERSION} False"


def test_public_names_resolve_and_are_listed():
    import neuralvol.volume as volume
    assert nv.open is volume.open and nv.NeuralVolume is volume.NeuralVolume
    assert nv.save_models is volume.save_models and nv.read_header is volume.read_header
    assert set(nv.__all__) <= set(dir(nv))
    for name in nv.__all__:
        assert getattr(nv, name) is not None, name


def test_compress_stays_the_function_after_its_submodule_is_imported():
    # Importing neuralvol.compress sets the submodule as an attribute of the package,
    # which would shadow the lazily resolved function of the same name.
    out = run_python("import sys, neuralvol.compress, neuralvol as nv; print(type(nv.compress).__name__, "
                     "nv.compress is sys.modules['neuralvol.compress'].compress)")
    assert out == "function True"


def test_public_validators_name_the_problem():
    from neuralvol.volume import validate_dims, validate_region
    assert validate_dims([4.0, 5, 6]) == (4, 5, 6)
    assert validate_region(range(6), (10, 10, 10)) == (0, 1, 2, 3, 4, 5)
    for bad, message in (((4, 0, 6), "dims must be three positive integers (x, y, z), got (4, 0, 6)"),
                         ((4, 5), "dims must be three positive integers (x, y, z), got (4, 5)"),
                         ("abc", "dims must be three positive integers (x, y, z), got 'abc'")):
        with pytest.raises(nv.InputError) as err:
            validate_dims(bad)
        assert str(err.value) == message
    with pytest.raises(nv.InputError) as err:
        validate_region((0, 5, 0, 5, 3, 10), (10, 10, 10))
    assert str(err.value) == "region z-range 3..10 is outside 0..9 of the decoded grid"
    with pytest.raises(nv.InputError, match="region must be six integers x0 x1 y0 y1 z0 z1, got 4"):
        validate_region((0, 1, 0, 1), (10, 10, 10))


@pytest.mark.parametrize("module", ["entropy", "adaptive_coding", "budget", "container", "schema", "compact_header"])
def test_each_bitstream_module_imports_first_in_a_fresh_interpreter(module):
    # `import neuralvol; from neuralvol.bitstream import entropy` once failed: entropy
    # imported budget, which imported container, which imported entropy half-made.
    done = subprocess.run([sys.executable, "-c", f"import neuralvol; from neuralvol.bitstream import {module}"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr.strip().splitlines()[-1]
