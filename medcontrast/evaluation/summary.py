"""From scored runs to a summary table: mean and std over seeds, 95% intervals that resample
test patients and seeds together, and the paired difference against random initialisation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from medcontrast.evaluation.metrics import percentile_interval
from medcontrast.evaluation.scores import RunKey, Scores, combined

COLUMNS = [
    "init",
    "protocol",
    "budget",
    "labels_used",
    "metric",
    "mean",
    "std",
    "n_seeds",
    "ci_low",
    "ci_high",
    "val_mean",
    "threshold_mean",
    "reference",
    "diff_vs_random",
    "diff_std",
    "diff_ci_low",
    "diff_ci_high",
    "diff_verdict",
]


@dataclass
class Difference:
    """Paired difference a - b over the seeds both ran, with its bootstrap interval."""

    mean: float
    std: float
    ci_low: float
    ci_high: float
    n_seeds: int

    @property
    def verdict(self) -> str:
        """What the interval says, in words (never more than the interval allows)."""
        if not np.isfinite(self.ci_low) or not np.isfinite(self.ci_high):
            return "no interval"
        if self.ci_low > 0:
            return "better"
        if self.ci_high < 0:
            return "worse"
        return "interval includes 0"


def mean_and_interval(
    scores: Scores, key: RunKey, metric: str
) -> tuple[float, float, float, float]:
    """Mean and std over seeds of a run's test metric, and its 95% interval."""
    mean, boot = scores.mean_and_replicates(key, metric)
    vals = [scores.runs[key][s].point[metric] for s in scores.seeds(key)]
    lo, hi = percentile_interval(boot)
    return mean, float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0, lo, hi


def val_mean(scores: Scores, key: RunKey) -> float:
    """The headline metric on the validation split, averaged over seeds (NaN when unknown)."""
    vals = [r.val for r in scores.runs.get(key, {}).values()]
    return float(np.mean(vals)) if vals else float("nan")


def paired_difference(scores: Scores, a: RunKey, b: RunKey, metric: str) -> Difference | None:
    """Difference of two runs on the same budget draws (same seeds), or None without common
    seeds."""
    ra, rb = scores.runs.get(a, {}), scores.runs.get(b, {})
    common = sorted(set(ra) & set(rb))
    if not common:
        return None
    d = np.array([ra[s].point[metric] - rb[s].point[metric] for s in common])
    boot = combined(
        [ra[s].boot[metric] - rb[s].boot[metric] for s in common], common, scores.n_boot
    )
    lo, hi = percentile_interval(boot)
    return Difference(
        float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else 0.0, lo, hi, len(common)
    )


def summarise(scores: Scores, reference: str | None) -> pd.DataFrame:
    """One row per (init, protocol, budget, metric); differences against ``reference`` (a
    random initialisation) with the same protocol and budget."""
    rows = []
    for key, runs in scores.runs.items():
        init, protocol, budget = key
        thresholds = [r.threshold for r in runs.values() if r.threshold is not None]
        for m in scores.metrics:
            mean, std, lo, hi = mean_and_interval(scores, key, m)
            row = {
                "init": init,
                "protocol": protocol,
                "budget": budget,
                "labels_used": scores.labels.get(budget, np.nan),
                "metric": m,
                "mean": mean,
                "std": std,
                "n_seeds": len(runs),
                "ci_low": lo,
                "ci_high": hi,
                "val_mean": val_mean(scores, key),
                "threshold_mean": float(np.mean(thresholds)) if thresholds else np.nan,
            }
            diff = (
                paired_difference(scores, key, (reference, protocol, budget), m)
                if reference and init != reference
                else None
            )
            if diff is not None:
                row.update(
                    reference=reference,
                    diff_vs_random=diff.mean,
                    diff_std=diff.std,
                    diff_ci_low=diff.ci_low,
                    diff_ci_high=diff.ci_high,
                    diff_verdict=diff.verdict,
                )
            rows.append(row)
    return pd.DataFrame(rows).reindex(columns=COLUMNS)
