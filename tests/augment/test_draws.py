"""One draw for every parameter of a batch."""

from __future__ import annotations

import torch

from medcontrast.augment.draws import DrawPlan


def _plan() -> DrawPlan:
    plan = DrawPlan()
    on = plan.coin("step.on", [0.3])
    plan.uniform("step.value", [2.0], [5.0], on, neutral=1.0)
    plan.uniform("points", [4], [10], integer=True)
    return plan


def test_coins_gate_values_and_integers_stay_in_range():
    plan = _plan()
    u = plan.draw(20000, torch.Generator().manual_seed(0), torch.device("cpu"))
    b = plan.parameters(u)
    on = b["step.on"][:, 0]
    assert abs(float(on.mean()) - 0.3) < 0.02
    value = b["step.value"][:, 0]
    assert value[on == 0].eq(1.0).all()
    assert value[on == 1].min() >= 2.0 and value[on == 1].max() < 5.0
    points = b["points"][:, 0]
    assert set(points.tolist()) == set(range(4, 10))


def test_the_largest_uniform_does_not_round_to_the_excluded_top():
    plan = _plan()
    u = torch.full((1, plan.width), 1 - 2**-24)  # the largest value torch.rand returns
    assert float(4 + 6 * u[0, 0]) == 10.0  # float32 rounds it up
    assert plan.parameters(u)["points"].item() == 9
