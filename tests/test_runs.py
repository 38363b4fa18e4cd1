"""Run folders: damaged checkpoints, changed settings, finished runs, locks, runs with no checkpoint.

Every refusal is one message naming the folder or file, and leaves the folder as it was.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from medcontrast import checkpoint
from medcontrast.cli import main
from medcontrast.data.manifest import read_manifest, sidecar_path, write_manifest
from medcontrast.errors import MedContrastError
from medcontrast.pretrain import pretrain
from medcontrast.runs import (
    TRAIN_LOG,
    MetricsLog,
    RunLock,
    append_csv,
    config_changes,
    write_versions,
)
from tests.test_pretrain import _cfg, _overrides

BASE = ["train.max_steps=6", "train.checkpoint_every=2", "train.seed=2"]


def _snapshot(run) -> dict[str, bytes]:
    """The folder's files, but train.log: a refused attempt is appended to it, saying why."""
    files = sorted(p for p in run.rglob("*") if p.is_file() and p.name != TRAIN_LOG)
    return {p.name: p.read_bytes() for p in files}


@pytest.fixture(scope="module")
def runs(phantom_manifest, tmp_path_factory):
    """An uninterrupted run and a copy source stopped at step 4 (last.pt 4, previous.pt 2)."""
    tmp = tmp_path_factory.mktemp("runs")
    full = pretrain(_cfg(phantom_manifest, tmp, "full", *BASE), progress=False)
    cut = pretrain(_cfg(phantom_manifest, tmp, "cut", *BASE), stop_after=4, progress=False)
    return tmp, full, cut


def _copy_of_cut(runs, tmp_path):
    import shutil

    tmp, _, cut = runs
    shutil.copytree(cut, tmp_path / "runs" / "cut")
    shutil.copytree(tmp / "cache", tmp_path / "cache")
    return tmp_path / "runs" / "cut"


def test_last_two_checkpoints_are_kept(runs):
    _, _, cut = runs
    steps = [checkpoint.load(p)["step"] for p in checkpoint.checkpoint_files(cut / "checkpoints")]
    assert steps == [4, 2]


def test_a_damaged_checkpoint_falls_back_to_the_previous_one(
    runs, phantom_manifest, tmp_path, capsys
):
    run = _copy_of_cut(runs, tmp_path)
    last = run / "checkpoints" / "last.pt"
    last.write_bytes(last.read_bytes()[:1000])  # a copy cut short
    pretrain(_cfg(phantom_manifest, tmp_path, "cut", *BASE), resume=True, progress=False)
    err = capsys.readouterr().err
    assert "last.pt is damaged" in err and "resuming from previous.pt (step 2)" in err
    assert (run / "checkpoints" / "last.pt.damaged").exists()
    a, b = torch.load(runs[1] / "encoder.pth"), torch.load(run / "encoder.pth")
    assert all(torch.equal(a[k], b[k]) for k in a)  # still exact: steps 3-4 were redone
    assert list(pd.read_csv(run / "metrics.csv")["step"]) == [1, 2, 3, 4, 5, 6]


