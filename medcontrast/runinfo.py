"""What a run folder records about its environment (library versions, hardware)."""

from __future__ import annotations

import platform
import sys

import torch

from medcontrast._version import __version__


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


def resolve_device(name: str) -> torch.device:
    """``auto`` -> the first GPU when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        from medcontrast.errors import MedContrastError

        raise MedContrastError(f"device {name!r} asked for, but no GPU is visible; use device=cpu")
    return dev


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a resolved precision (``bf16`` or ``fp32``: None, full float32);
    ``auto`` is resolved with the rest of the config (:mod:`medcontrast.config.resolve`)."""
    return {"bf16": torch.bfloat16, "fp32": None}[precision]
