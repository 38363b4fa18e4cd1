"""Per-run scores from saved predictions: point metrics, bootstrap replicates, validation score.

Every metric is computed here from the predictions, with the decision threshold chosen on the
run's own validation predictions, so the report does not depend on how ``results.csv`` was
computed and can be rebuilt after a change of threshold rule.

One set of bootstrap replicates serves every run: replicate ``b`` draws the same patients of the
test split for every initialisation, protocol and budget, which keeps differences paired.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from medcontrast.evaluation.folder import EvalFolder
from medcontrast.evaluation.metric_names import parse_threshold
from medcontrast.evaluation.metrics import (
    bootstrap_weights,
    point_metrics,
    weighted_metrics,
    youden_threshold,
)

RunKey = tuple[str, str, str]  # (init, protocol, budget)


def choose_threshold(
    rule: str, y_val: np.ndarray, val_prob: np.ndarray | None, positive: int
) -> float | None:
    """The decision threshold for a run (None: most probable class).

    ``rule``: "youden" (chosen on validation; None when validation cannot choose one), "argmax",
    or a number in (0, 1) applied to the positive class's probability.
    """
    fixed = parse_threshold(rule)
    if rule != "youden":
        return fixed
    if val_prob is None or len(y_val) == 0:
        return None
    return youden_threshold(y_val, val_prob, positive)


@dataclass
class SeedScore:
    """One run (init, protocol, budget, seed) scored on the test split."""

    point: dict[str, float]
    boot: dict[str, np.ndarray]  # metric -> (B,) values under the shared test resamples
    val: float  # the headline metric on the validation split (NaN without val predictions)
    threshold: float | None


@dataclass
class Scores:
    """All runs of a folder, scored; ``runs[(init, protocol, budget)][seed]``."""

    runs: dict[RunKey, dict[int, SeedScore]] = field(default_factory=dict)
    labels: dict[str, float] = field(default_factory=dict)  # budget -> mean labels used
    n_boot: int = 0
    metrics: list[str] = field(default_factory=list)
    missing_val: int = 0  # runs without validation predictions (older folders)

    def seeds(self, key: RunKey) -> list[int]:
        return sorted(self.runs.get(key, {}))

    def mean_and_replicates(self, key: RunKey, metric: str) -> tuple[float, np.ndarray]:
        """A run's test metric averaged over its seeds, and the (B,) bootstrap replicates of
        that mean (test patients and seeds resampled together)."""
        seeds, runs = self.seeds(key), self.runs[key]
        mean = float(np.mean([runs[s].point[metric] for s in seeds]))
        return mean, combined([runs[s].boot[metric] for s in seeds], seeds, self.n_boot)


def score_folder(folder: EvalFolder, seed: int = 0) -> Scores:
    """Score every run of an evaluation folder (bootstrap over test patients)."""
    settings = folder.settings
    metrics = list(dict.fromkeys([settings.headline_metric, *settings.metrics]))
    weights = bootstrap_weights(len(folder.y_test), settings.bootstrap, seed, folder.test_groups)
    res = folder.results
    out = Scores(n_boot=settings.bootstrap, metrics=metrics)
    out.labels = res.groupby("budget")["labels_used"].mean().to_dict()
    head, positive = settings.headline_metric, folder.positive
    runs = res[["init", "protocol", "budget", "seed"]].drop_duplicates()
    for init, protocol, budget, s in runs.itertuples(index=False):
        test = folder.prediction(init, protocol, budget, int(s))
        if test is None:
            continue  # a row without its prediction file: nothing to score
        val = folder.prediction(init, protocol, budget, int(s), "val")
        out.missing_val += val is None
        t = choose_threshold(settings.threshold, folder.y_val, val, positive)
        val_score = (
            point_metrics(folder.y_val, val, [head], t, positive)[head]
            if val is not None and len(folder.y_val)
            else float("nan")
        )
        out.runs.setdefault((init, protocol, budget), {})[int(s)] = SeedScore(
            point=point_metrics(folder.y_test, test, metrics, t, positive),
            boot=weighted_metrics(folder.y_test, test, weights, metrics, t, positive),
            val=val_score,
            threshold=t,
        )
    return out


def seed_resamples(seeds: list[int], n_boot: int) -> np.ndarray:
    """(B, S) counts: each bootstrap replicate also redraws the seeds with replacement, so one
    interval covers test sampling and the seed-to-seed spread of label draws and training.

    Seeded by the seed list, so two runs with the same seeds get the same redraws (paired).
    """
    rng = np.random.default_rng([12345, *seeds])
    s = len(seeds)
    return rng.multinomial(s, np.full(s, 1.0 / s), size=n_boot).astype(np.float64)


def combined(per_seed: list[np.ndarray], seeds: list[int], n_boot: int) -> np.ndarray:
    """(B,) replicates of the mean over seeds: patients and seeds resampled together.

    ``per_seed``: one (B,) array per seed, in the order of ``seeds``.
    """
    counts = seed_resamples(seeds, n_boot)
    stacked = np.stack(per_seed, 1)  # (B, S)
    # A seed drawn zero times contributes nothing, also where its value is NaN.
    return np.where(counts > 0, counts * stacked, 0.0).sum(1) / len(seeds)
