"""The evaluation folder: the files an evaluation writes and the report reads.

The report is built from this folder alone (results, predictions, labels, saved config), so
``medcontrast report EVAL_DIR`` can rebuild it in seconds and the report never imports the
evaluation loop. Nothing here names a patient: test images are grouped by integer codes.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from medcontrast.errors import MedContrastError
from medcontrast.evaluation.results_file import read_results

CONFIG = "config.yaml"
RESULTS = "results.csv"
SUMMARY = "summary.csv"
INITS = "inits.json"
DATASET = "dataset.json"  # classes, positive class, counts per split and class, failed samples
LABELS = "labels.npz"  # y_val, y_test and test_groups (patient codes 0..P-1, not identifiers)
EMBEDDINGS = "embeddings.png"  # drawn by evaluate (it needs features); embedded by the report
RETRIEVAL = "retrieval.png"
LOG = "evaluate.log"  # run_log.RunLog: the console, line by line
TIMING = "timing.jsonl"  # one line per call of evaluate: its wall-clock time and settings


def resolve_positive(name: str, classes: list[str], default: int, where: str) -> int:
    """Index of the class sensitivity refers to: ``name``, or ``default`` when it is empty."""
    if name and name not in classes:
        raise MedContrastError(
            f"{where}positive_class {name!r} is not a label here; labels: {', '.join(classes)}"
        )
    return classes.index(name) if name else default


def safe_name(name: str) -> str:
    """A file-name-safe form of an init or budget name."""
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def feature_path(folder: Path, init: str) -> Path:
    """Frozen features (N, D) of one initialisation, for every labeled image."""
    return folder / "features" / f"{safe_name(init)}.npy"


def prediction_path(
    folder: Path, init: str, protocol: str, budget: str, seed: int, split: str = "test"
) -> Path:
    """Probabilities (n_split, C) of one run; the test split's file has no suffix."""
    suffix = "" if split == "test" else f"_{split}"
    return (
        folder
        / "predictions"
        / safe_name(init)
        / protocol
        / f"{safe_name(budget)}_seed{seed}{suffix}.npy"
    )


def holds_results(folder: Path) -> bool:
    """Whether ``folder`` holds anything computed: a row of ``results.csv``, frozen features or
    predictions. A folder without any (a start that failed before its first run) binds no
    setting: a rerun with other settings may take it."""
    results = folder / RESULTS
    if results.exists() and len(results.read_text().splitlines()) > 1:
        return True
    return any(
        any(p.is_file() for p in (folder / sub).rglob("*.npy"))
        for sub in ("features", "predictions")
    )


def save_array(path: Path, array: np.ndarray) -> None:
    """``np.save`` through a temporary file and a rename: a kill leaves the old file or none,
    never a half-written one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.npy")
    np.save(tmp, array)
    os.replace(tmp, path)


def record_timing(
    folder: Path, started: datetime, seconds: float, runs: int, parallel: int, device: object
) -> None:
    """Append one call of evaluate's wall-clock time (feature extraction, probes and
    fine-tuning together) to the folder's timing file."""
    line = {
        "started": started.isoformat(timespec="seconds"),
        "seconds": round(seconds, 3),
        "runs": runs,
        "finetune_parallel": parallel,
        "device": str(device),
    }
    with open(folder / TIMING, "a") as fh:
        fh.write(json.dumps(line) + "\n")


def read_timing(folder: Path) -> list[dict]:
    """The calls of evaluate recorded in a folder (none in folders from before it was kept; a
    line a kill cut short is left out)."""
    path = folder / TIMING
    lines = path.read_text().splitlines() if path.exists() else []
    out = []
    for line in lines:
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


@dataclass(frozen=True)
class ReportSettings:
    """What the report reads of an evaluation's settings (its entry point takes them from the
    folder's ``config.yaml``, which may be edited before ``medcontrast report``)."""

    protocols: list[str]
    metrics: list[str]
    headline_metric: str
    threshold: str  # youden, argmax or a fixed number in (0, 1)
    positive_class: str  # empty: the one the evaluation resolved
    bootstrap: int  # resamples of the test patients
    seeds: list[int]  # of the label budgets
    finetune_mode: str  # both, plain or lpft
    wise_alphas: list[float]  # WiSE-FT weights tried after LP-FT


@dataclass
class EvalFolder:
    """Everything the report needs, read from an evaluation folder."""

    path: Path
    settings: ReportSettings
    results: pd.DataFrame
    inits: list[dict]
    dataset: dict
    y_val: np.ndarray
    y_test: np.ndarray
    test_groups: np.ndarray
    timing: list[dict] = field(default_factory=list)

    @classmethod
    def read(cls, path: str | Path, settings: ReportSettings) -> EvalFolder:
        """The folder's files; ``settings`` come from its ``config.yaml`` (an entry point reads
        it, see :func:`medcontrast.evaluate.saved_report_settings`)."""
        path = Path(path)
        for name in (RESULTS, INITS, DATASET, LABELS):  # CONFIG: read by the entry point
            if not (path / name).exists():
                raise MedContrastError(
                    f"{path} is not a finished evaluation folder: {name} is missing"
                    + (
                        " (an older medcontrast wrote it: rerun evaluate)"
                        if name in (DATASET, LABELS)
                        else ""
                    )
                )
        results = read_results(path / RESULTS)
        if results.empty:
            raise MedContrastError(f"{path / RESULTS} holds no finished run")
        labels = np.load(path / LABELS)
        return cls(
            path=path,
            settings=settings,
            results=results,
            inits=json.loads((path / INITS).read_text()),
            dataset=json.loads((path / DATASET).read_text()),
            y_val=labels["y_val"],
            y_test=labels["y_test"],
            test_groups=labels["test_groups"],
            timing=read_timing(path),
        )

    @property
    def classes(self) -> list[str]:
        return list(self.dataset["classes"])

    @property
    def positive(self) -> int:
        """The class sensitivity refers to: the saved config's ``positive_class`` (it may be
        edited before ``medcontrast report``), else the one the evaluation resolved."""
        return resolve_positive(
            self.settings.positive_class,
            self.classes,
            int(self.dataset["positive"]),
            f"{self.path / CONFIG}: ",
        )

    def prediction(
        self, init: str, protocol: str, budget: str, seed: int, split: str = "test"
    ) -> np.ndarray | None:
        """A run's probabilities, or None when the file is absent (validation files of old
        folders)."""
        p = prediction_path(self.path, init, protocol, budget, seed, split)
        return np.load(p) if p.exists() else None

    def random_inits(self) -> list[str]:
        return [i["name"] for i in self.inits if i["kind"] == "random"]

    def pretrained_inits(self) -> list[str]:
        return [i["name"] for i in self.inits if i["kind"] != "random"]
