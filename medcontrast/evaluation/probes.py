"""Frozen-feature protocols: a linear probe (logistic regression) and weighted kNN.

Both take features (n, D) and integer labels, and return class probabilities (n_test, C).
"""

from __future__ import annotations

import sys
import warnings

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from medcontrast.evaluation.metrics import point_metrics
from medcontrast.evaluation.norm_stats import recalibrate_norm
from medcontrast.progress import progress_bar


@torch.no_grad()
def extract_features(
    encoder: torch.nn.Module,
    images: np.ndarray,
    device: torch.device,
    batch_size: int = 256,
    progress: bool = False,
    norm_images: np.ndarray | None = None,
) -> np.ndarray:
    """Pooled encoder features (n, D) of cached images (n, C, *size), in eval mode; with
    ``norm_images`` (m, C, *size) its batch-norm statistics are first re-estimated on them
    (:func:`~medcontrast.evaluation.norm_stats.recalibrate_norm`)."""
    encoder.eval().to(device)
    if norm_images is not None:
        recalibrate_norm(encoder, norm_images, device, batch_size)
    out = []
    bar = progress_bar(
        total=len(images), desc="features", unit="img", disable=not progress, file=sys.stderr
    )
    for i in range(0, len(images), batch_size):
        x = torch.from_numpy(np.asarray(images[i : i + batch_size], dtype=np.float32)).to(device)
        out.append(encoder(x).float().cpu())
        bar.update(len(x))
    bar.close()
    return torch.cat(out).numpy() if out else np.zeros((0, getattr(encoder, "num_features", 0)))


def linear_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    test_x: np.ndarray,
    n_classes: int,
    c_grid: list[float],
    max_iter: int = 2000,
    select_metric: str = "auroc",
) -> tuple[np.ndarray, dict]:
    """L2-regularised logistic regression on standardised features (the usual linear evaluation,
    e.g. Chen et al. 2020), class-balanced; C chosen on the validation split.

    Returns test probabilities (n_test, n_classes) and {"C": chosen value, "val_prob": the chosen
    model's validation probabilities (n_val, n_classes), "model" and "scaler": the fitted
    LogisticRegression and StandardScaler}.
    """
    scaler = StandardScaler().fit(train_x)
    # scikit-learn refuses empty arrays; a manifest may have no validation split.
    tx, vx, sx = (scaler.transform(a) if len(a) else a for a in (train_x, val_x, test_x))
    best, best_c, best_model = -np.inf, c_grid[0], None
    for c in c_grid:
        model = _fit_logreg(tx, train_y, c, max_iter)
        score = (
            point_metrics(val_y, _proba(model, vx, n_classes), [select_metric])[select_metric]
            if len(val_y)
            else 0.0
        )
        score = -np.inf if np.isnan(score) else score
        if score > best or best_model is None:
            best, best_c, best_model = score, c, model
    val_prob = _proba(best_model, vx, n_classes)
    info = {"C": best_c, "val_prob": val_prob, "model": best_model, "scaler": scaler}
    return _proba(best_model, sx, n_classes), info


def _fit_logreg(x: np.ndarray, y: np.ndarray, c: float, max_iter: int) -> LogisticRegression:
    model = LogisticRegression(C=c, max_iter=max_iter, class_weight="balanced")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(x, y)
    return model


def _proba(model: LogisticRegression, x: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities over all classes, also when the budget lacked some class."""
    out = np.zeros((len(x), n_classes))
    if len(x):  # scikit-learn refuses an empty array
        out[:, model.classes_] = model.predict_proba(x)
    return out


def knn_probe(
    train_x: np.ndarray,
    train_y: np.ndarray,
    test_x: np.ndarray,
    n_classes: int,
    k: int = 20,
    temperature: float = 0.07,
) -> np.ndarray:
    """Cosine kNN with similarity-weighted votes exp(s / T) (Wu et al., CVPR 2018), class-balanced
    by dividing each class's votes by its share of the training set.

    Returns test probabilities (n_test, n_classes).
    """
    tr = train_x / np.linalg.norm(train_x, axis=1, keepdims=True).clip(1e-12)
    te = test_x / np.linalg.norm(test_x, axis=1, keepdims=True).clip(1e-12)
    sim = te @ tr.T  # (n_test, n_train)
    k = min(k, len(tr))
    nn = np.argpartition(-sim, k - 1, axis=1)[:, :k]
    s = np.take_along_axis(sim, nn, 1)
    w = np.exp((s - s.max(1, keepdims=True)) / temperature)
    votes = np.zeros((len(te), n_classes))
    np.add.at(votes, (np.repeat(np.arange(len(te)), k), train_y[nn].ravel()), w.ravel())
    prior = np.bincount(train_y, minlength=n_classes) / len(train_y)
    votes = votes / np.where(prior > 0, prior, 1)
    return votes / votes.sum(1, keepdims=True).clip(1e-12)


def nearest_neighbours(query: np.ndarray, bank: np.ndarray, k: int = 5) -> np.ndarray:
    """Indices (n_query, k) of the k most cosine-similar rows of ``bank``."""
    q = query / np.linalg.norm(query, axis=1, keepdims=True).clip(1e-12)
    b = bank / np.linalg.norm(bank, axis=1, keepdims=True).clip(1e-12)
    sim = q @ b.T
    return np.argsort(-sim, axis=1)[:, :k]
