"""Reptile meta-learned initialisation: training, the .nvinit file, compress(init=...), CLI."""
from __future__ import annotations

import numpy as np
import pytest

import neuralvol as nv
from neuralvol.cli import main
from neuralvol.meta import MetaInit, load_init, meta_train

from conftest import DATA

MEDICAL = DATA / "inits" / "medical.nvinit"


@pytest.fixture(scope="module")
def tiny_init(tmp_path_factory, head_mr):
    init = meta_train([head_mr[:16, :16, :16].copy(), head_mr[10:30, 20:40, 5:25].copy()], "small",
                      outer_steps=3, inner_steps=2, seed=1)
    path = tmp_path_factory.mktemp("init") / "tiny.nvinit"
    init.save(path)
    return path


def test_meta_train_writes_loadable_file(tiny_init):
    init = load_init(tiny_init)
    assert init.preset == "small"
    assert init.training["outer_steps"] == 3
    net = init.network()
    assert net.config.n_params > 0


def test_default_meta_training_learns_the_mlp_and_keeps_the_table(tiny_init, head_mr):
    from neuralvol.model import NeuralField
    init = load_init(tiny_init)
    assert init.training["learned"] == "mlp"
    start = NeuralField(init.config, seed=1).named_tensors()
    # the table is the seeded random start (stored as float16); the MLP moved away from it
    np.testing.assert_array_equal(init.tensors["encoding"], start["encoding"].numpy().astype(np.float16))
    assert not np.allclose(init.tensors["mlp"], start["mlp"].numpy().astype(np.float16))
    both = meta_train([head_mr[:16, :16, :16].copy()], "small", outer_steps=2, inner_steps=2, seed=1,
                      learn_table=True)
    assert both.training["learned"] == "all"
    assert not np.array_equal(both.tensors["encoding"], start["encoding"].numpy().astype(np.float16))


def test_init_round_trips_exactly(tiny_init):
    data = tiny_init.read_bytes()
    a = MetaInit.from_bytes(data)
    assert a.to_bytes() == data
    for k, v in load_init(tiny_init).tensors.items():
        assert np.array_equal(v, a.tensors[k])


def test_corrupted_init_is_format_error(tiny_init, tmp_path):
    data = bytearray(tiny_init.read_bytes())
    data[-5] ^= 0xFF
    bad = tmp_path / "bad.nvinit"
    bad.write_bytes(bytes(data))
    with pytest.raises(nv.FormatError):
        load_init(bad)
    trunc = tmp_path / "trunc.nvinit"
    trunc.write_bytes(bytes(data[:40]))
    with pytest.raises(nv.FormatError):
        load_init(trunc)


def test_nvc_is_not_an_init(tmp_path, head_mr):
    path = tmp_path / "a.nvc"
    nv.compress(head_mr, steps=2).save(path)
    with pytest.raises(nv.FormatError, match="not a neuralvol initialisation"):
        load_init(path)


def test_preset_mismatch_is_input_error(tiny_init, head_mr):
    with pytest.raises(nv.InputError, match="preset 'small', not 'medium'"):
        nv.compress(head_mr, steps=2, init=tiny_init, preset="medium")


def test_preset_exceeding_explicit_budget(head_mr):
    with pytest.raises(nv.InputError, match="preset 'large'"):
        nv.compress(head_mr, steps=1, preset="large", ratio=100)


def test_shipped_medical_init_on_headsq(headsq):
    vol = nv.compress(headsq, init=MEDICAL, steps=150)
    assert vol.training.psnr > 27  # measured 29.3 dB (random init: 28.4; study meta, seed 0)


def test_medical_init_beats_random_on_held_out(head_mr, headsq):
    # measured: +0.86 dB (head_mr_small) and +0.59 dB (headsq) after 40 steps
    steps = 40
    for volume in (head_mr, headsq):
        meta = nv.compress(volume, init=MEDICAL, steps=steps, seed=3).training.psnr
        rand = nv.compress(volume, preset="small", steps=steps, seed=3).training.psnr
        assert meta > rand + 0.3, (meta, rand)


def test_cli_init(tmp_path, capsys, tiny_init):
    out = tmp_path / "a.nvc"
    assert main(["compress", str(DATA / "head_mr_small.npy"), str(out), "--init", str(tiny_init),
                 "--steps", "5", "-q"]) == 0
    assert nv.open(out).config == load_init(tiny_init).config
    assert main(["compress", str(DATA / "head_mr_small.npy"), str(out), "--init", str(tiny_init),
                 "--preset", "large", "--steps", "5", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "preset" in err


def test_cli_meta_train(tmp_path, capsys):
    small = tmp_path / "s.npy"
    np.save(small, np.load(DATA / "head_mr_small.npy")[:12, :12, :12])
    out = tmp_path / "m.nvinit"
    assert main(["meta-train", str(small), "--preset", "small", "-o", str(out), "--outer-steps", "2",
                 "--inner-steps", "2", "-q"]) == 0
    assert load_init(out).training["volumes"] == ["s"]
