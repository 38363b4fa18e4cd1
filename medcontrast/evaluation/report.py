"""The evaluation report: summary.csv, the label-efficiency figure, report.md and report.html.

Built from the evaluation folder alone (:class:`~medcontrast.evaluation.folder.EvalFolder`), so
``medcontrast report EVAL_DIR`` rebuilds it in seconds without recomputing a run. Everything in
it is aggregate (counts per split and class, metrics): no identifier, pseudonym or file path of a
patient appears.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pandas as pd

from medcontrast._version import __version__
from medcontrast.evaluation.findings import Headline, build_headline
from medcontrast.evaluation.folder import (
    EMBEDDINGS,
    RETRIEVAL,
    SUMMARY,
    EvalFolder,
    ReportSettings,
)
from medcontrast.evaluation.headline import PROTOCOL_NAMES
from medcontrast.evaluation.plots import label_efficiency
from medcontrast.evaluation.report_html import md_table, render_html
from medcontrast.evaluation.scores import score_folder
from medcontrast.evaluation.summary import summarise
from medcontrast.evaluation.tables import METRIC_NAMES, choice_table, diff_table, results_table

FEATURE_FIGURES = (
    (
        EMBEDDINGS,
        "Map of test embeddings",
        "Frozen features of the test images, coloured by their label: a good encoder separates "
        "the classes without having seen a label.",
    ),
    (
        RETRIEVAL,
        "Nearest-neighbour retrieval",
        "Test images (left) and their five most similar labelled training images in each "
        "encoder's feature space; each title says whether the label matches the query's.",
    ),
)


def write_report(path: str | Path, settings: ReportSettings) -> Headline:
    """Write summary.csv, the label-efficiency figure, report.md and report.html of an
    evaluation folder; returns the headline (for the console)."""
    folder = EvalFolder.read(path, settings)
    settings = folder.settings
    scores = score_folder(folder)
    randoms = [r for r in folder.random_inits() if any(k[0] == r for k in scores.runs)]
    summary = summarise(scores, randoms[0] if randoms else None)
    summary.to_csv(folder.path / SUMMARY, index=False)
    head = build_headline(folder, scores)
    metric = settings.headline_metric
    figures = [_curve_figure(folder, summary, head, metric)]
    figures += [f for f in FEATURE_FIGURES if (folder.path / f[0]).exists()]
    md = _header(folder, head) + _tables(folder, summary, head, metric)
    md += ["## Figures", ""]
    for fname, title, caption in figures:
        md += [f"### {title}", "", f"![{title}]({fname})", "", caption, ""]
    md += _footer(folder)
    (folder.path / "report.md").write_text("\n".join(md) + "\n")
    (folder.path / "report.html").write_text(render_html(md, folder.path, figures))
    return head


def _curve_figure(
    folder: EvalFolder, summary: pd.DataFrame, head: Headline, metric: str
) -> tuple[str, str, str]:
    curve = folder.path / f"label_efficiency_{metric}.png"
    label_efficiency(summary, metric, curve, folder.random_inits(), head.comparisons, head.saved)
    return (
        curve.name,
        "Label-efficiency curve",
        f"{METRIC_NAMES.get(metric, metric)} on the test split against the number of labelled "
        "training images (log scale). The first panel shows, at each budget, the protocol chosen "
        "on the validation split for the pretrained encoder and for random initialisation; the "
        "arrow is the labels saved: how far right the random curve must go to reach the "
        "pretrained result. Bands are 95% intervals resampling test patients and seeds.",
    )


_SCHEDULE = (
    " Every fine-tune runs until validation stops improving (a check every few optimiser steps, "
    "the same maximum and stopping rule for every initialisation), once per candidate learning "
    "rate, the best on validation kept (`note` gives the chosen candidate and its best step; "
    "a run whose best step was its last is marked as possibly not converged). Batch norm takes "
    "its statistics from unlabelled training images before every feature extraction and "
    "prediction, for every initialisation alike."
)
FINETUNE_MODES = {
    "both": " Fine-tuning has two candidates, chosen on validation per run: plain (a new head "
    "and the encoder trained together) and LP-FT (Kumar et al., ICLR 2022: a linear probe on the "
    "frozen encoder, then the whole network from that head; the probe is kept where fine-tuning "
    "did not beat it on validation).",
    "lpft": " Fine-tuning is LP-FT (Kumar et al., ICLR 2022): a linear probe on the frozen "
    "encoder, then the whole network from that head; the probe is kept where fine-tuning did not "
    "beat it on validation.",
    "plain": " Fine-tuning trains a new head and the encoder together from the first step.",
}


_WISE = (
    " Then weights between the probe's and the fine-tuned network's, (1 - a) x probe + a x "
    "fine-tuned, were tried and the best on the validation split kept (WiSE-FT, Wortsman et "
    "al., CVPR 2022; `note` gives a)."
)


def _wise_on(settings: ReportSettings) -> bool:
    return settings.finetune_mode != "plain" and bool(settings.wise_alphas)


def _compute_line(results: pd.DataFrame, timing: list[dict]) -> str:
    """The evaluation's own time: the runs' seconds, summed per kind of protocol, and the
    wall-clock time of the calls of evaluate (less than the sum when fine-tuning runs went
    side by side)."""
    t = results[results["metric"] == "seconds"]
    tuned = t.loc[t["protocol"] == "finetune", "value"].sum()
    line = (
        f"- Compute: {t['value'].sum():.0f} s in {len(t)} runs (fine-tuning {tuned:.0f} s, "
        f"frozen-feature probes {t['value'].sum() - tuned:.0f} s with the features, extracted "
        "once per initialisation)"
    )
    if timing:
        wall = sum(c["seconds"] for c in timing)
        most = max(c.get("finetune_parallel", 1) for c in timing)
        devices = ", ".join(sorted({c.get("device", "?") for c in timing}))
        line += (
            f"; wall-clock {wall:.0f} s in {len(timing)} call(s) of evaluate on {devices}, "
            f"up to {most} fine-tuning run(s) at once"
        )
    return line + "."


def _header(folder: EvalFolder, head: Headline) -> list[str]:
    settings = folder.settings
    rule = {
        "youden": "chosen per run on the validation split by Youden's J",
        "argmax": "the most probable class",
    }.get(settings.threshold, f"fixed at {settings.threshold}")
    seeds = ", ".join(map(str, settings.seeds))
    return [
        "# Label-efficiency report",
        "",
        f"medcontrast {__version__}, {datetime.now():%Y-%m-%d %H:%M}. Evaluation folder `{folder.path.name}`.",
        "",
        "## Headline",
        "",
        "Pretrained against the strongest random initialisation: the same network fine-tuned "
        "with the same recipe, or probed frozen where validation preferred that. Each side's "
        "protocol is chosen on the validation split, never on test; differences are paired over "
        "the same label draws.",
        "",
        *[f"- {s}" for s in head.lines],
        "",
        "## What was run",
        "",
        f"- Protocols: {', '.join(PROTOCOL_NAMES.get(p, p) for p in settings.protocols)}."
        + (
            FINETUNE_MODES.get(settings.finetune_mode, "") + _SCHEDULE
            if "finetune" in settings.protocols
            else ""
        )
        + (_WISE if "finetune" in settings.protocols and _wise_on(settings) else ""),
        "- Label budgets (labelled train split only; stratified by class, whole patients, nested): "
        + ", ".join(folder.results.sort_values("labels_used")["budget"].unique())
        + ".",
        f"- Seeds: {seeds}; every initialisation uses the same budget draws, so differences are paired.",
        f"- Metrics on the fixed test split: {', '.join(METRIC_NAMES.get(m, m) for m in settings.metrics)}. "
        f"Decisions for accuracy-type metrics: {rule}; positive class `{folder.classes[folder.positive]}`.",
        _compute_line(folder.results, folder.timing),
        f"- 95% intervals: {settings.bootstrap} bootstrap replicates, each redrawing the test split's "
        "patients (all images of a patient together) and the seeds.",
        "",
        "Initialisations:",
        "",
        md_table(
            pd.DataFrame(
                [
                    {
                        "name": i["name"],
                        "kind": i["kind"],
                        "encoder": i["encoder"]["name"],
                        "source": Path(i["source"]).name if i["source"] != "random" else "random",
                        "pretrained on": (i.get("pretrained_on") or {}).get("text", ""),
                        "notes": "; ".join(i["notes"]),
                    }
                    for i in folder.inits
                ]
            )
        ),
        "",
        "## Data",
        "",
        f"Labelled images per split and class (patients in brackets), from `{folder.dataset['manifest']}`. "
        "Validation selects settings; the test split is never sampled from.",
        "",
        md_table(pd.DataFrame(folder.dataset["table"])),
        "",
        *(
            [f"{folder.dataset['failed']} labelled samples could not be loaded and were left out."]
            if folder.dataset.get("failed")
            else []
        ),
        "",
    ]


def _tables(folder: EvalFolder, summary: pd.DataFrame, head: Headline, metric: str) -> list[str]:
    name = METRIC_NAMES.get(metric, metric)
    md = [
        f"## Results: {name}",
        "",
        "Mean ± standard deviation over seeds [95% interval over test patients and seeds].",
        "",
        md_table(results_table(summary, metric)),
        "",
        "### Protocol chosen on validation",
        "",
        md_table(choice_table(head.comparisons)),
        "",
    ]
    diffs = diff_table(summary, metric)
    if not diffs.empty:
        md += [
            f"### Paired difference against `{summary['reference'].dropna().iloc[0]}`, same protocol",
            "",
            "The frozen random encoder under a linear probe or kNN is a weak baseline, shown for "
            "completeness; the headline uses the strongest random initialisation.",
            "",
            md_table(diffs),
            "",
        ]
    for other in folder.settings.metrics:
        if other != metric:
            md += [
                f"### {METRIC_NAMES.get(other, other)}",
                "",
                md_table(results_table(summary, other)),
                "",
            ]
    md += [
        "### Decision thresholds",
        "",
        "Mean over seeds of the threshold on the positive class's probability (n/a: most "
        "probable class).",
        "",
        md_table(results_table(summary, metric, "threshold")),
        "",
    ]
    return md


def _footer(folder: EvalFolder) -> list[str]:
    notes = sorted(
        {
            n
            for n in folder.results["note"].dropna()
            for n in str(n).split("; ")
            if n and not n.startswith(("C=", "best epoch", "best step", "probe C=", "candidates"))
        }
    )
    return [
        "## Adjustments and notes",
        "",
        *([f"- {n}" for n in notes] or ["- none"]),
        "",
        "## Reproduce",
        "",
        "```",
        f"medcontrast evaluate --config {folder.path / 'config.yaml'}",
        f"medcontrast report {folder.path}",
        "```",
        "",
        "Files: `results.csv` (one row per init, protocol, budget, seed and metric), "
        "`summary.csv`, `config.yaml`, `versions.json`, `predictions/` (test and validation "
        "probabilities per run), `labels.npz`, `dataset.json`.",
    ]


def headline_text(folder: Path) -> str:
    """The headline of a written report as plain text (for the console)."""
    md = (Path(folder) / "report.md").read_text()
    text = md.split("## Headline", 1)[1].split("\n## ", 1)[0].strip()
    return "Headline\n" + text.replace("**", "")
