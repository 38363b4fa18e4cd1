"""The report's headline: the best pretrained protocol against the best random initialisation,
budget by budget, each chosen on the validation split and never on the test split.

A frozen random encoder under a linear probe is a baseline no reader has in mind; the strongest
random initialisation is usually the fine-tuned one, so by default every initialisation is
fine-tuned and the headline compares like with like. The verdict follows the interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from medcontrast.evaluation.scores import RunKey, Scores
from medcontrast.evaluation.summary import (
    Difference,
    mean_and_interval,
    paired_difference,
    val_mean,
)

# Used only when no run has a validation score (an empty validation split): fine-tuning first,
# as the strongest protocol by design.
PREFERENCE = ("finetune", "linear", "knn")
PROTOCOL_NAMES = {"linear": "linear probe", "knn": "kNN", "finetune": "fine-tuning"}


@dataclass
class Choice:
    """The run (init, protocol, budget) chosen for a group of initialisations at one budget."""

    key: RunKey
    on_validation: bool  # False: fixed preference, there was no validation score
    passed_over: str = ""  # "finetune" when fine-tuning ran but another protocol won validation

    @property
    def describe(self) -> str:
        init, protocol, _ = self.key
        text = f"{init}, {PROTOCOL_NAMES.get(protocol, protocol)}"
        if self.passed_over:
            text += f", which beat {PROTOCOL_NAMES[self.passed_over]} on validation"
        return text


def best_on_validation(scores: Scores, inits: list[str], budget: str) -> Choice | None:
    """The (init, protocol) of ``inits`` with the best mean validation score at ``budget``."""
    candidates = [k for k in scores.runs if k[0] in inits and k[2] == budget]
    if not candidates:
        return None
    vals = {k: val_mean(scores, k) for k in candidates}
    finite = {k: v for k, v in vals.items() if np.isfinite(v)}
    if finite:
        best = max(finite, key=finite.__getitem__)
        # Say so when a frozen probe beat fine-tuning: the reader expects the fine-tuned baseline.
        tuned = any(k[1] == "finetune" for k in finite) and best[1] != "finetune"
        return Choice(best, True, "finetune" if tuned else "")
    rank = {p: i for i, p in enumerate(PREFERENCE)}
    return Choice(min(candidates, key=lambda k: rank.get(k[1], len(rank))), False)


@dataclass
class Comparison:
    """Pretrained against the strongest random initialisation at one budget."""

    budget: str
    labels: float
    pretrained: Choice
    baseline: Choice
    pretrained_value: tuple[float, float, float]  # mean, ci_low, ci_high
    baseline_value: tuple[float, float, float]
    diff: Difference
    # (runs of the baseline's choice that failed to learn, its runs): see evaluation.degenerate
    baseline_failed: tuple[int, int] = (0, 0)

    @property
    def verdict(self) -> str:
        failed, runs = self.baseline_failed
        if failed:
            return (
                f"no verdict: the random baseline failed to learn in {failed} of {runs} runs "
                "(constant or saturated predictions, or features without variance)"
            )
        return {
            "better": "saves labels",
            "worse": "worse than random initialisation",
        }.get(self.diff.verdict, "no measurable gain")


def compare(
    scores: Scores, pretrained: str, randoms: list[str], budget: str, metric: str
) -> Comparison | None:
    """The headline comparison for one pretrained init at one budget (None: a side not run)."""
    pre = best_on_validation(scores, [pretrained], budget)
    base = best_on_validation(scores, randoms, budget)
    if pre is None or base is None:
        return None
    pre.passed_over = ""  # only the baseline's choice needs saying: readers expect fine-tuning
    diff = paired_difference(scores, pre.key, base.key, metric)
    if diff is None:
        return None
    pm, _, plo, phi = mean_and_interval(scores, pre.key, metric)
    bm, _, blo, bhi = mean_and_interval(scores, base.key, metric)
    return Comparison(
        budget, scores.labels.get(budget, np.nan), pre, base, (pm, plo, phi), (bm, blo, bhi), diff
    )


def sentence(c: Comparison, metric_name: str) -> str:
    """One plain sentence for a comparison, e.g. for the report's headline."""
    pm, plo, phi = c.pretrained_value
    bm, blo, bhi = c.baseline_value
    d = c.diff
    return (
        f"With {c.labels:.0f} labelled images ({c.budget}): pretrained ({c.pretrained.describe}) "
        f"{metric_name} {pm:.3f} (95% CI {plo:.3f}–{phi:.3f}) against {bm:.3f} "
        f"({blo:.3f}–{bhi:.3f}) for the strongest random initialisation ({c.baseline.describe}); "
        f"paired difference {d.mean:+.3f} (95% CI {d.ci_low:+.3f} to {d.ci_high:+.3f}, "
        f"{d.n_seeds} seed{'s' if d.n_seeds != 1 else ''}): **{c.verdict}**."
    )
