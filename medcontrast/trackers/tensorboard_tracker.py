"""TensorBoard: event files in the run folder's ``tensorboard/`` (``tensorboard --logdir RUN``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medcontrast.trackers.base import TRACKERS, TrackerSettings, as_param, need


@TRACKERS.register("tensorboard")
class TensorBoardTracker:
    """Scalars per step; the parameters as one text table; no artifacts (they are the run
    folder's files, beside the events)."""

    package = "tensorboard"  # the import its extra provides

    def __init__(self, run: Path, settings: TrackerSettings, run_id: str | None) -> None:
        need(self.package, "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: on a resume, the events after the checkpoint's step (logged before a kill
        # and about to be logged again) are dropped, as metrics.csv drops its rows.
        purge = settings.resume_step + 1 if settings.resume_step else None
        self.writer = SummaryWriter(str(run / "tensorboard"), purge_step=purge)
        self.run_id = str(run / "tensorboard")

    def log_params(self, params: dict[str, Any]) -> None:
        rows = "\n".join(f"| {k} | {as_param(v)} |" for k, v in params.items())
        self.writer.add_text("config", "| setting | value |\n|---|---|\n" + rows, 0)

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)
        self.writer.flush()

    def log_artifacts(self, files: list[Path]) -> None:
        pass

    def close(self, status: str) -> None:
        self.writer.close()
