"""Checkpoints: plain dicts written to a temporary file, flushed to disk, then renamed.

A crash or kill during a save leaves the previous checkpoint intact, never a half-written one.

Random states are stored as NumPy byte arrays, not torch tensors: ``torch.load``'s
``map_location`` moves every torch tensor it meets, and a CPU generator state that lands on a GPU
can no longer be restored (``TypeError: RNG state must be a torch.ByteTensor``, seen on an H100).
NumPy arrays are never moved, so a checkpoint restores the same whatever it is loaded with.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` through ``<path>.tmp`` + fsync + ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load(path: str | Path) -> dict[str, Any]:
    """A checkpoint with every tensor on the CPU; callers copy weights to their device."""
    return torch.load(path, map_location="cpu", weights_only=False)


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
