"""The byte budget (neuralvol.bitstream.budget): rate control fills the budget and never exceeds it."""
import pytest

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
