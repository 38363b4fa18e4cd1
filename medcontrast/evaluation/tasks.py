"""One encoder, many tasks: ``medcontrast evaluate --config A --config B ...``.

A hospital pretrains once on its archive and measures the encoder on each labelled task that
comes along. Each task is an ordinary evaluation (its own folder, report and resume); this module
checks every task before any is computed, runs them in turn, and writes one combined report: a
table of tasks by budget (the comparison each task's headline makes) and each task's
labels-saved figure.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from medcontrast.config import EvaluateConfig
from medcontrast.config.resolve import evaluation_name
from medcontrast.data.manifest import read_manifest
from medcontrast.data.selection import select_rows
from medcontrast.errors import MedContrastError
from medcontrast.evaluation.findings import build_headline
from medcontrast.evaluation.folder import INITS, EvalFolder, ReportSettings
from medcontrast.evaluation.inits import resolve_inits
from medcontrast.evaluation.report_html import md_table
from medcontrast.evaluation.scores import score_folder
from medcontrast.evaluation.tables import METRIC_NAMES

TASKS_MD, TASKS_CSV = "tasks.md", "tasks.csv"


def task_folder(cfg: EvaluateConfig) -> Path:
    """The evaluation folder a task writes (its name, or the default one evaluate gives it)."""
    return Path(cfg.out_dir) / (cfg.name or evaluation_name(cfg))


def evaluate_tasks(
    cfgs: list[EvaluateConfig], sources: list[str], out: Path | None = None, progress: bool = True
) -> tuple[list[Path], Path]:
    """Check every task, evaluate each in turn (each resumes as a single evaluation does), then
    write the combined report; the evaluation folders and the combined report's path.

    Args:
        sources: what each config came from (a file or shipped name), for error messages.
        out: the combined report's folder; default ``<first out_dir>/tasks-<task names>``.
    """
    from medcontrast.evaluate import evaluate, saved_report_settings

    check_tasks(cfgs, sources)
    folders = [evaluate(cfg, progress) for cfg in cfgs]
    out = out or Path(cfgs[0].out_dir) / ("tasks-" + "-".join(f.name for f in folders))
    settings = [saved_report_settings(f) for f in folders]
    return folders, write_tasks_report(folders, settings, out)


def check_tasks(cfgs: list[EvaluateConfig], sources: list[str]) -> None:
    """Refuse, before any computation, a task whose encoder does not fit its data or whose
    manifest has no labelled image, naming the config; and two tasks sharing a folder."""
    folders = [task_folder(c) for c in cfgs]
    if len(set(folders)) != len(folders):
        raise MedContrastError(
            "two tasks would write the same evaluation folder: give each config its own name "
            f"({', '.join(str(f) for f in folders)})"
        )
    for cfg, source in zip(cfgs, sources, strict=True):
        try:
            resolve_inits(cfg.inits, cfg.data.ndim, cfg.data.size)
            manifest = read_manifest(cfg.data.manifest)
            select_rows(manifest, cfg.data.ndim, cfg.data.modalities, None, labeled=True)
        except MedContrastError as exc:
            raise MedContrastError(f"task {source}: {exc}") from exc


def task_rows(folder: Path, settings: ReportSettings) -> tuple[list[dict], list[str]]:
    """The headline comparisons of one evaluation folder as table rows, and its labels-saved
    sentences."""
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
    return rows, saved


def _pools(folder: Path) -> list[str]:
    """What each pretrained encoder of a task was pretrained on (with its test overlap)."""
    inits = json.loads((folder / INITS).read_text())
    return [
        f"{folder.name}, {i['name']}: {i['pretrained_on']['text']}"
        for i in inits
        if i.get("pretrained_on")
    ]


def write_tasks_report(folders: list[Path], settings: list[ReportSettings], out: Path) -> Path:
    """``tasks.md`` and ``tasks.csv`` in ``out``: every task's comparisons by budget, its
    labels-saved figure and the pool each encoder was pretrained on."""
    rows, saved = [], []
    for folder, s in zip(folders, settings, strict=True):
        r, ls = task_rows(folder, s)
        rows += r
        saved += ls or [f"{folder.name}: no labels-saved figure (see its report)"]
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
        *[f"- {line}" for f in folders for line in _pools(f)],
        "",
        "## Tasks",
        "",
        *[f"- [{f.name}]({f / 'report.md'})" for f in folders],
        "",
    ]
    (out / TASKS_MD).write_text("\n".join(md))
    return out / TASKS_MD
