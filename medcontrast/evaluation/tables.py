"""The report's tables: results per budget, differences against random initialisation, and the
protocol the validation split chose (pandas tables; :mod:`.report_html` and markdown render
them)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medcontrast.evaluation.headline import PROTOCOL_NAMES, Comparison

METRIC_NAMES = {
    "auroc": "AUROC",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_f1": "macro-F1",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
}


def fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def results_table(summary: pd.DataFrame, metric: str, column: str = "cell") -> pd.DataFrame:
    """Budgets as rows, init x protocol as columns; a budget that was not run says so."""
    sub = summary[summary["metric"] == metric].copy()
    sub["cell"] = [
        f"{fmt(m)} ± {fmt(s)} [{fmt(lo)}–{fmt(hi)}]"
        for m, s, lo, hi in zip(sub["mean"], sub["std"], sub["ci_low"], sub["ci_high"], strict=True)
    ]
    sub["threshold"] = [fmt(t, 2) for t in sub["threshold_mean"]]
    sub["column"] = sub["init"] + " · " + sub["protocol"].map(lambda p: PROTOCOL_NAMES.get(p, p))
    order = sub.drop_duplicates("budget").sort_values("labels_used")["budget"].tolist()
    table = (
        sub.pivot_table(index="budget", columns="column", values=column, aggfunc="first")
        .reindex(order)
        .fillna("not run")
    )
    labels = sub.groupby("budget")["labels_used"].mean().reindex(order)
    table.insert(0, "labels (mean)", [f"{v:.0f}" for v in labels])
    return table.reset_index()


def diff_table(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Each init against random initialisation under the same protocol and budget."""
    sub = summary[(summary["metric"] == metric) & summary["diff_vs_random"].notna()]
    if sub.empty:
        return pd.DataFrame()
    sub = sub.sort_values(["protocol", "labels_used"])
    return pd.DataFrame(
        {
            "init": sub["init"],
            "protocol": sub["protocol"].map(lambda p: PROTOCOL_NAMES.get(p, p)),
            "budget": sub["budget"],
            "difference ± seed std": [
                f"{d:+.3f} ± {s:.3f}"
                for d, s in zip(sub["diff_vs_random"], sub["diff_std"], strict=True)
            ],
            "95% CI (patients and seeds)": [
                f"{lo:+.3f} to {hi:+.3f}"
                for lo, hi in zip(sub["diff_ci_low"], sub["diff_ci_high"], strict=True)
            ],
            "interval": sub["diff_verdict"]
            .map({"better": "above 0", "worse": "below 0"})
            .fillna("includes 0"),
        }
    )


def choice_table(comparisons: list[Comparison]) -> pd.DataFrame:
    """Which protocol the validation split chose, per budget."""
    return pd.DataFrame(
        {
            "budget": [c.budget for c in comparisons],
            "pretrained (chosen on validation)": [c.pretrained.describe for c in comparisons],
            "random initialisation (chosen on validation)": [
                c.baseline.describe for c in comparisons
            ],
            "verdict": [c.verdict for c in comparisons],
        }
    )
