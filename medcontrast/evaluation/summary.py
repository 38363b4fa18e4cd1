"""From per-run predictions to a summary: mean and std over seeds, 95% bootstrap intervals, and
the paired difference against random initialisation.

The bootstrap resamples the test set (one shared set of resamples for every row, so intervals
of different initialisations are paired) and averages over seeds inside each resample, so the
interval covers both the test-set sampling and the seed-to-seed spread of label budgets.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from medcontrast.evaluation.metrics import bootstrap_weights, percentile_interval, weighted_metrics


def summarise(
    results: pd.DataFrame,
    load_prediction: Callable[[str, str, str, int], np.ndarray],
    y_test: np.ndarray,
    metrics: list[str],
    reference: str | None,
    n_boot: int = 1000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (init, protocol, budget, metric).

    Args:
        results: long results table (see evaluate.RESULT_COLUMNS).
        load_prediction: (init, protocol, budget, seed) -> test probabilities (n_test, C).
        reference: the random-initialisation name for paired differences (None: no differences).
    """
    res = results[results["metric"].isin(metrics)]
    weights = bootstrap_weights(len(y_test), n_boot, seed)
    keys = res[["init", "protocol", "budget", "budget_kind", "budget_value"]].drop_duplicates()
    boot: dict[tuple[str, str, str], dict[int, dict[str, np.ndarray]]] = {}
    for _, k in keys.iterrows():
        seeds = sorted(
            res[
                (res["init"] == k["init"])
                & (res["protocol"] == k["protocol"])
                & (res["budget"] == k["budget"])
            ]["seed"].unique()
        )
        boot[(k["init"], k["protocol"], k["budget"])] = {
            s: weighted_metrics(
                y_test, load_prediction(k["init"], k["protocol"], k["budget"], s), weights, metrics
            )
            for s in seeds
        }
    rows = []
    for _, k in keys.iterrows():
        sub = res[
            (res["init"] == k["init"])
            & (res["protocol"] == k["protocol"])
            & (res["budget"] == k["budget"])
        ]
        per_seed = boot[(k["init"], k["protocol"], k["budget"])]
        ref = boot.get((reference, k["protocol"], k["budget"])) if reference else None
        for m in metrics:
            vals = sub[sub["metric"] == m].set_index("seed")["value"]
            boot_mean = np.mean([per_seed[s][m] for s in vals.index], axis=0)
            lo, hi = percentile_interval(boot_mean)
            row = {
                "init": k["init"],
                "protocol": k["protocol"],
                "budget": k["budget"],
                "budget_kind": k["budget_kind"],
                "budget_value": k["budget_value"],
                "labels_used": float(sub["labels_used"].mean()),
                "metric": m,
                "mean": float(vals.mean()),
                "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0,
                "n_seeds": len(vals),
                "ci_low": lo,
                "ci_high": hi,
            }
            if ref is not None and k["init"] != reference:
                common = [s for s in vals.index if s in ref]
                ref_vals = res[
                    (res["init"] == reference)
                    & (res["protocol"] == k["protocol"])
                    & (res["budget"] == k["budget"])
                    & (res["metric"] == m)
                ].set_index("seed")["value"]
                diffs = vals.loc[common] - ref_vals.loc[common]
                boot_diff = np.mean([per_seed[s][m] - ref[s][m] for s in common], axis=0)
                dlo, dhi = percentile_interval(boot_diff)
                row.update(
                    {
                        "diff_vs_random": float(diffs.mean()),
                        "diff_std": float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0,
                        "diff_ci_low": dlo,
                        "diff_ci_high": dhi,
                    }
                )
            rows.append(row)
    cols = [
        "init",
        "protocol",
        "budget",
        "budget_kind",
        "budget_value",
        "labels_used",
        "metric",
        "mean",
        "std",
        "n_seeds",
        "ci_low",
        "ci_high",
        "diff_vs_random",
        "diff_std",
        "diff_ci_low",
        "diff_ci_high",
    ]
    return pd.DataFrame(rows).reindex(columns=cols)
