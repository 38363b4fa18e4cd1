"""Figures drawn from frozen features and images, at the end of an evaluation.

They need the cached images and every encoder's features, which the report (built from the
evaluation folder alone) does not have; the report embeds them when they exist.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from medcontrast.evaluation.degenerate import feature_problem
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
    # Features that do not vary have no map or neighbours (t-SNE divides by their spread and
    # crashed the process once): left out with a note, the others drawn.
    usable = []
    for i in inits:
        problem = feature_problem(features(i))
        if problem:
            print(f"note: {i.name} left out of the embedding and retrieval figures: {problem}")
        else:
            usable.append(i)
    if embedding_plot and usable:
        embedding_map(
            {i.name: features(i)[te] for i in usable}, y_test, classes, folder / EMBEDDINGS
        )
    if retrieval_queries <= 0:
        return
    rng = np.random.default_rng(0)
    per_class = max(1, retrieval_queries // len(classes))
    queries = np.concatenate(
        [rng.permutation(np.flatnonzero(y_test == k))[:per_class] for k in range(len(classes))]
    )[:retrieval_queries]
    shown = [i for i in usable if i.kind != "random"][:1]
    shown += [i for i in usable if i.kind == "random"][:1]
    if not shown:
        return
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
