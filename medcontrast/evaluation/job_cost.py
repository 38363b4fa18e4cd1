"""What each run of an evaluation is expected to cost, so that its progress bar moves with the
work done and its ETA means something.

Counting runs mixes probes that take milliseconds with fine-tunes that take minutes: the bar
would race through the probes and stall on a fine-tune. Costs here are in image passes through
the encoder (a forward pass of one image is 1; a training step's forward and backward about 3,
the usual estimate of backward at twice the forward's FLOPs, Kaplan et al. 2020):

- fine-tuning: for each candidate (mode x learning rate), every training step, a validation
  check every ``eval_every`` steps (batch norm's statistics re-estimated on the unlabelled
  images, then the validation pass) and the test pass; early stopping ends a candidate sooner,
  and the bar then jumps by what it did not need;
- the frozen features of an initialisation (every labelled image once), charged to the first run
  that needs them unless they are on disk already;
- a probe on frozen features: a logistic regression per ``C`` value or a kNN vote, a hundred
  times cheaper per image than the network. Measured on this project's 2-core CPU against a
  ResNet-18 forward pass at 64 px (12 ms an image): a 4-value ``C`` grid on 500 features of
  512 took 11 passes (0.0056 per image and C value), a kNN vote 0.0066 passes per query. The
  same measurement gave a training step 6.9 forward passes an image on the CPU, not 3: on a CPU
  the bar then runs ahead during the feature passes and catches up in the fine-tunes.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import TYPE_CHECKING

from tqdm import tqdm

if TYPE_CHECKING:  # the settings only; the module with torch is not imported for a cost
    from medcontrast.evaluation.finetune import FinetuneConfig

FORWARD, TRAIN = 1.0, 3.0
PROBE_PER_IMAGE_AND_C = 0.0056  # a linear probe's cost per labelled image and C value
KNN_PER_QUERY = 0.0066


def finetune_cost(
    n_train: int, n_val: int, n_test: int, n_norm: int, settings: FinetuneConfig
) -> float:
    """Image passes of one fine-tuning run whose every candidate goes all its steps, with
    ``n_norm`` unlabelled images taking batch norm's statistics before each check."""
    steps, checks = settings.steps, math.ceil(settings.steps / settings.eval_every)
    batch = min(settings.batch_size, max(n_train, 2))
    one = TRAIN * steps * batch + FORWARD * checks * (n_val + n_norm) + FORWARD * n_norm
    return len(settings.candidates()) * one + n_test


def probe_cost(protocol: str, n_train: int, n_queries: int, c_values: int) -> float:
    """Image-pass equivalents of a frozen-feature probe (linear or kNN)."""
    if protocol == "linear":
        return PROBE_PER_IMAGE_AND_C * n_train * c_values
    return KNN_PER_QUERY * n_queries


class WeightedProgress:
    """Moves ``bar`` (made with ``total=sum(costs.values())``) by each run's own cost, a
    fine-tune epoch by epoch; the postfix counts runs and says what is running."""

    def __init__(self, bar: tqdm, costs: dict[Hashable, float]) -> None:
        self.bar, self.costs, self.moved = bar, costs, dict.fromkeys(costs, 0.0)
        self.done = 0

    def part(self, key: Hashable, share: float, say: str) -> None:
        """Run ``key`` has done ``share`` (0-1) of its expected work; ``say`` how it goes."""
        self._move(key, min(share, 1.0) * self.costs[key])
        self._say(say)

    def finished(self, key: Hashable, say: str) -> None:
        """Run ``key`` is done: the bar takes the rest of its cost."""
        self._move(key, self.costs[key])
        self.done += 1
        self._say(say)

    def _move(self, key: Hashable, to: float) -> None:
        step = to - self.moved[key]
        if step > 0:
            self.moved[key] = to
            self.bar.update(step)

    def _say(self, what: str) -> None:
        self.bar.set_postfix_str(f"{self.done}/{len(self.costs)} runs, {what}")
