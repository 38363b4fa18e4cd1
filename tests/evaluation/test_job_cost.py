"""The evaluation's progress weighs each run by its expected cost, not one run = one unit."""

from __future__ import annotations

import io

import pytest
from tqdm import tqdm

from medcontrast.evaluation.finetune import FinetuneConfig
from medcontrast.evaluation.job_cost import WeightedProgress, finetune_cost, probe_cost


def test_a_fine_tune_costs_its_candidates_steps_and_checks():
    one = FinetuneConfig(mode="plain", steps=40, eval_every=10, batch_size=32, lr_factors=[1.0])
    # 40 steps of 32 images (3 passes each); 4 checks of 50 validation + 20 unlabelled images
    # (batch norm), 20 more before training; then 80 test images
    assert finetune_cost(100, 50, 80, 20, one) == 3 * 40 * 32 + 4 * 70 + 20 + 80
    # a handful of images trains its steps on the images there are
    assert finetune_cost(4, 0, 0, 0, one) == 3 * 40 * 4
    # every candidate (2 modes x 3 learning rates) pays its own training
    six = FinetuneConfig(mode="both", steps=40, eval_every=10, batch_size=32)
    assert finetune_cost(4, 0, 0, 0, six) == 6 * 3 * 40 * 4


def test_a_probe_costs_far_less_than_a_fine_tune_of_the_same_images():
    ft = finetune_cost(100, 50, 80, 100, FinetuneConfig(steps=300))
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
