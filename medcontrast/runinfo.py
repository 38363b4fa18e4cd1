"""What a run folder records about its environment (library versions, hardware)."""

from __future__ import annotations

import platform
import sys

import torch

from medcontrast import __version__


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


def resolve_precision(name: str, device: torch.device) -> torch.dtype | None:
    """Autocast dtype: bf16 on GPUs for ``auto``; None means full float32."""
    from medcontrast.errors import MedContrastError

    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if name == "bf16":
        return torch.bfloat16
    if name == "fp32":
        return None
    raise MedContrastError(f"precision must be auto, bf16 or fp32, got {name!r}")
