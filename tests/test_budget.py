"""The byte budget (neuralvol.bitstream.budget): rate control fills the budget and never exceeds it."""
import dataclasses
import time

import pytest

import neuralvol as nv

from neuralvol import quantise
from neuralvol.bitstream import budget as sizing


def test_rate_control_fits_the_budget_and_uses_it(quantised_crop):
    field = quantised_crop.network
    flat = quantise.flat_tensors(field)
    for budget in (800, 1500, 2500):
        groups = quantise.parameter_groups(field)
        step = sizing.steps_for_budget(groups, flat, budget)
        size = sizing.coded_size(quantise.quantise(groups, flat), quantise.segmentations(groups))
        assert size <= budget
        # a 10 % finer step no longer fits: the budget is (nearly) used, not wasted
        quantise.assign_steps(groups, flat, step / 1.1)
        assert sizing.coded_size(quantise.quantise(groups, flat), quantise.segmentations(groups)) > budget * 0.97
    # with room to spare the steps stop at the finest that int16 symbols allow
    groups = quantise.parameter_groups(field)
    step = sizing.steps_for_budget(groups, flat, 10 ** 6)
    assert step == pytest.approx(quantise.finest_table_step(groups, flat), rel=1e-4)
    assert sizing.steps_for_budget(quantise.parameter_groups(field), flat, 5) is None


def test_small_files_trial_both_plans_inside_the_time_budget(head_mr):
    """Under CURVE_MIN_BUDGET the network planned for the whole budget and the one planned
    with the curve's reserve are both tried; the file is one of them, fits its bytes, the
    call keeps its time budget and progress runs once from 0 to 1."""
    from neuralvol.bitstream.records import worst_case_training
    nbytes = head_mr.nbytes // 400
    assert nbytes < sizing.CURVE_MIN_BUDGET
    info = nv.compress(head_mr, size=nbytes, steps=1, seed=0).info
    worst = worst_case_training("cpu", record_timings=True, seed=0)
    larger = sizing.plan_architecture(info, nbytes, dataclasses.replace(worst, curve=[]), "hashgrid", "quantised")
    smaller = sizing.plan_architecture(info, nbytes, worst, "hashgrid", "quantised")
    assert larger.n_params > smaller.n_params
    # with steps there is no trial: the larger network gets them all
    assert nv.compress(head_mr, size=nbytes, steps=20, seed=0).config == larger
    fractions = []
    start = time.perf_counter()
    vol = nv.compress(head_mr, size=nbytes, time_budget=3.0, seed=0, progress=lambda p: fractions.append(p.fraction))
    elapsed = time.perf_counter() - start
    assert vol.config in (larger, smaller) and vol.nbytes <= nbytes
    assert elapsed <= 3.0 * 1.05 + 1.0, f"compress took {elapsed:.2f} s for a 3 s budget"
    assert fractions == sorted(fractions) and fractions[-1] == 1.0 and fractions[0] < 0.2
