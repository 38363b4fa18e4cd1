"""Classification metrics, their bootstrap intervals and paired differences.

Point estimates come from scikit-learn. For the bootstrap we need the same metrics under many
resamplings of the test set at once, which scikit-learn cannot do without a Python loop per
resample (minutes per report); :func:`weighted_metrics` computes them for a whole matrix of
resampling weights with NumPy, and the tests check it against scikit-learn.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score, roc_auc_score

METRICS = ("auroc", "accuracy", "balanced_accuracy", "macro_f1")


def point_metrics(
    y: np.ndarray, prob: np.ndarray, names: tuple[str, ...] | list[str] = METRICS
) -> dict[str, float]:
    """Metrics of probabilities ``prob`` (n, C) for integer labels ``y`` (n,), via scikit-learn.

    AUROC is binary for C = 2, else macro one-vs-rest; NaN when the test set lacks a class.
    """
    pred = prob.argmax(1)
    out: dict[str, float] = {}
    for name in names:
        if name == "auroc":
            out[name] = _auroc_sklearn(y, prob)
        elif name == "accuracy":
            out[name] = float(accuracy_score(y, pred))
        elif name == "balanced_accuracy":
            out[name] = float(balanced_accuracy_score(y, pred))
        elif name == "macro_f1":
            out[name] = float(
                f1_score(y, pred, average="macro", labels=np.arange(prob.shape[1]), zero_division=0)
            )
        else:
            raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return out


def _auroc_sklearn(y: np.ndarray, prob: np.ndarray) -> float:
    c = prob.shape[1]
    if len(np.unique(y)) < 2:
        return float("nan")
    if c == 2:
        return float(roc_auc_score(y, prob[:, 1]))
    present = np.unique(y)
    if len(present) < c:
        return float("nan")
    return float(roc_auc_score(y, prob, multi_class="ovr", average="macro", labels=np.arange(c)))


def _binary_auc_weighted(score: np.ndarray, positive: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUROC of one score for each row of weights w (B, n), ties counted half (Mann-Whitney)."""
    order = np.argsort(score, kind="mergesort")
    s, pos, w = score[order], positive[order], w[:, order]
    wp = w * pos
    wn = w * ~pos
    # Group tied scores so that a tie contributes one half.
    _, start = np.unique(s, return_index=True)
    ends = np.append(start[1:], len(s))
    neg_cum = np.cumsum(wn, axis=1)
    neg_before = np.concatenate([np.zeros((w.shape[0], 1)), neg_cum], 1)
    total = np.zeros(w.shape[0])
    for a, b in zip(start, ends, strict=True):
        p_in = wp[:, a:b].sum(1)
        n_before = neg_before[:, a]
        n_in = neg_before[:, b] - neg_before[:, a]
        total += p_in * (n_before + 0.5 * n_in)
    denom = wp.sum(1) * wn.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, total / denom, np.nan)


def weighted_metrics(
    y: np.ndarray,
    prob: np.ndarray,
    weights: np.ndarray,
    names: tuple[str, ...] | list[str] = METRICS,
) -> dict[str, np.ndarray]:
    """Each metric for every row of ``weights`` (B, n): resampling counts of the n test cases.

    With all weights 1 this equals :func:`point_metrics`.
    """
    c = prob.shape[1]
    pred = prob.argmax(1)
    w = weights.astype(np.float64)
    total = w.sum(1)
    out: dict[str, np.ndarray] = {}
    onehot_y = np.eye(c, dtype=bool)[y]
    onehot_p = np.eye(c, dtype=bool)[pred]
    tp = w @ (onehot_y & onehot_p)  # (B, C)
    support = w @ onehot_y
    predicted = w @ onehot_p
    for name in names:
        if name == "auroc":
            if c == 2:
                out[name] = _binary_auc_weighted(prob[:, 1], y == 1, w)
            else:
                aucs = np.stack([_binary_auc_weighted(prob[:, k], y == k, w) for k in range(c)], 1)
                out[name] = aucs.mean(1)
        elif name == "accuracy":
            out[name] = tp.sum(1) / total
        elif name == "balanced_accuracy":
            with np.errstate(invalid="ignore", divide="ignore"):
                recall = tp / support
            present = support > 0
            out[name] = np.nansum(np.where(present, recall, 0), 1) / present.sum(1)
        elif name == "macro_f1":
            denom = support + predicted
            with np.errstate(invalid="ignore", divide="ignore"):
                f1 = np.where(denom > 0, 2 * tp / denom, 0.0)
            out[name] = f1.mean(1)
        else:
            raise ValueError(f"unknown metric {name!r}")
    return out


def bootstrap_weights(n: int, b: int, seed: int = 0) -> np.ndarray:
    """(b, n) multinomial resampling counts of n cases (the classic bootstrap)."""
    rng = np.random.default_rng(seed)
    return rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)
