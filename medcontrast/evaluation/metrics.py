"""Classification metrics, their bootstrap intervals and paired differences.

Point estimates come from scikit-learn. For the bootstrap we need the same metrics under many
resamplings of the test set at once, which scikit-learn cannot do without a Python loop per
resample (minutes per report); :func:`weighted_metrics` computes them for a whole matrix of
resampling weights with NumPy, and the tests check it against scikit-learn.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from medcontrast.evaluation.metric_names import METRICS


def decide(prob: np.ndarray, threshold: float | None = None, positive: int = 1) -> np.ndarray:
    """Predicted classes (n,) of probabilities (n, C).

    Two classes and a ``threshold``: the positive class when its probability reaches the
    threshold. Otherwise (more classes, or no threshold): the most probable class.
    """
    if threshold is None or prob.shape[1] != 2:
        return prob.argmax(1)
    return np.where(prob[:, positive] >= threshold, positive, 1 - positive)


def youden_threshold(y: np.ndarray, prob: np.ndarray, positive: int = 1) -> float | None:
    """The threshold on the positive class's probability that maximises Youden's J =
    sensitivity + specificity - 1 (Youden, Cancer 1950) on a validation split.

    None when it cannot be chosen: more than two classes, or a split without both classes.
    """
    if prob.shape[1] != 2 or len(np.unique(y)) < 2:
        return None
    fpr, tpr, thresholds = roc_curve(y == positive, prob[:, positive])
    finite = np.isfinite(thresholds)  # the first threshold is +inf (nothing positive)
    j = np.where(finite, tpr - fpr, -np.inf)
    return float(thresholds[int(np.argmax(j))])


def point_metrics(
    y: np.ndarray,
    prob: np.ndarray,
    names: tuple[str, ...] | list[str] = METRICS,
    threshold: float | None = None,
    positive: int = 1,
) -> dict[str, float]:
    """Metrics of probabilities ``prob`` (n, C) for integer labels ``y`` (n,), via scikit-learn.

    AUROC is binary for C = 2, else macro one-vs-rest; NaN when the test set lacks a class.
    Hard decisions follow :func:`decide`. Sensitivity and specificity are those of class
    ``positive`` for two classes, else macro averages of each class against the rest.
    """
    pred = decide(prob, threshold, positive)
    labels = np.arange(prob.shape[1])
    out: dict[str, float] = {}
    for name in names:
        if name == "auroc":
            out[name] = _auroc_sklearn(y, prob)
        elif name == "accuracy":
            out[name] = float(accuracy_score(y, pred))
        elif name == "balanced_accuracy":
            out[name] = float(balanced_accuracy_score(y, pred))
        elif name == "macro_f1":
            out[name] = float(f1_score(y, pred, average="macro", labels=labels, zero_division=0))
        elif name in ("sensitivity", "specificity"):
            out[name] = _sensitivity_specificity(y, pred, len(labels), positive)[name]
        else:
            raise ValueError(f"unknown metric {name!r}; known: {', '.join(METRICS)}")
    return out


def _sensitivity_specificity(
    y: np.ndarray, pred: np.ndarray, n_classes: int, positive: int
) -> dict[str, float]:
    if n_classes == 2:
        recall = recall_score(y, pred, labels=[0, 1], average=None, zero_division=np.nan)
        return {"sensitivity": float(recall[positive]), "specificity": float(recall[1 - positive])}
    sens, spec = [], []
    for k in range(n_classes):
        truth, said = y == k, pred == k
        sens.append(np.mean(said[truth]) if truth.any() else np.nan)
        spec.append(np.mean(~said[~truth]) if (~truth).any() else np.nan)
    return {"sensitivity": float(np.nanmean(sens)), "specificity": float(np.nanmean(spec))}


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
    # Group tied scores so that a tie contributes one half. Each positive counts the negatives
    # below its group plus half of those inside it; gathered for all cases at once (a Python loop
    # over groups took minutes on test sets of thousands of distinct scores).
    _, group, counts = np.unique(s, return_inverse=True, return_counts=True)
    starts = np.concatenate([[0], np.cumsum(counts)])
    neg_before = np.concatenate([np.zeros((w.shape[0], 1)), np.cumsum(wn, axis=1)], 1)
    below = neg_before[:, starts[group]]  # (B, n): negatives strictly below each case's group
    inside = neg_before[:, starts[group + 1]] - below
    total = (wp * (below + 0.5 * inside)).sum(1)
    denom = wp.sum(1) * wn.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, total / denom, np.nan)


def weighted_metrics(
    y: np.ndarray,
    prob: np.ndarray,
    weights: np.ndarray,
    names: tuple[str, ...] | list[str] = METRICS,
    threshold: float | None = None,
    positive: int = 1,
) -> dict[str, np.ndarray]:
    """Each metric for every row of ``weights`` (B, n): resampling counts of the n test cases.

    With all weights 1 this equals :func:`point_metrics` (same threshold and positive class).
    """
    c = prob.shape[1]
    pred = decide(prob, threshold, positive)
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
        elif name in ("sensitivity", "specificity"):
            negatives = total[:, None] - support
            with np.errstate(invalid="ignore", divide="ignore"):
                sens = tp / support
                spec = (negatives - (predicted - tp)) / negatives
            if c == 2:  # specificity of the positive class is the negative class's recall
                out[name] = sens[:, positive] if name == "sensitivity" else sens[:, 1 - positive]
            else:
                both = {"sensitivity": sens, "specificity": spec}[name]
                with np.errstate(invalid="ignore"), warnings.catch_warnings():
                    warnings.simplefilter(
                        "ignore", RuntimeWarning
                    )  # a class absent from a resample
                    out[name] = np.nanmean(both, 1)
        else:
            raise ValueError(f"unknown metric {name!r}")
    return out


def bootstrap_weights(
    n: int, b: int, seed: int = 0, groups: np.ndarray | None = None
) -> np.ndarray:
    """(b, n) resampling counts of n cases.

    Without ``groups``: the classic bootstrap of cases. With ``groups`` (n,) integer cluster ids
    (patients): the cluster bootstrap, which draws whole clusters with replacement and gives each
    case its cluster's count (Field and Welsh, JRSS-B 2007). Images of one patient are correlated,
    so resampling them one by one makes intervals too narrow.
    """
    rng = np.random.default_rng(seed)
    if groups is None:
        return rng.multinomial(n, np.full(n, 1.0 / n), size=b).astype(np.float64)
    codes, inverse = np.unique(groups, return_inverse=True)
    k = len(codes)
    counts = rng.multinomial(k, np.full(k, 1.0 / k), size=b).astype(np.float64)
    return counts[:, inverse]


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(finite, [(1 - level) / 2 * 100, (1 + level) / 2 * 100])
    return float(lo), float(hi)
