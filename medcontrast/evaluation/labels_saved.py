"""How many labels pretraining saves: the labels a random initialisation needs to match the
pretrained result, read off the random initialisation's label-efficiency curve.

The curve is interpolated linearly in log(labels) between the budgets that were run and never
extrapolated: when random initialisation does not reach the pretrained result within the budgets,
the answer is "more than N"; when it already does at its smallest budget, "at most N". The
interval repeats the reading for every bootstrap replicate (test patients and seeds resampled
together, paired between the two curves).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medcontrast.evaluation.headline import Comparison, best_on_validation
from medcontrast.evaluation.scores import Scores

MATCH, MORE_THAN, AT_MOST = "match", "more than", "at most"


def crossing(labels: np.ndarray, curve: np.ndarray, target: float) -> tuple[float, str]:
    """Labels at which ``curve`` (over increasing ``labels``) first reaches ``target``.

    Returns (labels, kind): kind MATCH (interpolated in log labels), AT_MOST (reached at the
    first point already; labels = the first point) or MORE_THAN (never; labels = the last).
    """
    labels, curve = np.asarray(labels, float), np.asarray(curve, float)
    reached = np.flatnonzero(curve >= target)
    if reached.size == 0:
        return float(labels[-1]), MORE_THAN
    i = int(reached[0])
    if i == 0:
        return float(labels[0]), AT_MOST
    lo, hi = np.log(labels[i - 1]), np.log(labels[i])
    frac = (target - curve[i - 1]) / (curve[i] - curve[i - 1])
    return float(np.exp(lo + frac * (hi - lo))), MATCH


@dataclass
class LabelsSaved:
    """The labels-saved figure for one pretrained result."""

    budget: str
    pretrained_labels: float
    needed: float
    kind: str
    ci: tuple[tuple[float, str], tuple[float, str]]  # (value, kind) at 2.5% and 97.5%
    target: float  # the pretrained result that the random curve is read at

    @property
    def ratio(self) -> float:
        return self.needed / self.pretrained_labels

    @property
    def interval_allows_none(self) -> bool:
        """True when the interval's low end is no saving (random initialisation matches at
        the pretrained side's own number of labels or fewer)."""
        value, kind = self.ci[0]
        return kind == AT_MOST or value <= self.pretrained_labels

    def sentence(self) -> str:
        p = f"{self.pretrained_labels:.0f}"
        lo, hi = (_labels(v, k) for v, k in self.ci)
        saving = self.kind == MORE_THAN or self.needed > self.pretrained_labels
        if saving and self.interval_allows_none:
            # A point multiplier beside an interval that reaches "no saving" reads as a gain
            # that the data do not show.
            return (
                f"no measurable saving: to match pretraining with {p} labelled images, random "
                f"initialisation needs {lo} to {hi} (95% CI), an interval that includes no "
                "saving at all."
            )
        if self.kind == MORE_THAN:
            what = (
                f"{p} labelled images with pretraining do better than random initialisation "
                f"with up to {self.needed:.0f} (the largest budget run): more than "
                f"{self.ratio:.1f}x the labels would be needed"
            )
        elif self.kind == AT_MOST:
            what = (
                f"random initialisation already matches pretraining with {p} labelled images at "
                f"{self.needed:.0f} or fewer (the smallest budget run): no labels saved"
            )
        elif self.needed <= self.pretrained_labels:
            what = (
                f"random initialisation matches pretraining with {p} labelled images at "
                f"{self.needed:.0f}: no labels saved"
            )
        else:
            what = (
                f"{p} labelled images with pretraining match {self.needed:.0f} without "
                f"({self.ratio:.1f}x as many)"
            )
        return f"{what} (95% CI {lo} to {hi})." if lo != hi else f"{what} (95% CI: {lo})."


def _labels(value: float, kind: str) -> str:
    return f"{value:.0f}" if kind == MATCH else f"{kind} {value:.0f}"


def labels_saved(
    scores: Scores, comparison: Comparison, randoms: list[str], metric: str
) -> LabelsSaved | str:
    """The figure for a headline comparison, or the reason it cannot be given."""
    budgets = complete_budgets(scores, randoms)
    chosen = [c for b in budgets if (c := best_on_validation(scores, randoms, b)) is not None]
    if len(chosen) < 2:
        return (
            "random initialisation was run with all its protocols at fewer than two budgets, "
            "so it has no curve to read"
        )
    x = np.array([scores.labels[c.key[2]] for c in chosen])
    curve = [scores.mean_and_replicates(c.key, metric) for c in chosen]
    y, y_boot = np.array([m for m, _ in curve]), np.stack([b for _, b in curve], 1)  # (K,), (B, K)
    target, t_boot = scores.mean_and_replicates(comparison.pretrained.key, metric)
    needed, kind = crossing(x, y, target)
    reads = [
        crossing(x, y_boot[b], t_boot[b])
        for b in range(scores.n_boot)
        if np.isfinite(t_boot[b]) and np.isfinite(y_boot[b]).all()
    ]
    if not reads:
        return "no bootstrap replicate had a finite value"
    # "At most x" sorts below a match at x, "more than x" above it.
    order = {AT_MOST: -1, MATCH: 0, MORE_THAN: 1}
    reads.sort(key=lambda r: (r[0], order[r[1]]))
    n = len(reads)
    lo, hi = reads[int(np.floor(0.025 * (n - 1)))], reads[int(np.ceil(0.975 * (n - 1)))]
    return LabelsSaved(
        comparison.budget,
        scores.labels[comparison.budget],
        needed,
        kind,
        (lo, hi),
        target,
    )


def complete_budgets(scores: Scores, inits: list[str]) -> list[str]:
    """Budgets (by labels) at which ``inits`` ran every protocol they ran anywhere.

    A budget left out of ``finetune.budgets`` has only the frozen probes of a random encoder, a
    weak baseline; reading the curve there would overstate the labels saved.
    """
    ran: dict[str, set[str]] = {}
    for init, protocol, budget in scores.runs:
        if init in inits:
            ran.setdefault(budget, set()).add(protocol)
    every = set().union(*ran.values()) if ran else set()
    return sorted((b for b, p in ran.items() if p == every), key=scores.labels.__getitem__)
