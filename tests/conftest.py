"""Shared fixtures: bundled real volumes and small compressed files made once per session."""
from __future__ import annotations

from pathlib import Path

import os

import numpy as np
import pytest
import torch

import neuralvol as nv

# One intra-op thread: the tests' tensors are small, and on a shared machine a second
# OpenMP thread that is descheduled stalls every parallel op (10x slower seen here).
torch.set_num_threads(int(os.environ.get("NEURALVOL_TEST_THREADS", "1")))

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "data"
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def headsq() -> np.ndarray:
    """The CT head (int16, [93, 64, 64])."""
    return np.load(DATA / "headsq_quarter.npy")


@pytest.fixture(scope="session")
def head_mr() -> np.ndarray:
    """The MR head (uint8, [42, 62, 48])."""
    return np.load(DATA / "head_mr_small.npy")


@pytest.fixture(scope="session")
def headsq_crop(headsq) -> np.ndarray:
    """A 40 x 36 x 30 (x, y, z) block of the CT head: real data, fast to fit."""
    return np.ascontiguousarray(headsq[30:60, 14:50, 12:52])


@pytest.fixture(scope="session")
def crop_volume(headsq_crop) -> nv.NeuralVolume:
    return nv.compress(headsq_crop, spacing=(3.2, 3.2, 1.5), origin=(10.0, -5.0, 2.5), array_name="density",
                       ratio=10, steps=150, seed=3)


@pytest.fixture(scope="session")
def crop_file(crop_volume, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("nvc") / "crop.nvc"
    crop_volume.save(path)
    return path


@pytest.fixture(scope="session")
def quantised_crop(headsq_crop):
    """A quantised 40:1 fit of the crop (storage, container and rate-control tests share it).
    Without a post filter: its weights lie on steps settled for the network's bytes alone (a
    5x5x5 kernel's held-back bytes coarsen them, and the rate-control test re-quantises them)."""
    return nv.compress(headsq_crop, ratio=40, steps=300, seed=2, post_filter=False)
