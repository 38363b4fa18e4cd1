"""The headline of a report, what a reader sees first: for each pretrained initialisation the
labels it saves against the strongest random initialisation, each budget's comparison (chosen
on validation, paired over label draws), then the caveats (few test patients, one seed)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medcontrast.evaluation.degenerate import failed_runs
from medcontrast.evaluation.folder import EvalFolder
from medcontrast.evaluation.headline import Comparison, best_on_validation, compare, sentence
from medcontrast.evaluation.labels_saved import LabelsSaved, complete_budgets, labels_saved
from medcontrast.evaluation.provenance import overlap_caveats
from medcontrast.evaluation.scores import Scores
from medcontrast.evaluation.tables import METRIC_NAMES

FEW_PATIENTS = 30  # below this many test patients the headline carries a warning


@dataclass
class Headline:
    """What a reader sees first: labels saved, then each budget's comparison, then caveats."""

    saved: list[LabelsSaved] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)


def _picks(folder: EvalFolder, budgets: list[str]) -> list[str]:
    """Budgets for the labels-saved figure: the smallest and the fraction nearest 10%, never the
    largest (nothing above it to read off)."""
    if len(budgets) < 2:
        return []
    kinds = folder.results.drop_duplicates("budget").set_index("budget")
    picks = [budgets[0]]
    fractions = [b for b in budgets[:-1] if kinds.loc[b, "budget_kind"] == "fraction"]
    if fractions:
        near = min(fractions, key=lambda b: abs(kinds.loc[b, "budget_value"] - 0.1))
        if near not in picks:
            picks.append(near)
    return picks


def build_headline(folder: EvalFolder, scores: Scores) -> Headline:
    out = Headline()
    randoms, pretrained = folder.random_inits(), folder.pretrained_inits()
    run_randoms = [r for r in randoms if any(k[0] == r for k in scores.runs)]
    if not run_randoms:
        out.lines.append(
            "No comparison can be given: the folder holds no random-initialisation runs, the "
            "baseline every figure here is measured against."
        )
        return out
    budgets = sorted(scores.labels, key=scores.labels.__getitem__)
    if not pretrained:
        out.lines.append("No pretrained initialisation in this folder: nothing to compare.")
    for pre in pretrained:
        _compare_init(folder, scores, pre, run_randoms, budgets, out)
    partial = [b for b in budgets if b not in complete_budgets(scores, run_randoms)]
    if partial:
        out.lines.append(
            f"At {', '.join(partial)} random initialisation did not run every protocol (for "
            "example fine-tuning was limited by finetune.budgets), so its baseline there is "
            "weaker than elsewhere and the labels-saved figure does not read it."
        )
    out.lines += _caveats(folder, scores, out.comparisons)
    return out


def _compare_init(
    folder: EvalFolder,
    scores: Scores,
    pre: str,
    randoms: list[str],
    budgets: list[str],
    out: Headline,
) -> None:
    """Labels saved and each budget's comparison for one pretrained init, into ``out``."""
    metric = folder.settings.headline_metric
    name = METRIC_NAMES.get(metric, metric)
    comparisons = {b: c for b in budgets if (c := compare(scores, pre, randoms, b, metric))}
    for c in comparisons.values():
        c.baseline_failed = failed_runs(folder.results, c.baseline.key)
    failed = _failed_baselines(folder, scores, randoms, budgets)
    for b in _picks(folder, budgets):
        if b not in comparisons:
            ls: LabelsSaved | str = f"{pre} or random initialisation was not run there"
        elif failed:
            ls = (
                "the strongest random initialisation failed to learn at "
                f"{', '.join(failed)} (constant or saturated predictions, or features without "
                "variance), so its curve measures a broken baseline, not pretraining"
            )
        else:
            ls = labels_saved(scores, comparisons[b], randoms, metric)
        if isinstance(ls, str):
            out.lines.append(f"Labels saved at {b} ({pre}): not given, {ls}.")
            continue
        out.saved.append(ls)
        text = ls.sentence()
        out.lines.append(
            f"**Labels saved ({pre} against the strongest random initialisation, {name})**: "
            f"{text[0].upper()}{text[1:]}"
        )
    for b in budgets:
        if b in comparisons:
            out.comparisons.append(comparisons[b])
            out.lines.append(sentence(comparisons[b], name))
        else:
            out.lines.append(f"With {b} of the labels: not run for {pre} or random initialisation.")


def _failed_baselines(
    folder: EvalFolder, scores: Scores, randoms: list[str], budgets: list[str]
) -> list[str]:
    """Budgets at which the random initialisation chosen on validation failed to learn in at
    least one run (its note says so: evaluation.degenerate)."""
    out = []
    for b in budgets:
        choice = best_on_validation(scores, randoms, b)
        if choice is not None and failed_runs(folder.results, choice.key)[0]:
            out.append(b)
    return out


def _caveats(folder: EvalFolder, scores: Scores, comparisons: list[Comparison]) -> list[str]:
    lines = overlap_caveats(folder.inits)
    patients = len(np.unique(folder.test_groups))
    if patients < FEW_PATIENTS:
        lines.append(
            f"Caution: the test split holds only {patients} patients, so every interval here is "
            "wide and rests on few people."
        )
    if any(c.diff.n_seeds < 2 for c in comparisons):
        lines.append(
            "One seed only: the intervals cover the test patients but not the spread between "
            "label draws and training runs."
        )
    if any(not (c.pretrained.on_validation and c.baseline.on_validation) for c in comparisons):
        lines.append(
            "No validation score was available, so protocols were not chosen on validation: "
            "fine-tuning is compared first (the strongest protocol by design)."
        )
    if scores.missing_val:
        lines.append(
            f"{scores.missing_val} runs have no validation predictions (an older evaluation): "
            "their decisions use the most probable class, not a threshold chosen on validation."
        )
    return lines
