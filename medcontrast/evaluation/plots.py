"""Figures of the report: label-efficiency curves, embedding maps and a retrieval panel."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

PALETTE = ["#1b6ca8", "#d1495b", "#00798c", "#edae49", "#66a182", "#8d6a9f"]


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def label_efficiency(summary: pd.DataFrame, metric: str, path: Path, reference: str | None) -> None:
    """Metric against the number of labels (log axis), one line per init, 95% interval bands;
    one panel per protocol."""
    sub = summary[summary["metric"] == metric]
    protocols = list(dict.fromkeys(sub["protocol"]))
    fig, axes = plt.subplots(1, len(protocols), figsize=(5.2 * len(protocols), 4.2), squeeze=False)
    inits = list(dict.fromkeys(sub["init"]))
    for ax, protocol in zip(axes[0], protocols, strict=True):
        for i, init in enumerate(inits):
            d = sub[(sub["protocol"] == protocol) & (sub["init"] == init)].sort_values(
                "labels_used"
            )
            if d.empty:
                continue
            style = "--" if init == reference else "-"
            ax.plot(d["labels_used"], d["mean"], style, marker="o", color=_colour(i), label=init)
            ax.fill_between(
                d["labels_used"], d["ci_low"], d["ci_high"], color=_colour(i), alpha=0.18
            )
        ax.set_xscale("log")
        ax.set_xlabel("labeled training images (log scale)")
        ax.set_ylabel(
            metric.replace("_", " ").upper() if metric == "auroc" else metric.replace("_", " ")
        )
        ax.set_title(f"{protocol} protocol")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("Label efficiency (mean over seeds, 95% bootstrap interval)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def embedding_map(
    features: dict[str, np.ndarray],
    labels: np.ndarray,
    classes: list[str],
    path: Path,
    seed: int = 0,
) -> str:
    """2D map of test embeddings per init, coloured by label. UMAP when installed, else t-SNE.

    Returns the method's name.
    """
    try:
        import umap  # type: ignore[import-not-found]

        method = "UMAP"

        def reduce(x: np.ndarray) -> np.ndarray:
            return umap.UMAP(random_state=seed).fit_transform(x)
    except ImportError:
        from sklearn.manifold import TSNE

        method = "t-SNE"

        def reduce(x: np.ndarray) -> np.ndarray:
            perplexity = float(max(2, min(30, (len(x) - 1) // 3)))
            return TSNE(
                n_components=2, perplexity=perplexity, init="pca", random_state=seed
            ).fit_transform(x)

    fig, axes = plt.subplots(1, len(features), figsize=(4.6 * len(features), 4.2), squeeze=False)
    for ax, (name, x) in zip(axes[0], features.items(), strict=True):
        x = (x - x.mean(0)) / (x.std(0) + 1e-6)
        xy = reduce(x)
        for k, c in enumerate(classes):
            m = labels == k
            ax.scatter(xy[m, 0], xy[m, 1], s=10, alpha=0.8, color=_colour(k), label=c)
        ax.set_title(name)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][0].legend(fontsize=8, markerscale=1.5)
    fig.suptitle(f"{method} of test-split embeddings, coloured by label")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return method


def _show(ax, image: np.ndarray) -> None:
    img = np.asarray(image, dtype=np.float32)[0]
    if img.ndim == 3:
        img = img[:, :, img.shape[2] // 2].T[::-1]  # middle axial slice, anterior up
    ax.imshow(img, cmap="gray", vmin=0, vmax=1)
    ax.set_xticks([])
    ax.set_yticks([])


def retrieval_panel(
    queries: np.ndarray,
    neighbours: dict[str, np.ndarray],
    query_images: np.ndarray,
    bank_images: np.ndarray,
    query_labels: list[str],
    bank_labels: list[str],
    path: Path,
    k: int = 5,
) -> None:
    """Each query (a test image) and its k nearest labeled training images, per init."""
    inits = list(neighbours)
    rows = len(queries) * len(inits)
    fig, axes = plt.subplots(rows, k + 1, figsize=(1.6 * (k + 1), 1.75 * rows), squeeze=False)
    r = 0
    for qi in range(len(queries)):
        for name in inits:
            ax = axes[r][0]
            _show(ax, query_images[qi])
            ax.set_title(f"query: {query_labels[qi]}", fontsize=7)
            ax.set_ylabel(name, fontsize=7)
            for j, b in enumerate(neighbours[name][qi][:k]):
                ax = axes[r][j + 1]
                _show(ax, bank_images[b])
                same = bank_labels[b] == query_labels[qi]
                ax.set_title(bank_labels[b], fontsize=7, color="#1a7f37" if same else "#b42318")
            r += 1
    fig.suptitle("Nearest labeled training images of test queries (green: same label)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / rows))
    fig.savefig(path, dpi=100)
    plt.close(fig)
