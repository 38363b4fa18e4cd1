"""Which weights a fine-tune keeps: the best validation check (early stopping) and, with
WiSE-FT, a mixture of the probe's and the fine-tuned weights."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn


class EarlyStop:
    """Keeps the best check's weights; says stop after ``patience`` checks without a gain."""

    def __init__(self, patience: int) -> None:
        self.patience, self.bad = patience, 0
        self.best_score, self.best_step, self.best_state = -np.inf, 0, None

    def update(self, score: float, step: int, model: nn.Module) -> bool:
        if score > self.best_score:
            self.best_score, self.best_step, self.bad = score, step, 0
            self.best_state = copy.deepcopy(model.state_dict())
            return False
        self.bad += 1
        return self.bad >= self.patience

    def restore(self, model: nn.Module) -> None:
        if self.best_state is not None:
            model.load_state_dict(self.best_state)


@torch.no_grad()
def weight_ensemble(
    model: nn.Module,
    probe: EarlyStop,
    tuned: EarlyStop,
    alphas: list[float],
    val_score: Callable[[], float],
) -> tuple[float, float]:
    """WiSE-FT: load (1 - a) x the probe's weights + a x the best fine-tuned weights for each a
    of ``alphas``, and keep the best on validation (the two ends, a = 0 and 1,
    count with their own scores; a mixture must beat both). Batch norm's running statistics
    are mixed too (``val_score`` may take them anew); integer buffers (batch counts) are the
    fine-tuned network's. Returns the chosen a and its validation score."""
    best = (
        (0.0, probe.best_score) if probe.best_score >= tuned.best_score else (1.0, tuned.best_score)
    )
    for alpha in sorted(set(alphas) - {0.0, 1.0}):
        model.load_state_dict(mix(probe.best_state, tuned.best_state, alpha))
        score = val_score()
        if score > best[1]:
            best = (alpha, score)
    model.load_state_dict(mix(probe.best_state, tuned.best_state, best[0]))
    return best[0], float(best[1])


def mix(start: dict, end: dict, alpha: float) -> dict:
    """(1 - alpha) x start + alpha x end for floating-point tensors; end's for the others."""
    return {
        k: torch.lerp(start[k], v, alpha) if v.is_floating_point() else v for k, v in end.items()
    }
