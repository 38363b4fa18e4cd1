"""Runs that did not learn, said out loud: constant or saturated predictions, features without
variance.

A network whose every prediction is the same row, or 0 and 1 for every image, scores AUROC 0.5
(or a meaningless value) and looks like a weak baseline in a table; a frozen encoder whose
features do not vary makes every probe a coin and crashed the embedding map (t-SNE divides by
the spread). Each such run gets a note in ``results.csv``; the report marks it and the headline
refuses to report a saving against a baseline that failed to learn.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

CONSTANT = "constant predictions"  # every image the same probabilities
SATURATED = "saturated predictions"  # (nearly) every image at probability 0 or 1
NO_VARIANCE = "features without variance"  # frozen features equal for every image
FAILED = (CONSTANT, SATURATED, NO_VARIANCE)
SATURATED_SHARE = 0.99  # of the images at probability >= 1 - 1e-6 for some class


def prediction_problems(prob: np.ndarray, split: str) -> list[str]:
    """Notes for probabilities (n, C) that say nothing: one row for every image (n > 1), or
    nearly every image at probability 0 or 1 (float32's rounding of a logit gap above ~14).
    A trained network is rarely that sure of 99% of its images; a head whose logits exploded
    always is."""
    if len(prob) < 2:
        return []
    if float(np.ptp(prob, axis=0).max()) < 1e-6:
        return [f"{CONSTANT} on {split}"]
    if float((prob.max(1) >= 1 - 1e-6).mean()) >= SATURATED_SHARE:
        return [f"{SATURATED} on {split}"]
    return []


def feature_problem(features: np.ndarray) -> str | None:
    """A note when frozen features (n, D) do not vary across images, else None."""
    if len(features) < 2:
        return None
    spread = features.std(0)
    if float(spread.max()) <= 1e-8 * max(1.0, float(np.abs(features).max())):
        return f"{NO_VARIANCE} (every image gives the same vector)"
    return None


def failed_runs(results: pd.DataFrame, key: tuple[str, str, str]) -> tuple[int, int]:
    """(runs of ``key`` = (init, protocol, budget) whose note says they failed to learn, runs)."""
    init, protocol, budget = key
    rows = results[
        (results["init"] == init)
        & (results["protocol"] == protocol)
        & (results["budget"] == budget)
        & (results["metric"] == "seconds")
    ]
    notes = rows["note"].fillna("").astype(str)
    return int(notes.map(lambda n: any(f in n for f in FAILED)).sum()), len(rows)
