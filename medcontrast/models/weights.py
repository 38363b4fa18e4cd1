"""Start an encoder from a weights file a user already has (ImageNet, a foundation model, another
tool's export): ``model.init`` in pretraining and a weight-file init in an evaluation.

The file is read as timm reads a checkpoint (:func:`timm.models.load_state_dict`: ``.safetensors``
or a torch file; the ``state_dict`` / ``model`` entry, EMA weights first; DDP and ``torch.compile``
prefixes removed), then matched to the backbone's own keys. Our own code covers what timm's
``load_checkpoint`` does not: a wrapper prefix of another tool (``backbone.``, ``encoder.``...) is
removed when that makes more keys match, MONAI networks get the same treatment as timm's, and
every mismatch is named instead of raised one at a time. Nothing is ever downloaded.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from medcontrast.errors import MedContrastError, first_line

# Wrapper prefixes seen in other tools' exports (lightly, solo-learn, MONAI bundles, our own
# training checkpoints); one is removed only when it makes more keys match.
_PREFIXES = ("backbone.", "encoder.", "model.", "net.", "online_network.", "student.")


@dataclass
class LoadedWeights:
    """What :func:`load_weights` did: counts and the names a user should see."""

    path: Path
    loaded: int  # tensors copied into the encoder
    total: int  # tensors the encoder has
    missing: list[str] = field(default_factory=list)  # encoder keys left as they were
    unused: list[str] = field(default_factory=list)  # file keys with no place in the encoder
    notes: list[str] = field(default_factory=list)  # adaptations made (channels, positions)

    def summary(self) -> list[str]:
        """One line per fact, the names shortened to the first few."""
        lines = [f"{self.path.name}: {self.loaded} of {self.total} weights loaded", *self.notes]
        if self.missing:
            lines.append(
                f"{len(self.missing)} weights not in the file, left at their initialisation: "
                + _first(self.missing)
            )
        if self.unused:
            lines.append(
                f"{len(self.unused)} weights of the file not used (heads, other parts): "
                + _first(self.unused)
            )
        return lines


def file_digest(*paths: Path) -> str:
    """SHA-256 over the bytes of ``paths``: run and evaluation folders record it, so that weights
    changed under the same name are never taken for the old."""
    h = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def weights_path(path: str | Path) -> Path:
    """The weights file of ``path``: itself, or a medcontrast run folder's ``encoder.pth``."""
    path = Path(path)
    return path / "encoder.pth" if path.is_dir() else path


def _first(names: list[str], n: int = 3) -> str:
    return ", ".join(names[:n]) + (", ..." if len(names) > n else "")


def read_state(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file, as timm reads a checkpoint; a clear error otherwise."""
    from timm.models import load_state_dict

    path = Path(path)
    if not path.is_file():
        raise MedContrastError(f"weights file {path} does not exist")
    try:
        state = load_state_dict(str(path), use_ema=True)
    except Exception as exc:
        raise MedContrastError(
            f"{path} is not a weights file torch or safetensors can read: {first_line(exc)}"
        ) from exc
    if not isinstance(state, dict) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise MedContrastError(f"{path} holds no tensors by name (not a state dict)")
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _strip_wrappers(state: dict[str, torch.Tensor], own: set[str]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes while each removal makes more keys match the encoder's."""
    while True:
        hits = len(own.intersection(state))
        best, best_hits = None, hits
        for prefix in _PREFIXES:
            stripped = {k.removeprefix(prefix): v for k, v in state.items()}
            n = len(own.intersection(stripped))
            if n > best_hits:
                best, best_hits = stripped, n
        if best is None:
            return state
        state = best


def _family_filter(state: dict[str, torch.Tensor], backbone: nn.Module) -> dict[str, torch.Tensor]:
    """timm's own conversion for the model's family (e.g. a ViT's position embedding resampled
    to another input size), where the family has one."""
    module = sys.modules.get(type(backbone).__module__)
    convert = getattr(module, "checkpoint_filter_fn", None)
    if convert is None or not type(backbone).__module__.startswith("timm."):
        return state
    try:
        return convert(state, backbone)
    except Exception:  # a converter for the family's own checkpoints; ours may not need it
        return state


def _fit(key: str, value: torch.Tensor, target: torch.Tensor, notes: list[str]) -> torch.Tensor:
    """``value`` in ``target``'s shape where timm would adapt it; unchanged otherwise."""
    from timm.models._manipulate import adapt_input_conv

    if value.shape == target.shape:
        return value
    if (
        value.dim() >= 3
        and value.shape[0] == target.shape[0]
        and value.shape[2:] == target.shape[2:]
    ):
        # A first convolution of another channel count (ImageNet RGB -> 1 channel): timm sums
        # the RGB filters for one channel and repeats them for more.
        if value.dim() == 4:
            notes.append(f"{key}: {value.shape[1]}-channel weights adapted to {target.shape[1]}")
            return adapt_input_conv(int(target.shape[1]), value.float()).to(value.dtype)
        if value.shape[1] == 3 and target.shape[1] == 1:  # 3D: same rule as timm's
            notes.append(f"{key}: 3-channel weights summed to 1 channel")
            return value.sum(1, keepdim=True)
    return value


def load_weights(encoder: nn.Module, path: str | Path, name: str = "") -> LoadedWeights:
    """Copy the weights of ``path`` into ``encoder.backbone`` (in place).

    Loads every key that matches (after the adaptations above), leaves the rest as they were and
    names them. Raises :class:`MedContrastError` naming the file and key when a matching key has
    another shape, and when no key matches at all (another architecture).
    """
    path = weights_path(path)
    backbone = encoder.backbone
    own = backbone.state_dict()
    state = _strip_wrappers(read_state(path), set(own))
    state = _family_filter(state, backbone)
    name = name or getattr(getattr(encoder, "spec", None), "name", type(backbone).__name__)
    notes: list[str] = []
    fixed = {}
    for key, value in state.items():
        if key not in own:
            continue
        value = _fit(key, value, own[key], notes)
        if value.shape != own[key].shape:
            raise MedContrastError(
                f"{path}: {key} has shape {tuple(value.shape)}, the encoder {name} needs "
                f"{tuple(own[key].shape)} (another architecture or size?)"
            )
        fixed[key] = value
    if not fixed:
        raise MedContrastError(
            f"{path}: none of its {len(state)} weight names match the encoder {name} "
            f"(file: {_first(sorted(state))}; encoder: {_first(list(own))})"
        )
    backbone.load_state_dict(fixed, strict=False)
    missing = [k for k in own if k not in fixed]
    unused = [k for k in state if k not in own]
    return LoadedWeights(path, len(fixed), len(own), missing, unused, notes)
