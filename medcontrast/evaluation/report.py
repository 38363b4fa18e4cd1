"""The evaluation report: summary.csv, figures, report.md and a self-contained report.html.

Everything in it is aggregate (counts per split and class, metrics): no identifier, pseudonym or
file path of a patient appears.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from medcontrast import __version__
from medcontrast.evaluation.plots import embedding_map, label_efficiency, retrieval_panel
from medcontrast.evaluation.probes import nearest_neighbours
from medcontrast.evaluation.summary import summarise

if TYPE_CHECKING:
    from medcontrast.config import EvaluateConfig
    from medcontrast.evaluation.evaluate import Evaluation
    from medcontrast.evaluation.inits import Init

METRIC_NAMES = {
    "auroc": "AUROC",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_f1": "macro-F1",
}
PROTOCOL_NAMES = {"linear": "linear probe", "knn": "kNN", "finetune": "fine-tuning"}


def _fmt(x: float, digits: int = 3) -> str:
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def data_table(ev: Evaluation) -> pd.DataFrame:
    """Images (and patients) per split and class."""
    t = ev.cache.rows
    rows = []
    for split in ("train", "val", "test"):
        s = t[t["split"] == split]
        row = {"split": split}
        for c in ev.classes:
            sc = s[s["label"] == c]
            row[c] = f"{len(sc)} ({sc['patient'].nunique()})"
        row["total"] = f"{len(s)} ({s['patient'].nunique()})"
        rows.append(row)
    return pd.DataFrame(rows)


def headline(summary: pd.DataFrame, metric: str, protocol: str, reference: str | None) -> list[str]:
    """Plain sentences: the smallest budget and 10% (or the nearest fraction) for each init."""
    sub = summary[(summary["metric"] == metric) & (summary["protocol"] == protocol)]
    if sub.empty or reference is None:
        return []
    budgets = sub.drop_duplicates("budget").sort_values("labels_used")
    picks = [budgets.iloc[0]["budget"]]
    fractions = budgets[budgets["budget_kind"] == "fraction"]
    if not fractions.empty:
        near = fractions.iloc[(fractions["budget_value"] - 0.1).abs().argsort()].iloc[0]["budget"]
        if near not in picks:
            picks.append(near)
    name = METRIC_NAMES.get(metric, metric)
    out = []
    for b in picks:
        ref = sub[(sub["budget"] == b) & (sub["init"] == reference)]
        for _, r in sub[(sub["budget"] == b) & (sub["init"] != reference)].iterrows():
            if ref.empty:
                continue
            rr = ref.iloc[0]
            what = (
                f"{b} of the labels"
                if r["budget_kind"] == "fraction"
                else f"{int(r['budget_value'])} labeled image(s) per class"
            )
            verdict = (
                "better than"
                if r["diff_ci_low"] > 0
                else "worse than"
                if r["diff_ci_high"] < 0
                else "not distinguishable from"
            )
            out.append(
                f"With {what} ({r['labels_used']:.0f} images), the {PROTOCOL_NAMES.get(protocol, protocol)} "
                f"on **{r['init']}** reaches {name} {_fmt(r['mean'])} (95% CI {_fmt(r['ci_low'])}–"
                f"{_fmt(r['ci_high'])}), against {_fmt(rr['mean'])} ({_fmt(rr['ci_low'])}–{_fmt(rr['ci_high'])}) "
                f"with random initialisation: a paired difference of {r['diff_vs_random']:+.3f} "
                f"(95% CI {r['diff_ci_low']:+.3f} to {r['diff_ci_high']:+.3f}), {verdict} random initialisation."
            )
    return out


def results_table(summary: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Budgets as rows, init x protocol as columns: 'mean ± std [ci]'."""
    sub = summary[summary["metric"] == metric].copy()
    sub["cell"] = [
        f"{_fmt(m)} ± {_fmt(s)} [{_fmt(lo)}–{_fmt(hi)}]"
        for m, s, lo, hi in zip(sub["mean"], sub["std"], sub["ci_low"], sub["ci_high"], strict=True)
    ]
    sub["column"] = sub["init"] + " · " + sub["protocol"].map(lambda p: PROTOCOL_NAMES.get(p, p))
    order = sub.drop_duplicates("budget").sort_values("labels_used")["budget"].tolist()
    table = sub.pivot_table(
        index="budget", columns="column", values="cell", aggfunc="first"
    ).reindex(order)
    labels = sub.groupby("budget")["labels_used"].mean().reindex(order)
    table.insert(0, "labels (mean)", [f"{v:.0f}" for v in labels])
    return table.reset_index()


