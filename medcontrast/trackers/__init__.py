"""Experiment trackers for a pretraining run: TensorBoard, MLflow, Weights & Biases (offline).

Each is an optional extra (``pip install medcontrast[tensorboard]``, ``[mlflow]``, ``[wandb]``)
chosen by name in ``train.loggers``. A tracker gets the resolved config as parameters when a run
starts, every logged metrics row at its step, and the run folder's files as artifacts when the
run ends; :class:`Trackers` hands each call to every chosen tracker.

What a tracker receives is what the run folder already holds (config, metrics, the console log,
the exported encoder): pseudonymised sample and patient codes at most, never a header value.
A tracker that fails while the run trains (a tracking server gone away) is dropped with one
warning; the training goes on, and ``metrics.csv`` still has every row.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from medcontrast.trackers import mlflow_tracker, tensorboard_tracker, wandb_tracker  # noqa: F401
from medcontrast.trackers.base import TRACKERS, Tracker, TrackerSettings, need

STATE = "trackers.json"  # in the run folder: each tracker's run id, so a resume continues it
# Left out of the artifacts: the checkpoints (large, and only for resuming), the lock, and the
# trackers' own folders.
NOT_ARTIFACTS = frozenset({"checkpoints", "run.lock", "tensorboard", "wandb", STATE})

__all__ = [
    "TRACKERS",
    "Tracker",
    "TrackerSettings",
    "Trackers",
    "check_trackers",
    "open_trackers",
]


class Trackers:
    """The chosen trackers of one run, called together."""

    def __init__(self, run: Path, trackers: dict[str, Tracker]) -> None:
        self.run, self.trackers = run, trackers

    def log_params(self, params: dict[str, Any]) -> None:
        self._each("log_params", params)

    def log_metrics(self, row: dict[str, float], step: int) -> None:
        # the step is the tracker's own axis; the wall-clock time, each tracker's own record
        values = {k: v for k, v in row.items() if k not in ("step", "time")}
        self._each("log_metrics", values, step)

    def log_artifacts(self) -> None:
        """The run folder's files (encoder, config, metrics, log, records) as artifacts."""
        files = sorted(p for p in self.run.iterdir() if p.is_file() and p.name not in NOT_ARTIFACTS)
        self._each("log_artifacts", files)

    def close(self, status: str) -> None:
        """End every tracker's run: ``status`` is finished, failed or killed."""
        self._each("close", status)

    def _each(self, what: str, *args: Any) -> None:
        for name, tracker in list(self.trackers.items()):
            try:
                getattr(tracker, what)(*args)
            except Exception as exc:
                print(
                    f"warning: train.loggers: {name} failed ({type(exc).__name__}: {exc}); "
                    "it is dropped for the rest of this run (metrics.csv has every row)",
                    file=sys.stderr,
                )
                del self.trackers[name]


def open_trackers(
    names: list[str], run: Path, settings: TrackerSettings, enabled: bool = True
) -> Trackers:
    """Start (or, on a resume, reopen) each named tracker for the run folder ``run``.

    A missing package or an unreachable store is an error here, before any training, naming
    the tracker and the extra to install. The trackers' run ids are kept in ``trackers.json``.
    """
    if not enabled or not names:
        return Trackers(run, {})
    path = run / STATE
    ids = json.loads(path.read_text()) if path.exists() and settings.resume_step else {}
    opened = {name: TRACKERS.get(name)(run, settings, ids.get(name)) for name in names}
    path.write_text(json.dumps({n: t.run_id for n, t in opened.items()}, indent=2))
    return Trackers(run, opened)


def check_trackers(names: list[str]) -> None:
    """Refuse, before any data is read, a tracker whose package is not installed."""
    for name in names:
        need(TRACKERS.get(name).package, name)