def test_no_usable_checkpoint_is_one_message_that_names_the_files(
    runs, phantom_manifest, tmp_path, capsys
):
    run = _copy_of_cut(runs, tmp_path)
    for name in ("last.pt", "previous.pt"):
        (run / "checkpoints" / name).write_bytes(b"not a checkpoint")
    before = _snapshot(run)
    args = ["pretrain", *_overrides(phantom_manifest, tmp_path, "cut", *BASE), "--resume"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "last.pt is damaged" in err and "previous.pt is damaged" in err
    assert "Traceback" not in err and _snapshot(run) == before
    assert "=== stopped: error: " in (run / TRAIN_LOG).read_text().splitlines()[-1]


@pytest.mark.parametrize(
    "change,key",
    [
        ("train.lr=0.5", "train.lr"),
        ("model.encoder=timm:resnet18", "model.encoder"),
        ("train.seed=9", "train.seed"),
        ("train.batch_size=4", "train.batch_size"),
        ("method.name=byol", "method.name"),
        ("data.max_samples=30", "data.max_samples"),
    ],
)
def test_a_resume_that_changes_the_result_is_refused_before_anything_is_written(
    runs, phantom_manifest, tmp_path, change, key
):
    run = _copy_of_cut(runs, tmp_path)
    before = _snapshot(run)
    with pytest.raises(
        MedContrastError, match=rf"cannot resume .*would change its result \(.*\b{key}: "
    ):
        pretrain(_cfg(phantom_manifest, tmp_path, "cut", *BASE, change), resume=True)
    assert _snapshot(run) == before


def test_a_resume_on_other_samples_is_refused(runs, phantom_manifest, tmp_path):
    run = _copy_of_cut(runs, tmp_path)
    manifest = read_manifest(phantom_manifest)
    rows = manifest.table
    other = tmp_path / "manifest.csv"
    meta = json.loads(sidecar_path(phantom_manifest).read_text())
    write_manifest(
        rows.drop(index=rows.index[rows["modality"].isin(["CR", "DX"])][:3]), other, meta
    )
    before = _snapshot(run)
    cfg = _cfg(phantom_manifest, tmp_path, "cut", *BASE, f"data.manifest={other}")
    with pytest.raises(MedContrastError, match="selected training samples differ"):
        pretrain(cfg, resume=True, progress=False)
    assert _snapshot(run) == before


def test_harmless_changes_are_allowed_and_recorded(runs, phantom_manifest, tmp_path):
    run = _copy_of_cut(runs, tmp_path)
    cfg = _cfg(phantom_manifest, tmp_path, "cut", *BASE, "train.log_every=2")
    pretrain(cfg, resume=True, progress=False)
    (entry,) = [json.loads(line) for line in (run / "resumes.jsonl").read_text().splitlines()]
    assert entry["step"] == 4 and entry["changed"]["train.log_every"] == [1, 2]
    assert set(entry["changed"]) == {"train.log_every", "out_dir", "data.cache_dir"}  # moved
    assert "log_every: 2" in (run / "config.yaml").read_text()


def test_resuming_a_finished_run_does_nothing(runs, phantom_manifest, tmp_path, capsys):
    import shutil

    tmp, full, _ = runs
    shutil.copytree(full, tmp_path / "runs" / "full")
    shutil.copytree(tmp / "cache", tmp_path / "cache")
    before = _snapshot(tmp_path / "runs" / "full")
    pretrain(_cfg(phantom_manifest, tmp_path, "full", *BASE), resume=True, progress=False)
    assert "is finished (step 6 of 6): nothing to do" in capsys.readouterr().err
    assert _snapshot(tmp_path / "runs" / "full") == before


@pytest.mark.parametrize("which", ["cut", "full"])
def test_a_resume_with_fewer_steps_than_done_is_refused(runs, phantom_manifest, tmp_path, which):
    """At step 4 (cut) or 6 (finished) and resumed with train.max_steps=3: refused before
    anything is written, instead of exporting the later step's encoder as finished at 3."""
    import shutil

    tmp, full, _ = runs
    if which == "cut":
        run = _copy_of_cut(runs, tmp_path)
    else:
        run = tmp_path / "runs" / "full"
        shutil.copytree(full, run)
        shutil.copytree(tmp / "cache", tmp_path / "cache")
    before = _snapshot(run)
    cfg = _cfg(phantom_manifest, tmp_path, which, *BASE, "train.max_steps=3")
    with pytest.raises(MedContrastError, match=r"train.max_steps=3: it is at step [46] already"):
        pretrain(cfg, resume=True, progress=False)
    assert _snapshot(run) == before


@pytest.mark.parametrize("resume", [False, True])
def test_a_run_that_died_before_its_first_checkpoint_starts_over(
    phantom_manifest, tmp_path, capsys, resume
):
    run = tmp_path / "runs" / "early"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text("left by a run killed while loading data\n")
    (run / "checkpoints").mkdir()
    pretrain(_cfg(phantom_manifest, tmp_path, "early"), resume=resume, progress=False)
    assert "holds no checkpoint" in capsys.readouterr().err
    assert (run / "encoder.pth").exists()


def test_resume_of_a_run_that_does_not_exist_says_so(phantom_manifest, tmp_path):
    with pytest.raises(MedContrastError, match="nothing to resume: there is no run folder"):
        pretrain(_cfg(phantom_manifest, tmp_path, "typo"), resume=True)


def test_a_second_process_is_refused_by_the_lock(phantom_manifest, tmp_path):
    run = tmp_path / "runs" / "busy"
    RunLock(run).acquire()  # held by this (live) process
    with pytest.raises(MedContrastError, match=rf"in use by process {os.getpid()}.*run.lock"):
        pretrain(_cfg(phantom_manifest, tmp_path, "busy"), progress=False)
    assert not (run / "config.yaml").exists()


def test_a_stale_lock_is_taken_over_and_released(phantom_manifest, tmp_path, capsys):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run = tmp_path / "runs" / "stale"
    run.mkdir(parents=True)
    lock = {"pid": dead.pid, "host": socket.gethostname(), "since": 0}
    (run / "run.lock").write_text(json.dumps(lock))
    pretrain(_cfg(phantom_manifest, tmp_path, "stale"), progress=False)
    assert "removing the stale lock" in capsys.readouterr().err
    assert (run / "encoder.pth").exists() and not (run / "run.lock").exists()


def test_a_lock_from_another_host_is_not_taken(tmp_path):
    (tmp_path / "run.lock").write_text(json.dumps({"pid": 1, "host": "elsewhere", "since": 0}))
    with pytest.raises(MedContrastError, match=r"process 1 on host elsewhere.*delete the lock"):
        RunLock(tmp_path).acquire()


def test_config_changes_lists_nested_keys():
    saved = {"train": {"lr": 0.1, "seed": 0}, "name": "a"}
    assert config_changes(saved, {"train": {"lr": 0.2, "seed": 0}, "name": "a"}) == {
        "train.lr": (0.1, 0.2)
    }


def test_resume_into_an_empty_folder_starts_over(phantom_manifest, tmp_path, capsys):
    run = tmp_path / "runs" / "empty"
    run.mkdir(parents=True)
    pretrain(_cfg(phantom_manifest, tmp_path, "empty"), resume=True, progress=False)
    assert "holds no checkpoint" in capsys.readouterr().err
    assert (run / "encoder.pth").exists()


@pytest.mark.parametrize("resume", [False, True])
def test_a_folder_that_is_not_a_run_is_never_written_into(phantom_manifest, tmp_path, resume):
    run = tmp_path / "runs" / "mine"
    run.mkdir(parents=True)
    (run / "notes.txt").write_text("a user's own file")
    with pytest.raises(MedContrastError, match=r"does not write \(notes.txt\)"):
        pretrain(_cfg(phantom_manifest, tmp_path, "mine"), resume=resume, progress=False)
    assert [p.name for p in run.iterdir()] == ["notes.txt"]


def test_a_setting_newer_than_the_run_is_taken_at_its_default(runs, phantom_manifest, tmp_path):
    """A checkpoint from a version without some setting resumes when it is left at its default."""
    run = _copy_of_cut(runs, tmp_path)
    last = run / "checkpoints" / "last.pt"
    state = checkpoint.load(last)
    del state["config"]["train"]["min_lr_ratio"]
    checkpoint.atomic_save(state, last)
    pretrain(_cfg(phantom_manifest, tmp_path, "cut", *BASE), resume=True, progress=False)
    assert (run / "encoder.pth").exists()
    with pytest.raises(MedContrastError, match=r"train.min_lr_ratio: 0.01 in the run, 0.5 now"):
        pretrain(
            _cfg(phantom_manifest, tmp_path, "cut", *BASE, "train.min_lr_ratio=0.5"), resume=True
        )


def test_a_lock_held_by_a_zombie_is_stale(tmp_path):
    """A killed holder that nobody reaped still answers kill(pid, 0); it must not block a run."""
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.time() + 30
    while "Z" not in Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0]:
        assert time.time() < deadline
        time.sleep(0.05)
    lock = {"pid": zombie.pid, "host": socket.gethostname(), "since": 0}
    (tmp_path / "run.lock").write_text(json.dumps(lock))
    RunLock(tmp_path).acquire()
    assert json.loads((tmp_path / "run.lock").read_text())["pid"] == os.getpid()
    zombie.wait()


