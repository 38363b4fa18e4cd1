"""A run folder: what it records of its environment, its CSV logs, and for pretraining who may
write it, whether a run starts or resumes, what changed.

Everything here is decided before anything in the folder is written, so a refused start or resume
leaves the folder exactly as it was.
"""

from __future__ import annotations

import csv
import io
import json
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from medcontrast import checkpoint
from medcontrast._version import __version__
from medcontrast.errors import MedContrastError

LOCK = "run.lock"
RESUMES = "resumes.jsonl"
TRAIN_LOG = "train.log"  # run_log.RunLog: the console, line by line
METRICS_JSONL = "metrics.jsonl"
# Everything a pretraining run writes into its folder.
RUN_FILES = frozenset(
    {
        "config.yaml",
        "versions.json",
        "data.json",
        "metrics.csv",
        METRICS_JSONL,
        TRAIN_LOG,
        "checkpoints",
        "tensorboard",
        "wandb",  # train.loggers: wandb (offline)
        "trackers.json",  # trackers.STATE: their run ids, for a resume
        "encoder.pth",
        "encoder.json",
        "config.json",  # timm's metadata for `timm.create_model("local-dir:RUN")`
        "encoder.pth.tmp",
        "init.json",  # model.init: the weights file the run started from
        "pool_fingerprints.npy",  # data.fingerprints.POOL_FINGERPRINTS
        RESUMES,
        LOCK,
    }
)

# Settings that a resume may change without changing what the run computes: where files are,
# how often it logs or saves, how fast it runs, and how long it trains (extending a run).
HARMLESS = frozenset(
    {
        "out_dir",
        "name",
        "data.manifest",  # the selected samples are compared by digest instead
        "data.cache",
        "data.cache_dir",
        "data.workers",
        "data.on_device",  # the same batches either way
        "data.device_share",
        "train.epochs",
        "train.max_steps",
        "train.log_every",
        "train.checkpoint_every",
        "train.loggers",  # where the run is also tracked: not its result
        "train.experiment",
        "train.tracking_uri",
        "train.num_workers",
        "train.device",
        "train.compile",
        "train.channels_last",
        "train.fused_optimizer",
    }
)


def versions() -> dict[str, str]:
    """Versions of Python and the libraries results depend on, plus the device."""
    out = {
        "medcontrast": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
    }
    for name in ("timm", "monai", "numpy", "pydicom", "nibabel", "sklearn", "pandas"):
        try:
            module = __import__(name)
            out[name] = getattr(module, "__version__", "?")
        except ImportError:
            out[name] = "not installed"
    if torch.cuda.is_available():
        out["cuda"] = str(torch.version.cuda)
        out["gpu"] = torch.cuda.get_device_name(0)
    else:
        out["cpu_threads"] = str(torch.get_num_threads())
    return out


def write_versions(folder: Path, **extra: Any) -> None:
    """``versions.json``: :func:`versions` and ``extra`` (for example the world size)."""
    (folder / "versions.json").write_text(json.dumps({**versions(), **extra}, indent=2))


def append_csv(
    path: Path, fields: list[str], rows: list[dict], sync: bool = False, strict: bool = True
) -> None:
    """Append ``rows`` to ``path`` in one write, with the header first where the file is new or
    empty. ``sync`` flushes to disk, so that a kill leaves whole rows behind; with ``strict``
    a key outside ``fields`` is an error, otherwise it is left out."""
    buffer = io.StringIO()
    extras = "raise" if strict else "ignore"
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction=extras, lineterminator="\n")
    if not path.exists() or path.stat().st_size == 0:
        writer.writeheader()
    writer.writerows(rows)
    with open(path, "a", newline="") as fh:
        fh.write(buffer.getvalue())
        if sync:
            fh.flush()
            os.fsync(fh.fileno())


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 1}}`` -> ``{"train.lr": 1}``."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_changes(saved: dict[str, Any], now: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Every dotted key whose value differs: ``{key: (saved, now)}``."""
    a, b = flatten(saved), flatten(now)
    return {k: (a.get(k), b.get(k)) for k in sorted(a.keys() | b.keys()) if a.get(k) != b.get(k)}


def check_resumable(
    run: Path, saved: dict[str, Any], now: dict[str, Any], defaults: dict[str, Any]
) -> dict[str, list]:
    """Refuse a resume whose settings change the result; return the harmless changes.

    A setting the run's version did not have yet is taken at its default (``defaults``), so a
    newer medcontrast resumes an older run unless the new setting was changed.
    """
    saved = {**flatten(defaults), **flatten(saved)}
    changes = config_changes(saved, now)
    refused = {k: v for k, v in changes.items() if k not in HARMLESS}
    if refused:
        listed = "; ".join(
            f"{k}: {old!r} in the run, {new!r} now" for k, (old, new) in refused.items()
        )
        raise MedContrastError(
            f"cannot resume {run}: these settings differ from the ones it was trained with and "
            f"would change its result ({listed}). Resume with the run's own settings "
            f"({run / 'config.yaml'}) or start a new run with another name="
        )
    return {k: list(v) for k, v in changes.items()}


def check_same_data(run: Path, saved_digest: str | None, digest: str, samples: int) -> None:
    """Refuse a resume on other samples than the run was trained on."""
    if saved_digest is not None and saved_digest != digest:
        raise MedContrastError(
            f"cannot resume {run}: the selected training samples differ from the ones it was "
            f"trained with ({samples} samples now; the manifest or the data settings changed). "
            "Resume with the run's own manifest, or start a new run with another name="
        )


