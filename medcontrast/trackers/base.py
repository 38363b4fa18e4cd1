"""What every experiment tracker offers, and the registry of them."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Protocol

from medcontrast.errors import MedContrastError
from medcontrast.registry import Registry


@dataclass(frozen=True)
class TrackerSettings:
    """Where and under what name a run is tracked.

    Args:
        experiment: the MLflow experiment and W&B project (``train.experiment``).
        run_name: the run's name in the tracker (the run folder's name).
        tracking_uri: MLflow's store; empty: ``MLFLOW_TRACKING_URI`` where set, else a local
            store in ``local_store``.
        local_store: the folder of the local MLflow store (``<out_dir>/mlruns``).
        resume_step: the step a resumed run continues from (0: a new run).
    """

    experiment: str
    run_name: str
    tracking_uri: str
    local_store: Path
    resume_step: int = 0


class Tracker(Protocol):
    """One tracker's run. ``run_id`` is stored in the run folder so that a resume reopens it."""

    run_id: str

    def log_params(self, params: dict[str, Any]) -> None: ...

    def log_metrics(self, values: dict[str, float], step: int) -> None: ...

    def log_artifacts(self, files: list[Path]) -> None: ...

    def close(self, status: str) -> None: ...


# name -> factory(run folder, settings, run id of the run to reopen or None) -> Tracker
TRACKERS: Registry[Any] = Registry("logger")


def need(module: str, extra: str) -> ModuleType:
    """Import an optional tracker package, or say which extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MedContrastError(
            f"train.loggers: {extra} needs the {module} package: pip install "
            f"'medcontrast[{extra}]' ({exc})"
        ) from None


def as_param(value: Any) -> str:
    """A config value as a tracker's parameter string (lists as YAML writes them inline)."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(as_param(v) for v in value) + "]"
    return str(value)
