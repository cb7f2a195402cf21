"""The PSNR-target search (neuralvol.target_psnr): the smallest file reaching a target, or the best one."""
import subprocess
import sys

import numpy as np
import pytest

import neuralvol as nv
from neuralvol.metrics import psnr


def test_psnr_target_finds_a_small_file_that_reaches_it(headsq_crop):
    vol = nv.compress(headsq_crop, psnr=22.0, steps=150, seed=1)
    assert vol.training.target_reached is True
    assert psnr(headsq_crop, vol.decode()) >= 22.0
    assert len(vol.search) >= 2 and vol.ratio > 10  # it searched, and the file is far from the native size
    # the chosen file is the passing trial with the highest ratio
    best_passing = max(r for r, p in vol.search if p >= 22.0)
    assert vol.ratio == pytest.approx(best_passing, rel=0.05)


def test_unreachable_psnr_keeps_the_best_file_and_says_so(headsq_crop, tmp_path):
    npy = tmp_path / "crop.npy"
    np.save(npy, headsq_crop)
    out = tmp_path / "crop.nvc"
    run = subprocess.run([sys.executable, "-m", "neuralvol", "compress", str(npy), str(out), "--psnr", "90",
                          "--steps", "30", "-q"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "warning: target PSNR 90.0 dB not reached" in run.stderr and "kept the best file found" in run.stderr
    vol = nv.open(out)
    assert vol.training.target_reached is False and vol.training.target_psnr == 90.0
