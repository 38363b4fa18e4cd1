"""The evaluation's progress weighs each run by its expected cost, not one run = one unit."""

from __future__ import annotations

import io

import pytest
from tqdm import tqdm

from medcontrast.evaluation.job_cost import WeightedProgress, finetune_cost, probe_cost


def test_a_fine_tune_costs_its_epochs_of_training_steps_and_passes():
    # 100 images, batch 32: 4 steps of 32 a epoch (3 passes each) + 50 validation, then 80 test
    assert finetune_cost(100, 50, 80, 10, 32, 1) == 10 * (3 * 4 * 32 + 50) + 80
    # a handful of images still trains min_steps_per_epoch steps, of the images there are
    assert finetune_cost(4, 0, 0, 1, 32, 10) == 3 * 10 * 4


def test_a_probe_costs_far_less_than_a_fine_tune_of_the_same_images():
    ft = finetune_cost(100, 50, 80, 30, 64, 10)
    assert probe_cost("linear", 100, 130, 4) < ft / 1000
    assert probe_cost("knn", 100, 130, 4) < probe_cost("linear", 100, 130, 4)


def _bar(total: float) -> tqdm:
    return tqdm(total=total, disable=False, file=io.StringIO())


@pytest.mark.parametrize("parts", [[], [0.5], [0.25, 0.5, 0.5, 2.0]])
def test_the_bar_moves_by_cost_and_a_run_ends_at_its_whole_cost(parts):
    costs = {"probe": 1.0, "finetune": 99.0}
    bar = _bar(sum(costs.values()))
    progress = WeightedProgress(bar, costs)
    assert bar.total == 100
    progress.finished("probe", "probe done")
    assert bar.n == 1  # 1% of the work, not half of the runs
    for share in parts:  # epochs report their share; going back or past the end does not
        progress.part("finetune", share, "epoch")
    assert bar.n == 1 + 99 * min(max(parts, default=0), 1.0)
    progress.finished("finetune", "finetune done")  # early stopping: the rest at once
    assert bar.n == 100 and progress.done == 2
    assert bar.postfix == "2/2 runs, finetune done"
