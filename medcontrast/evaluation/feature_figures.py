"""Figures drawn from frozen features and images, at the end of an evaluation.

They need the cached images and every encoder's features, which the report (built from the
evaluation folder alone) does not have; the report embeds them when they exist.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from medcontrast.evaluation.folder import EMBEDDINGS, RETRIEVAL
from medcontrast.evaluation.inits import Init
from medcontrast.evaluation.plots import embedding_map, retrieval_panel
from medcontrast.evaluation.probes import nearest_neighbours


def feature_figures(
    features: Callable[[Init], np.ndarray],
    images: np.ndarray,
    y: np.ndarray,
    split: dict[str, np.ndarray],
    classes: list[str],
    inits: list[Init],
    folder: Path,
    embedding_plot: bool = True,
    retrieval_queries: int = 6,
) -> None:
    """``embeddings.png`` (a 2D map of test features per init) and ``retrieval.png`` (test
    queries and their nearest labelled training images, one pretrained and one random init).

    ``features(init)``: (n, D) frozen features of all labelled images; ``images`` (n, C, *size);
    ``y`` (n,) class indices; ``split``: row indices of train, val and test.
    """
    tr, te = split["train"], split["test"]
    y_test = y[te]
    if embedding_plot:
        embedding_map(
            {i.name: features(i)[te] for i in inits}, y_test, classes, folder / EMBEDDINGS
        )
    if retrieval_queries <= 0:
        return
    rng = np.random.default_rng(0)
    per_class = max(1, retrieval_queries // len(classes))
    queries = np.concatenate(
        [rng.permutation(np.flatnonzero(y_test == k))[:per_class] for k in range(len(classes))]
    )[:retrieval_queries]
    shown = [i for i in inits if i.kind != "random"][:1] + [i for i in inits if i.kind == "random"][
        :1
    ]
    neighbours = {
        i.name: nearest_neighbours(features(i)[te][queries], features(i)[tr], 5) for i in shown
    }
    retrieval_panel(
        queries,
        neighbours,
        np.asarray(images[te[queries]]),
        images[tr],
        [classes[k] for k in y_test[queries]],
        [classes[k] for k in y[tr]],
        folder / RETRIEVAL,
    )
