"""Experiment trackers: each writes what its own API reads back (the real packages, skipped
when an extra is absent); a resume continues the tracker's run; failures are clear or harmless."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import pytest

from medcontrast.config import PretrainConfig, load_config
from medcontrast.errors import MedContrastError
from medcontrast.pretrain import pretrain
from medcontrast.trackers import TRACKERS, Trackers, TrackerSettings, open_trackers
from tests.archive.test_pseudonyms import identifying_values
from tests.test_run_log import logged_run_config


def _cfg(manifest, tmp_path, logger, *extra) -> PretrainConfig:
    return logged_run_config(manifest, tmp_path, "tracked", f"train.loggers=[{logger}]", *extra)


def _read_tensorboard(run, out_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    steps = [e.step for e in events.Scalars("loss")]
    config = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    return steps, config, "", ["config", "loss"]


def _read_mlflow(run, out_dir):
    import mlflow

    uri = f"sqlite:///{out_dir / 'mlruns' / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri)
    (found,) = client.search_runs([client.get_experiment_by_name("medcontrast").experiment_id])
    assert found.info.status == "FINISHED" and found.info.run_name == "tracked"
    assert found.info.run_id == json.loads((run / "trackers.json").read_text())["mlflow"]
    steps = [m.step for m in client.get_metric_history(found.info.run_id, "loss")]
    names = [a.path for a in client.list_artifacts(found.info.run_id)]
    local = client.download_artifacts(found.info.run_id, "train.log", str(out_dir / "dl"))
    texts = json.dumps(found.data.params) + Path(local).read_text()
    return sorted(steps), found.data.params["train.lr"], texts, names


def _read_wandb(run, out_dir):
    # W&B writes a resumed offline run to a new folder under the same id (synced as one run).
    # Its records are protocol buffers that only its compiled core reads (wandb 0.31 has no
    # Python reader): the record files are checked for the keys, the saved files by name.
    *before, offline = sorted((run / "wandb").glob("offline-run-*"))
    run_id = json.loads((run / "trackers.json").read_text())["wandb"]
    assert len(before) == 1 and {p.name[-len(run_id) :] for p in [*before, offline]} == {run_id}
    records = b"".join(p.read_bytes() for p in (run / "wandb").glob("*/run-*.wandb"))
    for key in (b"loss", b"train.lr", b"_step"):
        assert key in records, key
    names = sorted(p.name for p in (offline / "files").iterdir())
    texts = records.decode("latin-1") + (offline / "files" / "train.log").read_text()
    return None, "lr", texts, names


READ = {"tensorboard": _read_tensorboard, "mlflow": _read_mlflow, "wandb": _read_wandb}


@pytest.mark.parametrize("logger", TRACKERS.names())
def test_each_tracker_is_read_back_by_its_own_package(
    phantom_archive, phantom_manifest, tmp_path, logger
):
    pytest.importorskip(TRACKERS.get(logger).package)
    cfg = _cfg(phantom_manifest, tmp_path, logger)
    run = pretrain(cfg, stop_after=2, progress=False)  # killed at step 2, then resumed
    pretrain(cfg, resume=True, progress=False)
    steps, params, texts, names = READ[logger](run, tmp_path / "runs")
    if logger == "wandb":
        assert {"encoder.pth", "config.yaml", "train.log"} <= set(names)
    else:
        assert steps == [1, 2, 3, 4]  # one run across the resume, no step twice
    if logger == "mlflow":
        assert float(params) > 0  # the resolved (scaled) learning rate
        assert {"encoder.pth", "config.yaml", "metrics.csv", "train.log"} <= set(names)
        assert "checkpoints" not in names
    else:
        assert "lr" in params
    assert not [v for v in identifying_values(phantom_archive) if v in texts]


def test_a_missing_extra_is_named_before_any_data_is_read(phantom_manifest, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow fails
    settings = TrackerSettings("medcontrast", "r", "", tmp_path / "mlruns")
    extra = r"pip install 'medcontrast\[mlflow\]'"
    with pytest.raises(MedContrastError, match=extra):
        open_trackers(["mlflow"], tmp_path, settings)
    with pytest.raises(MedContrastError, match=extra):
        pretrain(_cfg(phantom_manifest, tmp_path, "mlflow"), progress=False)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache").exists()


def test_a_tracker_that_fails_while_training_is_dropped_with_one_warning(tmp_path, capsys):
    class Broken:
        run_id = "x"

        def log_metrics(self, values, step):
            raise ConnectionError("the tracking server is gone")

    class Kept:
        run_id = "y"

        def __init__(self):
            self.rows = []

        def log_metrics(self, values, step):
            self.rows.append(step)

    kept = Kept()
    trackers = Trackers(tmp_path, {"broken": Broken(), "kept": kept})
    for step in (1, 2):
        trackers.log_metrics({"step": step, "loss": 1.0}, step)
    err = capsys.readouterr().err
    assert err.count("train.loggers: broken failed") == 1 and "tracking server is gone" in err
    assert kept.rows == [1, 2] and list(trackers.trackers) == ["kept"]


def test_train_tensorboard_of_earlier_releases_is_a_logger():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cfg = load_config(PretrainConfig, None, ["train.tensorboard=true"])
    assert cfg.train.loggers == ["tensorboard"]
    assert any("train.loggers" in str(w.message) for w in caught)
    with pytest.raises(MedContrastError, match=r"train\.loggers: 'comet'"):
        load_config(PretrainConfig, None, ["train.loggers=[comet]"])
