"""The study commands run end to end on a tiny case with tiny budgets."""
from __future__ import annotations

import numpy as np
import pytest

from neuralvol.cli import main

pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def tiny(head_mr, tmp_path_factory):
    path = tmp_path_factory.mktemp("study") / "tiny.npy"
    np.save(path, np.ascontiguousarray(head_mr[10:26, 10:34, 10:34]))
    return path


def test_study_encodings(tiny, tmp_path, capsys):
    assert main(["study", "encodings", str(tiny), "--ratio", "10", "--time-budget", "0.4", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for kind in ("hashgrid", "frequency", "triangle_wave", "dense_grid", "identity"):
        assert f"| tiny | {kind} |" in out
    assert (tmp_path / "encodings_tiny.png").stat().st_size > 1000


def test_study_gradloss(tiny, tmp_path, capsys):
    assert main(["study", "gradloss", str(tiny), "--weights", "0", "5", "--ratio", "10", "--time-budget", "0.4",
                 "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| tiny | 5 |" in out and "gradient RMSE" in out
    assert (tmp_path / "gradloss_tiny.png").stat().st_size > 1000


def test_study_bad_input(tmp_path, capsys):
    assert main(["study", "gradloss", str(tmp_path / "missing.npy"), "-o", str(tmp_path)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