def record_resume(run: Path, step: int, source: Path, changes: dict[str, list]) -> None:
    """Append one line per resume to ``resumes.jsonl``: when, from where, what changed."""
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "step": step, "checkpoint": source.name}
    entry["changed"] = changes
    with open(run / RESUMES, "a") as fh:
        fh.write(json.dumps(entry, default=str) + "\n")


@dataclass(frozen=True)
class Start:
    """What to do with a run folder: start afresh, or resume from ``state`` read at ``source``."""

    run: Path
    state: dict[str, Any] | None = None
    source: Path | None = None


def refuse_foreign(run: Path) -> None:
    """Refuse a folder holding anything that a run does not write: it is never written into
    (checked before the run's log is opened in it)."""
    entries = [p.name for p in run.iterdir()] if run.exists() else []
    foreign = sorted(set(entries) - RUN_FILES)
    if foreign:
        raise MedContrastError(
            f"{run} holds files that a medcontrast run does not write ({', '.join(foreign[:3])}); "
            "choose another name= or out_dir="
        )


def decide_start(run: Path, resume: bool, checkpoints: Path, say: bool) -> Start:
    """Start or resume ``run`` (checked by :func:`refuse_foreign`), or stop with a message that
    names the way forward.

    A folder without a checkpoint (a run that failed or was killed before its first one) no
    longer blocks a rerun: it starts over, saying so.
    """
    entries = [p.name for p in run.iterdir()] if run.exists() else []
    if not checkpoint.checkpoint_files(checkpoints):
        if say and (resume or set(entries) - {LOCK, TRAIN_LOG}):
            print(
                f"note: {run} holds no checkpoint (the earlier run stopped before its first one); "
                "starting it over",
                file=sys.stderr,
            )
        return Start(run)
    if not resume:
        raise MedContrastError(
            f"run folder {run} already exists: use --resume to continue it or choose another name="
        )
    state, source = checkpoint.load_training_state(checkpoints, repair=say)
    return Start(run, state, source)


class RunLock:
    """``run.lock`` with the holder's pid and host: two processes never write one run folder.

    A lock whose process is gone on this host is stale and taken over; a lock from another host
    cannot be checked from here, so the message says how to remove it.
    """

    def __init__(self, run: Path) -> None:
        self.path = run / LOCK
        self.held = False

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                self._take_over_if_stale()
                continue
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return
        raise MedContrastError(f"could not take the lock {self.path}")

    def _take_over_if_stale(self) -> None:
        try:
            holder = json.loads(self.path.read_text())
            pid, host = int(holder["pid"]), str(holder["host"])
        except (OSError, ValueError, KeyError, TypeError):
            holder, pid, host = None, -1, ""
        if holder is None and time.time() - self.path.stat().st_mtime < 10:
            raise MedContrastError(  # just created by a process that is still writing it
                f"run folder {self.path.parent} is being opened by another process "
                f"(lock {self.path}); wait for it to finish"
            )
        if holder is not None and host != socket.gethostname():
            raise MedContrastError(
                f"run folder {self.path.parent} is in use by process {pid} on host {host} "
                f"(lock {self.path}); wait for it to finish, or delete the lock if that run "
                "is no longer going"
            )
        if holder is not None and _alive(pid):
            started = time.strftime("%Y-%m-%d %H:%M", time.localtime(holder.get("since", 0)))
            raise MedContrastError(
                f"run folder {self.path.parent} is in use by process {pid} on this host since "
                f"{started} (lock {self.path}); wait for it to finish or stop it first"
            )
        print(f"note: removing the stale lock {self.path} (process {pid} is gone)", file=sys.stderr)
        self.path.unlink(missing_ok=True)

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    # A killed process whose parent died too stays a zombie where nothing reaps orphans (a
    # container's PID 1 often does not); it answers kill(0) but will never write again.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def _step(line: str) -> float:
    """The step of a metrics.jsonl line; infinite for a line a kill cut short (dropped)."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError, TypeError):
        return float("inf")


class MetricsLog:
    """``metrics.csv`` and ``metrics.jsonl`` (rank 0, the same rows), truncated to the resumed
    step so rows are never duplicated. JSON lines keep a column added later (a method's extra
    output) that the CSV's fixed header leaves out."""

    def __init__(self, path: Path, resume_step: int, enabled: bool) -> None:
        self.path, self.enabled, self.fields = path, enabled, None
        self.jsonl = path.with_suffix(".jsonl")
        if not enabled:
            return
        if resume_step and path.exists():
            old = pd.read_csv(path)
            old[old["step"] <= resume_step].to_csv(path, index=False)
            self.fields = list(old.columns)
        else:
            path.unlink(missing_ok=True)
        if resume_step and self.jsonl.exists():
            kept = [x for x in self.jsonl.read_text().splitlines() if _step(x) <= resume_step]
            self.jsonl.write_text("".join(f"{line}\n" for line in kept))
        else:
            self.jsonl.unlink(missing_ok=True)

    def write(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        if self.fields is None:
            self.fields = list(row)
        append_csv(self.path, self.fields, [row], strict=False)
        with open(self.jsonl, "a") as fh:
            fh.write(json.dumps(row) + "\n")
