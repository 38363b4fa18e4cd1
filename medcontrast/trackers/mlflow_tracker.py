"""MLflow: a run in ``train.experiment``, in a local store unless a tracking URI is given.

The local store is ``<out_dir>/mlruns/``: ``mlflow.db`` (SQLite: MLflow 3.7 made a database
its default store, and 3.10 dropped the plain ``./mlruns`` file store) beside ``artifacts/``.
``mlflow ui --backend-store-uri sqlite:///<out_dir>/mlruns/mlflow.db`` shows it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from medcontrast.errors import MedContrastError
from medcontrast.trackers.base import TRACKERS, TrackerSettings, as_param, need

BATCH = 100  # MLflow takes at most 100 parameters in one call

STATUS = {"finished": "FINISHED", "failed": "FAILED", "killed": "KILLED"}


def tracking_uri(settings: TrackerSettings) -> str:
    """The store: ``train.tracking_uri``, else ``MLFLOW_TRACKING_URI``, else the local one."""
    uri = settings.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI", "")
    if uri:
        return uri
    settings.local_store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(settings.local_store / 'mlflow.db').resolve()}"


@TRACKERS.register("mlflow")
class MlflowTracker:
    """Parameters, metrics at their step, and the run folder's files as artifacts."""

    package = "mlflow"  # the import its extra provides

    def __init__(self, run: Path, settings: TrackerSettings, run_id: str | None) -> None:
        mlflow = need(self.package, "mlflow")
        self.uri = tracking_uri(settings)
        self.client = mlflow.MlflowClient(tracking_uri=self.uri)
        try:
            if run_id is not None:  # a resume continues the same MLflow run
                self.client.update_run(run_id, status="RUNNING")
                self.run_id = run_id
                return
            experiment = self.client.get_experiment_by_name(settings.experiment)
            if experiment is None:
                artifacts = None
                if not settings.tracking_uri and not os.environ.get("MLFLOW_TRACKING_URI"):
                    artifacts = (settings.local_store / "artifacts").resolve().as_uri()
                eid = self.client.create_experiment(settings.experiment, artifacts)
            else:
                eid = experiment.experiment_id
            self.run_id = self.client.create_run(eid, run_name=settings.run_name).info.run_id
        except Exception as exc:
            raise MedContrastError(
                f"train.loggers: mlflow could not start a run in {self.uri} "
                f"(train.tracking_uri): {type(exc).__name__}: {exc}"
            ) from None

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, as_param(v)) for k, v in params.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + BATCH])

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items()]
        self.client.log_batch(self.run_id, metrics=metrics)

    def log_artifacts(self, files: list[Path]) -> None:
        for path in files:
            self.client.log_artifact(self.run_id, str(path))

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status=STATUS[status])
