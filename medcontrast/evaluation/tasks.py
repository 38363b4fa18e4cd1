"""One encoder, many tasks: the combined report of ``medcontrast evaluate --config A --config B``.

A hospital pretrains once on its archive and measures the encoder on each labelled task that
comes along. Each task is an ordinary evaluation (its own folder, report and resume; see
:func:`medcontrast.evaluate.evaluate_tasks`); this module writes one combined report from their
folders: a table of tasks by budget (the comparison each task's headline makes), each task's
labels-saved figure and the pool each encoder was pretrained on.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from medcontrast.evaluation.findings import build_headline
from medcontrast.evaluation.folder import EvalFolder, ReportSettings
from medcontrast.evaluation.report_html import md_table
from medcontrast.evaluation.scores import score_folder
from medcontrast.evaluation.tables import METRIC_NAMES

TASKS_MD, TASKS_CSV = "tasks.md", "tasks.csv"


def task_rows(folder: Path, settings: ReportSettings) -> tuple[list[dict], list[str], list[str]]:
    """The headline comparisons of one evaluation folder as table rows, its labels-saved
    sentences, and what each pretrained encoder was pretrained on (with its test overlap)."""
    ev = EvalFolder.read(folder, settings)
    head = build_headline(ev, score_folder(ev))
    metric = METRIC_NAMES.get(ev.settings.headline_metric, ev.settings.headline_metric)
    rows = []
    for c in head.comparisons:
        d = c.diff
        rows.append(
            {
                "task": folder.name,
                "budget": c.budget,
                "labels": round(c.labels),
                "pretrained": c.pretrained.describe,
                metric: f"{c.pretrained_value[0]:.3f}",
                "strongest random": f"{c.baseline_value[0]:.3f} ({c.baseline.describe})",
                "difference [95% CI]": f"{d.mean:+.3f} [{d.ci_low:+.3f}, {d.ci_high:+.3f}]",
                "verdict": c.verdict,
            }
        )
    saved = [f"{folder.name}: {s.sentence()}" for s in head.saved]
    pools = [
        f"{folder.name}, {i['name']}: {i['pretrained_on']['text']}"
        for i in ev.inits
        if i.get("pretrained_on")
    ]
    return rows, saved, pools


def write_tasks_report(folders: list[Path], settings: list[ReportSettings], out: Path) -> Path:
    """``tasks.md`` and ``tasks.csv`` in ``out``: every task's comparisons by budget, its
    labels-saved figure and the pool each encoder was pretrained on."""
    rows, saved, pools = [], [], []
    for folder, s in zip(folders, settings, strict=True):
        r, ls, p = task_rows(folder, s)
        rows += r
        saved += ls or [f"{folder.name}: no labels-saved figure (see its report)"]
        pools += p
    out.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(rows)
    table.to_csv(out / TASKS_CSV, index=False)
    md = [
        "# One encoder, several tasks",
        "",
        "Each row: a task's budget, the pretrained initialisation and protocol chosen on "
        "validation against the strongest random initialisation (also chosen on validation), "
        "and their paired difference on the test split over seeds. Each task's own report has "
        "the details.",
        "",
        md_table(table) if not table.empty else "No task finished a comparison.",
        "",
        "## Labels saved",
        "",
        *[f"- {line}" for line in saved],
        "",
        "## Pretraining data",
        "",
        *[f"- {line}" for line in pools],
        "",
        "## Tasks",
        "",
        *[f"- [{f.name}]({f / 'report.md'})" for f in folders],
        "",
    ]
    (out / TASKS_MD).write_text("\n".join(md))
    return out / TASKS_MD
