"""Checkpoints: plain dicts written to a temporary file, flushed to disk, then renamed.

A crash or kill during a save leaves the previous checkpoint intact, never a half-written one.
A run folder keeps the last two (``last.pt``, ``previous.pt``): a checkpoint damaged after it was
written (a disk fault, a copy cut short) costs one checkpoint interval, not the run.

Random states are stored as NumPy byte arrays, not torch tensors: ``torch.load``'s
``map_location`` moves every torch tensor it meets, and a CPU generator state that lands on a GPU
can no longer be restored (``TypeError: RNG state must be a torch.ByteTensor``, seen on an H100).
NumPy arrays are never moved, so a checkpoint restores the same whatever it is loaded with.
"""

from __future__ import annotations

import os
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcontrast.errors import MedContrastError, first_line

LAST, PREVIOUS = "last.pt", "previous.pt"
# What a training checkpoint must hold to be resumed from.
TRAINING_KEYS = ("model", "optimizer", "scheduler", "step", "rng", "config")


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through ``<path>.tmp`` + fsync + ``os.replace``."""
    path = Path(path)
    os.replace(_write_beside(obj, path), path)


def _write_beside(obj: Any, path: Path) -> Path:
    """``obj`` saved and flushed to ``<path>.tmp``; returns that file. A failed write (a full
    disk: ``torch.save`` raises ``RuntimeError`` there, not ``OSError``) removes it, so it
    never fills the disk further, and becomes one line naming the file and the free space."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
    except (OSError, RuntimeError) as exc:
        tmp.unlink(missing_ok=True)
        free = shutil.disk_usage(path.parent).free / 2**20
        raise MedContrastError(
            f"could not write {path} ({first_line(exc)}); {free:.0f} MiB free there: free "
            f"space or write elsewhere (out_dir=); what was there before is kept"
        ) from exc
    return tmp


def load(path: str | Path) -> dict[str, Any]:
    """A checkpoint with every tensor on the CPU; callers copy weights to their device."""
    return torch.load(path, map_location="cpu", weights_only=False)


def save_rotating(state: dict[str, Any], folder: Path) -> Path:
    """Write ``folder/last.pt``, keeping the one it replaces as ``previous.pt``."""
    last = folder / LAST
    tmp = _write_beside(state, last)  # first: a failed write leaves both checkpoints as they were
    if last.exists():
        os.replace(last, folder / PREVIOUS)
    os.replace(tmp, last)
    return last


def checkpoint_files(folder: Path) -> list[Path]:
    """The checkpoints of a run folder, newest first."""
    return [p for p in (folder / LAST, folder / PREVIOUS) if p.exists()]


def load_training_state(folder: Path, repair: bool = True) -> tuple[dict[str, Any], Path] | None:
    """The newest readable checkpoint in ``folder`` and its path; None when there is none.

    A damaged ``last.pt`` is renamed ``last.pt.damaged`` (kept for inspection, never rotated over
    the good ``previous.pt``) and ``previous.pt`` is used, saying so on stderr. Only the process
    that writes the folder (``repair``; rank 0 under DDP) renames and reports.
    """
    files = checkpoint_files(folder)
    if not files:
        return None
    problems: list[str] = []
    for path in files:
        try:
            state = load(path)
            missing = [k for k in TRAINING_KEYS if k not in state]
            if missing:
                raise ValueError(f"it lacks {', '.join(missing)}")
        except Exception as exc:  # any reader failure means the same thing: this file is damaged
            problems.append(f"{path} is damaged ({first_line(exc)})")
            continue
        for bad in files[: files.index(path)] if repair else []:
            os.replace(bad, bad.with_name(bad.name + ".damaged"))
            print(
                f"warning: {problems[0]}; renamed it {bad.name}.damaged and resuming from "
                f"{path.name} (step {state['step']})",
                file=sys.stderr,
            )
        return state, path
    raise MedContrastError(
        f"no usable checkpoint: {'; '.join(problems)}. Nothing was changed; start a new run with "
        "another name=, or remove the damaged files to start this one over"
    )


def _bytes(state: torch.Tensor) -> np.ndarray:
    return state.detach().cpu().numpy().copy()


def _byte_tensor(state: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A CPU ByteTensor from a stored state (NumPy today; a torch tensor in 0.1.0 checkpoints)."""
    if isinstance(state, torch.Tensor):
        return state.detach().to("cpu", torch.uint8)
    return torch.from_numpy(np.ascontiguousarray(state, dtype=np.uint8))


def rng_state(device: torch.device | None = None) -> dict[str, Any]:
    """Every global generator this process draws from: Python, NumPy, torch CPU, and the CUDA
    generator of ``device`` (this rank's GPU) when it is one. Saved per rank."""
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": _bytes(torch.get_rng_state()),
    }
    if device is not None and device.type == "cuda":
        state["cuda"] = _bytes(torch.cuda.get_rng_state(device))
    return state


def set_rng_state(state: dict[str, Any], device: torch.device | None = None) -> None:
    """Restore what :func:`rng_state` saved, each generator on its own device.

    The CUDA state goes to ``device`` (this rank's GPU), never to another rank's.
    """
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(_byte_tensor(state["torch"]))
    cuda = state.get("cuda")
    if cuda is None or device is None or device.type != "cuda":
        return
    if isinstance(cuda, list | tuple):  # 0.1.0 saved every visible GPU's state
        cuda = cuda[device.index or 0]
    torch.cuda.set_rng_state(_byte_tensor(cuda), device)
