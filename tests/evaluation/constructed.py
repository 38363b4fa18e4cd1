"""Evaluation folders with results whose answer is known, built without running a model; and
small phantom radiographs for the runs that do need one.

Each run's test probabilities are constructed to have an exact AUROC: negatives score at ranks
0..n-1, and each positive is placed above a chosen number of negatives.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from medcontrast.config import EvaluateConfig, from_dict, save_config
from medcontrast.evaluation.folder import DATASET, INITS, LABELS, RESULTS, prediction_path
from medcontrast.phantoms.anatomy import chest_anatomy, chest_radiograph, consolidation_site

N = 100  # positives and negatives of the constructed test split


def labels(n: int = N) -> np.ndarray:
    return np.repeat([0, 1], n)


def probabilities_with_auroc(auroc: float, n: int = N, seed: int = 0) -> np.ndarray:
    """(2n, 2) probabilities for :func:`labels` whose AUROC is ``auroc`` (to 1/n^2); ``seed``
    shuffles which positive ranks where, so two runs with one AUROC still differ case by case."""
    rng = np.random.default_rng(seed)
    total = round(auroc * n * n)  # positive-negative pairs ranked right
    # Positives spread over the ranks (as a real classifier's are), then nudged to the exact sum.
    mean = total / n
    width = min(mean, n - mean)
    above = np.round(mean + width * np.linspace(-1, 1, n)).astype(int)
    while (gap := total - above.sum()) != 0:
        movable = np.flatnonzero(above < n) if gap > 0 else np.flatnonzero(above > 0)
        above[rng.choice(movable)] += np.sign(gap)
    above = rng.permutation(above)
    neg = np.arange(n, dtype=float)
    pos = above - 0.5
    score = (np.concatenate([neg, pos]) + 1) / (n + 1)
    return np.stack([1 - score, score], 1)


def write_folder(
    folder: Path,
    curves: dict[tuple[str, str], dict[int, float]],
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4),
    spread: float = 0.005,
    groups: np.ndarray | None = None,
    bootstrap: int = 300,
) -> Path:
    """An evaluation folder whose run (init, protocol) at a budget of ``labels`` images has test
    (and validation) AUROC ``curves[(init, protocol)][labels]`` on average over seeds, with a
    seed-to-seed standard deviation near ``spread``.

    Inits named "random*" are random initialisations. Budgets are shots named by their labels.
    """
    folder.mkdir(parents=True)
    cfg = from_dict(
        EvaluateConfig,
        {
            "protocols": sorted({p for _, p in curves}),
            "budgets": {"seeds": list(seeds)},
            "bootstrap": bootstrap,
            "metrics": ["auroc"],
        },
    )
    save_config(cfg, folder / "config.yaml")
    y = labels()
    groups = np.arange(len(y)) if groups is None else groups
    np.savez(folder / LABELS, y_val=y, y_test=y, test_groups=groups)
    dataset = {"classes": ["normal", "disease"], "positive": 1, "manifest": "m.csv", "failed": 0}
    dataset["table"] = [{"split": "test", "normal": f"{N}", "disease": f"{N}"}]
    (folder / DATASET).write_text(json.dumps(dataset))
    inits = sorted({i for i, _ in curves})
    (folder / INITS).write_text(
        json.dumps(
            [
                {
                    "name": i,
                    "kind": "random" if i.startswith("random") else "pretrained",
                    "source": "random" if i.startswith("random") else f"runs/{i}",
                    "encoder": {"name": "timm:resnet18"},
                    "notes": [],
                }
                for i in inits
            ]
        )
    )
    rows = []
    for r, ((init, protocol), curve) in enumerate(curves.items()):
        for n_labels, auroc in curve.items():
            budget = f"{n_labels}-shot"
            rng = np.random.default_rng([r, n_labels])
            z = rng.standard_normal(len(seeds)) if len(seeds) > 1 else np.zeros(1)
            offsets = spread * (z - z.mean())  # the mean over seeds is ``auroc`` (to 1/n^2)
            for k, s in enumerate(seeds):
                value = auroc + offsets[k]
                prob = probabilities_with_auroc(value, seed=1000 * r + n_labels + k)
                for split in ("test", "val"):
                    path = prediction_path(folder, init, protocol, budget, s, split)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    np.save(path, prob)
                run = {
                    "init": init,
                    "protocol": protocol,
                    "budget": budget,
                    "budget_kind": "shots",
                    "budget_value": n_labels,
                    "labels_used": n_labels,
                    "patients_used": n_labels,
                    "seed": s,
                    "note": "",
                }
                # A run's rows end with its "seconds" row, as evaluate writes them.
                rows.append({**run, "metric": "auroc", "value": value})
                rows.append({**run, "metric": "seconds", "value": 1.0})
    pd.DataFrame(rows).to_csv(folder / RESULTS, index=False)
    return folder


def phantom_images(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 1, size, size) phantom chest radiographs, every second with a consolidation, scaled
    to zero mean and unit variance per image as the cache's 2D intensity does; labels (n,)."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    imgs = []
    for k in y:
        site = consolidation_site(rng) if k else None
        img = chest_radiograph(rng, chest_anatomy(rng), site, shape=(size, size))
        imgs.append((img - img.mean()) / (img.std() + 1e-6))
    return np.stack(imgs)[:, None].astype(np.float32), y
