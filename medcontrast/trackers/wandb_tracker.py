"""Weights & Biases in offline mode: the run is written to the run folder's ``wandb/``, never
sent; ``wandb sync RUN/wandb/offline-run-*`` uploads it where a team allows that."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medcontrast.trackers.base import TRACKERS, TrackerSettings, need


@TRACKERS.register("wandb")
class WandbTracker:
    """Parameters as the run's config, metrics at their step, files saved with the run."""

    package = "wandb"  # the import its extra provides

    def __init__(self, run: Path, settings: TrackerSettings, run_id: str | None) -> None:
        wandb = need(self.package, "wandb")
        self.run = wandb.init(
            project=settings.experiment,
            name=settings.run_name,
            dir=str(run),
            mode="offline",
            id=run_id,
            resume="allow" if run_id else None,
            settings=wandb.Settings(silent=True, console="off"),
        )
        self.run_id = self.run.id

    def log_params(self, params: dict[str, Any]) -> None:
        self.run.config.update(params, allow_val_change=True)

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        self.run.log(values, step=step)

    def log_artifacts(self, files: list[Path]) -> None:
        for path in files:
            self.run.save(str(path), base_path=str(path.parent), policy="now")

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "finished" else 1)