def diff_table(summary: pd.DataFrame, metric: str, reference: str) -> pd.DataFrame:
    sub = summary[(summary["metric"] == metric) & (summary["init"] != reference)].copy()
    if sub.empty:
        return pd.DataFrame()
    sub = sub.sort_values(["protocol", "labels_used"])
    return pd.DataFrame(
        {
            "init": sub["init"],
            "protocol": sub["protocol"].map(lambda p: PROTOCOL_NAMES.get(p, p)),
            "budget": sub["budget"],
            "difference": [
                f"{d:+.3f} ± {s:.3f}"
                for d, s in zip(sub["diff_vs_random"], sub["diff_std"], strict=True)
            ],
            "95% CI": [
                f"{lo:+.3f} to {hi:+.3f}"
                for lo, hi in zip(sub["diff_ci_low"], sub["diff_ci_high"], strict=True)
            ],
            "above 2 x seed std": [
                "yes" if d > 2 * s and d > 0 else "no"
                for d, s in zip(sub["diff_vs_random"], sub["diff_std"], strict=True)
            ],
        }
    )


def _md_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "_(none)_"
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(str(v) for v in r.values) + " |")
    return "\n".join(lines)


def _html_table(df: pd.DataFrame) -> str:
    if df.empty:
        return "<p><em>(none)</em></p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in r.values) + "</tr>"
        for _, r in df.iterrows()
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _md_inline(text: str) -> str:
    """The one piece of markdown used in sentences: **bold**."""
    parts = html.escape(text).split("**")
    return "".join(f"<strong>{p}</strong>" if i % 2 else p for i, p in enumerate(parts))


