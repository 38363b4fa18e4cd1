"""The runtime of a run: which device it computes on and in which precision."""

from __future__ import annotations

import torch

from medcontrast.errors import MedContrastError


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the first GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise MedContrastError(f"device {name!r} asked for, but no GPU is visible; use device=cpu")
    return dev


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (``bf16`` or ``fp32``: None, full float32);
    ``auto`` is resolved with the rest of the config (:mod:`medcontrast.config.resolve`)."""
    return {"bf16": torch.bfloat16, "fp32": None}[precision]