def test_csv_appends_write_one_header_and_check_their_keys(tmp_path):
    path = tmp_path / "log.csv"
    append_csv(path, ["a", "b"], [{"a": 1, "b": 2}])
    append_csv(path, ["a", "b"], [{"a": 3, "b": 4}, {"a": 5, "b": 6}], sync=True)
    assert path.read_text() == "a,b\n1,2\n3,4\n5,6\n"
    with pytest.raises(ValueError, match="c"):
        append_csv(path, ["a", "b"], [{"a": 1, "b": 2, "c": 3}])
    append_csv(path, ["a", "b"], [{"a": 7, "b": 8, "c": 9}], strict=False)
    assert pd.read_csv(path)["a"].tolist() == [1, 3, 5, 7]


def test_a_resumed_metrics_log_drops_the_steps_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.csv"
    log = MetricsLog(path, resume_step=0, enabled=True)
    for step in (10, 20, 30):
        log.write({"step": step, "loss": step / 10})
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 40, "lo')  # a line a kill cut short
    log = MetricsLog(path, resume_step=20, enabled=True)
    log.write({"step": 30, "loss": 2.5, "extra": 1.0})
    assert pd.read_csv(path).to_dict("list") == {"step": [10, 20, 30], "loss": [1.0, 2.0, 2.5]}
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows == [  # the JSON lines keep the column the CSV's header has no place for
        {"step": 10, "loss": 1.0},
        {"step": 20, "loss": 2.0},
        {"step": 30, "loss": 2.5, "extra": 1.0},
    ]


def test_versions_json_records_the_libraries_and_extras(tmp_path):
    write_versions(tmp_path, world_size=2)
    record = json.loads((tmp_path / "versions.json").read_text())
    assert record["world_size"] == 2 and record["medcontrast"] and record["torch"]