def write_report(folder: Path, cfg: EvaluateConfig, ev: Evaluation, inits: list[Init]) -> None:
    from medcontrast.evaluation.evaluate import prediction_path

    results = pd.read_csv(folder / "results.csv")
    reference = next((i.name for i in inits if i.kind == "random"), None)
    te = ev.split["test"]
    y_test = ev.y[te]

    def load(init: str, protocol: str, budget: str, seed: int) -> np.ndarray:
        return np.load(prediction_path(folder, init, protocol, budget, seed))

    summary = summarise(results, load, y_test, cfg.metrics, reference, cfg.bootstrap)
    summary.to_csv(folder / "summary.csv", index=False)
    metric = cfg.headline_metric
    figures: list[tuple[str, str, str]] = []
    curve = folder / f"label_efficiency_{metric}.png"
    label_efficiency(summary, metric, curve, reference)
    figures.append(
        (
            curve.name,
            "Label-efficiency curve",
            f"{METRIC_NAMES.get(metric, metric)} on the test split against the number of labeled "
            "training images; bands are 95% bootstrap intervals over test resamples and seeds.",
        )
    )
    frozen = [i for i in inits]
    feats = {i.name: ev.features(i)[te] for i in frozen} if cfg.embedding_plot else {}
    if feats:
        emb = folder / "embeddings.png"
        method = embedding_map(feats, y_test, ev.classes, emb)
        figures.append(
            (
                emb.name,
                f"{method} of test embeddings",
                "Frozen features of the test images, coloured by their label: a good encoder "
                "separates the classes without having seen a label.",
            )
        )
    if cfg.retrieval_queries > 0:
        rng = np.random.default_rng(0)
        per_class = max(1, cfg.retrieval_queries // len(ev.classes))
        queries = np.concatenate(
            [
                rng.permutation(np.flatnonzero(y_test == k))[:per_class]
                for k in range(len(ev.classes))
            ]
        )[: cfg.retrieval_queries]
        tr = ev.split["train"]
        shown = [i for i in inits if i.kind != "random"][:1] + [
            i for i in inits if i.kind == "random"
        ][:1]
        neighbours = {
            i.name: nearest_neighbours(ev.features(i)[te][queries], ev.features(i)[tr], 5)
            for i in shown
        }
        panel = folder / "retrieval.png"
        retrieval_panel(
            queries,
            neighbours,
            np.asarray(ev.cache.array[te[queries]]),
            ev.cache.array[tr],
            [ev.classes[k] for k in y_test[queries]],
            [ev.classes[k] for k in ev.y[tr]],
            panel,
        )
        figures.append(
            (
                panel.name,
                "Nearest-neighbour retrieval",
                "Test images (left) and their five most similar labeled training images in each "
                "encoder's feature space; green titles share the query's label.",
            )
        )

    protocol = cfg.protocols[0]
    lines_headline = headline(summary, metric, protocol, reference)
    notes = sorted(
        {
            n
            for n in results["note"].dropna()
            for n in str(n).split("; ")
            if n and not n.startswith(("C=", "best epoch"))
        }
    )
    init_rows = pd.DataFrame(
        [
            {
                "name": i.name,
                "kind": i.kind,
                "encoder": i.spec.name,
                "source": Path(i.source).name if i.source != "random" else "random",
                "notes": "; ".join(i.notes),
            }
            for i in inits
        ]
    )
    failed = len(ev.cache.failed)
    budgets = ", ".join(b.name for b in ev.budgets)
    md = [
        "# Label-efficiency report",
        "",
        f"medcontrast {__version__}, {datetime.now():%Y-%m-%d %H:%M}. Evaluation folder `{folder.name}`.",
        "",
        "## Headline",
        "",
        *([f"- {s}" for s in lines_headline] or ["- (no comparison with random initialisation)"]),
        "",
        "## What was run",
        "",
        f"- Protocols: {', '.join(PROTOCOL_NAMES.get(p, p) for p in cfg.protocols)}.",
        f"- Label budgets (labeled train split only; stratified by class, whole patients, nested): {budgets}.",
        f"- Seeds: {', '.join(map(str, cfg.budgets.seeds))}; every initialisation uses the same budget draws, "
        "so differences are paired.",
        f"- Metrics on the fixed test split: {', '.join(METRIC_NAMES.get(m, m) for m in cfg.metrics)}; "
        f"95% intervals from {cfg.bootstrap} bootstrap resamples of the test split, averaged over seeds.",
        f"- Images: {cfg.data.ndim}D, resized to {'x'.join(map(str, cfg.data.size))}"
        + (f", modalities {', '.join(cfg.data.modalities)}" if cfg.data.modalities else "")
        + ".",
        "",
        "Initialisations:",
        "",
        _md_table(init_rows),
        "",
        "## Data",
        "",
        f"Labeled images per split and class (patients in brackets), from `{Path(cfg.data.manifest).name}`. "
        "Validation selects settings; the test split is never sampled from.",
        "",
        _md_table(data_table(ev)),
        "",
        *([f"{failed} labeled samples could not be loaded and were left out."] if failed else []),
        "",
        f"## Results: {METRIC_NAMES.get(metric, metric)}",
        "",
        "Mean ± standard deviation over seeds [95% bootstrap interval].",
        "",
        _md_table(results_table(summary, metric)),
        "",
    ]
    if reference:
        md += [
            f"### Paired difference against `{reference}`",
            "",
            _md_table(diff_table(summary, metric, reference)),
            "",
        ]
    for other in cfg.metrics:
        if other != metric:
            md += [
                f"### {METRIC_NAMES.get(other, other)}",
                "",
                _md_table(results_table(summary, other)),
                "",
            ]
    md += ["## Figures", ""]
    for fname, title, caption in figures:
        md += [f"### {title}", "", f"![{title}]({fname})", "", caption, ""]
    md += [
        "## Adjustments and notes",
        "",
        *([f"- {n}" for n in notes] or ["- none"]),
        "",
        "## Reproduce",
        "",
        "```",
        f"medcontrast evaluate --config {folder / 'config.yaml'}",
        "```",
        "",
        "Files: `results.csv` (one row per init, protocol, budget, seed and metric), "
        "`summary.csv`, `config.yaml`, `versions.json`, `predictions/`.",
    ]
    (folder / "report.md").write_text("\n".join(md) + "\n")
    (folder / "report.html").write_text(_html(md, folder, figures))


CSS = """body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1f2328;line-height:1.5}table{border-collapse:collapse;margin:.8em 0;font-size:.88em}
td,th{border:1px solid #d0d7de;padding:.3em .6em;text-align:left}th{background:#f6f8fa}
img{max-width:100%;border:1px solid #d0d7de}code,pre{background:#f6f8fa;padding:.1em .3em}
h1{border-bottom:1px solid #d0d7de}.caption{color:#57606a;font-size:.9em}"""


def _html(md: list[str], folder: Path, figures: list[tuple[str, str, str]]) -> str:
    """Render the report's markdown lines (headings, bullets, tables, images) to one HTML file."""
    images = {f: base64.b64encode((folder / f).read_bytes()).decode() for f, _, _ in figures}
    out, table, in_code, bullets = [], [], False, []

    def flush() -> None:
        if table:
            rows = [r.strip().strip("|").split(" | ") for r in table if not r.startswith("|---")]
            out.append(_html_table(pd.DataFrame(rows[1:], columns=rows[0])))
            table.clear()
        if bullets:
            out.append("<ul>" + "".join(f"<li>{_md_inline(b)}</li>" for b in bullets) + "</ul>")
            bullets.clear()

    for line in "\n".join(md).splitlines():
        if line.startswith("```"):
            flush()
            out.append("</pre>" if in_code else "<pre>")
            in_code = not in_code
        elif in_code:
            out.append(html.escape(line))
        elif line.startswith("|"):
            table.append(line)
        elif line.startswith("- "):
            bullets.append(line[2:])
        else:
            flush()
            if line.startswith("#"):
                level = len(line) - len(line.lstrip("#"))
                out.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
            elif line.startswith("!["):
                name = line[line.index("(") + 1 : -1]
                out.append(
                    f'<img alt="{html.escape(name)}" src="data:image/png;base64,{images[name]}">'
                )
            elif line.strip():
                out.append(f"<p>{_md_inline(line)}</p>")
    flush()
    body = "\n".join(out).replace("`", "")
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>medcontrast report</title>"
        f"<style>{CSS}</style></head><body>{body}</body></html>"
    )
