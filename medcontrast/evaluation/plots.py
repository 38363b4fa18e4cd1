"""Figures of the report: label-efficiency curves, embedding maps and a retrieval panel."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

PALETTE = ["#1b6ca8", "#d1495b", "#00798c", "#edae49", "#66a182", "#8d6a9f"]


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def _log_labels_axis(ax) -> None:
    """A log x axis whose ticks read as plain numbers (1, 2, 5, 10, 20, 50, ...) at any span."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}" if v >= 1 else f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("labelled training images (log scale)")


def _line(ax, x, y, lo, hi, colour: str, label: str, dashed: bool, names=None) -> None:
    ax.plot(x, y, "--" if dashed else "-", marker="o", color=colour, label=label)
    ax.fill_between(x, lo, hi, color=colour, alpha=0.18)
    for xi, yi, n in zip(x, y, names or [], strict=False):
        ax.annotate(
            n,
            (xi, yi),
            textcoords="offset points",
            xytext=(0, 7),
            fontsize=7,
            ha="center",
            color=colour,
        )


def label_efficiency(
    summary: pd.DataFrame,
    metric: str,
    path: Path,
    randoms: list[str],
    comparisons: list = (),
    saved: list = (),
) -> None:
    """Metric against the number of labels, with 95% bands.

    First panel (when there are headline ``comparisons``): at each budget the protocol chosen on
    validation for the pretrained encoder and for random initialisation, and an arrow for each
    labels-saved figure (``saved``). Then one panel per protocol, one line per init. All panels
    share one y range, so their heights compare.
    """
    sub = summary[summary["metric"] == metric]
    protocols = list(dict.fromkeys(sub["protocol"]))
    n = len(protocols) + (1 if comparisons else 0)
    fig, axes = plt.subplots(1, n, figsize=(5.2 * n, 4.4), squeeze=False, sharey=True)
    axes = list(axes[0])
    ylabel = "AUROC" if metric == "auroc" else metric.replace("_", " ")
    if comparisons:
        _headline_panel(axes.pop(0), comparisons, saved)
    inits = list(dict.fromkeys(sub["init"]))
    for ax, protocol in zip(axes, protocols, strict=True):
        for i, init in enumerate(inits):
            d = sub[(sub["protocol"] == protocol) & (sub["init"] == init)].sort_values(
                "labels_used"
            )
            if not d.empty:
                _line(
                    ax,
                    d["labels_used"],
                    d["mean"],
                    d["ci_low"],
                    d["ci_high"],
                    _colour(i),
                    init,
                    init in randoms,
                    list(d["budget"]) if i == 0 else None,
                )
        ax.set_title(f"{protocol} protocol")
    for ax in fig.axes:
        _log_labels_axis(ax)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8, loc="lower right")
    fig.axes[0].set_ylabel(ylabel)
    fig.suptitle(f"Label efficiency: {ylabel} on the test split (mean over seeds, 95% interval)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _headline_panel(ax, comparisons: list, saved: list) -> None:
    """Pretrained and random initialisation, each with its protocol chosen on validation."""
    baseline = "random initialisation (best on validation)"
    lines: dict[str, dict[str, tuple]] = {}  # line -> budget -> (labels, (mean, lo, hi))
    for c in comparisons:
        pretrained = f"{c.pretrained.key[0]} (best on validation)"
        lines.setdefault(pretrained, {})[c.budget] = (c.labels, c.pretrained_value)
        lines.setdefault(baseline, {})[c.budget] = (c.labels, c.baseline_value)
    for i, (label, points) in enumerate(lines.items()):
        ordered = sorted(points.items(), key=lambda kv: kv[1][0])
        x = [labels for _, (labels, _) in ordered]
        mean, lo, hi = zip(*(value for _, (_, value) in ordered), strict=True)
        names = [budget for budget, _ in ordered] if i == 0 else None
        _line(ax, x, mean, lo, hi, _colour(i), label, label == baseline, names)
    for s in saved:
        end = s.needed  # for "more than N", N: the largest budget run
        if end <= s.pretrained_labels:
            continue
        ax.annotate(
            "",
            xy=(end, s.target),
            xytext=(s.pretrained_labels, s.target),
            arrowprops=dict(arrowstyle="->", color="#1a1a1a", lw=1.4),
        )
        text = f"{s.ratio:.1f}x labels" if s.kind == "match" else f"> {s.ratio:.1f}x labels"
        ax.annotate(
            text,
            (np.sqrt(end * s.pretrained_labels), s.target),
            textcoords="offset points",
            xytext=(0, -12),
            ha="center",
            fontsize=8,
        )
    ax.set_title("headline: chosen on validation")


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
                ax.set_title(
                    f"{'✓ same' if same else '✗ other'}: {bank_labels[b]}",
                    fontsize=7,
                    color="#1a7f37" if same else "#b42318",
                    fontweight="normal" if same else "bold",
                )
            r += 1
    fig.suptitle(
        "Nearest labelled training images of test queries (✓ same label, ✗ other label)", fontsize=9
    )
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.35 / rows))
    fig.savefig(path, dpi=100)
    plt.close(fig)
