"""Encoder-only weights: written so that timm and MONAI load them without renaming keys.

``encoder.pth`` is the backbone's own ``state_dict``:

* timm: ``timm.create_model(name, in_chans=1, num_classes=0, pretrained=True,
  pretrained_cfg_overlay=dict(file="encoder.pth"))``;
* MONAI: ``monai.networks.nets.resnet18(spatial_dims=3, n_input_channels=1, feed_forward=False,
  conv1_t_stride=2).load_state_dict(torch.load("encoder.pth"))``;
* medcontrast: ``medcontrast.load_encoder(run_folder_or_file)``.

``encoder.json`` says which architecture the weights belong to.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from medcontrast.checkpoint import atomic_save
from medcontrast.errors import MedContrastError, first_line
from medcontrast.models.encoders import Encoder, EncoderSpec, build_from_spec

WEIGHTS, SPEC = "encoder.pth", "encoder.json"


def export_encoder(encoder: Encoder, folder: str | Path) -> Path:
    """Write ``encoder.pth`` and ``encoder.json`` into ``folder``; returns the weight file."""
    folder = Path(folder)
    state = {k: v.detach().cpu().clone() for k, v in encoder.backbone.state_dict().items()}
    atomic_save(state, folder / WEIGHTS)
    info = {**encoder.spec.to_dict(), "num_features": encoder.num_features}
    (folder / SPEC).write_text(json.dumps(info, indent=2))
    return folder / WEIGHTS


def load_encoder(path: str | Path, map_location: str | torch.device = "cpu") -> Encoder:
    """Rebuild an exported encoder from a run folder or an ``encoder.pth`` (with its json)."""
    path = Path(path)
    weights = path / WEIGHTS if path.is_dir() else path
    spec_path = weights.with_name(SPEC)
    if not weights.exists():
        raise MedContrastError(f"no encoder weights at {weights} (is the run finished?)")
    if not spec_path.exists():
        raise MedContrastError(
            f"{spec_path} is missing: it says which architecture {weights.name} is"
        )
    info = json.loads(spec_path.read_text())
    info.pop("num_features", None)
    encoder = build_from_spec(EncoderSpec(**info))
    state = torch.load(weights, map_location=map_location, weights_only=True)
    try:
        encoder.backbone.load_state_dict(state)
    except RuntimeError as exc:
        raise MedContrastError(f"{weights} does not fit {info['name']}: {first_line(exc)}") from exc
    return encoder
