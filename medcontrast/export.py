"""Encoder-only weights: written so that timm and MONAI load them without renaming keys.

``encoder.pth`` is the backbone's own ``state_dict``:

* timm: ``timm.create_model("local-dir:RUN", pretrained=True)`` reads ``config.json`` (timm's
  own metadata: architecture, ``in_chans``, ``num_classes=0``, and ``input_size``, ``mean``,
  ``std`` for :func:`timm.data.resolve_data_config`) and the folder's one ``.pth``;
* MONAI: ``monai.networks.nets.resnet18(spatial_dims=3, n_input_channels=1, feed_forward=False,
  conv1_t_stride=2).load_state_dict(torch.load("encoder.pth"))``;
* medcontrast: ``medcontrast.load_encoder(run_folder_or_file)``.

``encoder.json`` says which architecture the weights belong to and, under ``preprocessing``,
the full deterministic preprocessing its inputs had (:meth:`PreprocessSpec.to_record`), which
:func:`medcontrast.preprocess` applies to new files.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from medcontrast.checkpoint import atomic_save
from medcontrast.data.preprocessing import PreprocessSpec
from medcontrast.errors import MedContrastError, first_line
from medcontrast.models.encoders import Encoder, EncoderSpec, build_from_spec, takes_img_size

WEIGHTS, SPEC, TIMM_CONFIG = "encoder.pth", "encoder.json", "config.json"


def export_encoder(
    encoder: Encoder, folder: str | Path, preprocessing: PreprocessSpec | None = None
) -> Path:
    """Write ``encoder.pth``, ``encoder.json`` and, for a timm encoder, timm's ``config.json``
    into ``folder``; returns the weight file. ``preprocessing``: what the encoder's inputs went
    through (recorded so that new images get the same)."""
    folder = Path(folder)
    state = {k: v.detach().cpu().clone() for k, v in encoder.backbone.state_dict().items()}
    atomic_save(state, folder / WEIGHTS)
    info = {**encoder.spec.to_dict(), "num_features": encoder.num_features}
    if preprocessing is not None:
        info["preprocessing"] = preprocessing.to_record()
    (folder / SPEC).write_text(json.dumps(info, indent=2))
    if encoder.spec.name.startswith("timm:"):
        config = timm_config(encoder, preprocessing)
        (folder / TIMM_CONFIG).write_text(json.dumps(config, indent=2))
    return folder / WEIGHTS


def timm_config(encoder: Encoder, preprocessing: PreprocessSpec | None) -> dict:
    """timm's ``config.json`` (the Hugging Face Hub layout that ``local-dir:`` reads): the model
    is rebuilt with our channels and no classifier, and ``resolve_data_config`` gives our input
    size and the identity normalisation (the encoder saw [0, 1] values, never ImageNet's mean
    and std)."""
    spec, net = encoder.spec, encoder.backbone
    model = spec.name.partition(":")[2]
    size = list(preprocessing.size) if preprocessing else list(spec.size)
    args = {"in_chans": spec.in_channels, "num_classes": 0, **spec.kwargs}
    if getattr(net, "dynamic_img_size", False):
        args["dynamic_img_size"] = True
    if spec.size and takes_img_size(model):
        args["img_size"] = spec.size[0]
    cfg = {
        "input_size": [spec.in_channels, *size] if size else None,
        "mean": [0.0] * spec.in_channels,
        "std": [1.0] * spec.in_channels,
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "crop_mode": "center",
        "num_classes": 0,
    }
    own = getattr(net, "pretrained_cfg", None) or {}
    cfg.update({k: own[k] for k in ("first_conv", "classifier") if own.get(k)})
    out = {
        "architecture": model,
        "num_classes": 0,
        "num_features": encoder.num_features,
        "model_args": args,
        "pretrained_cfg": {k: v for k, v in cfg.items() if v is not None},
    }
    if preprocessing is not None:  # timm ignores keys it does not know
        out["medcontrast_preprocessing"] = preprocessing.to_record()
    return out


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
    encoder = build_from_spec(EncoderSpec.from_dict(info))
    state = torch.load(weights, map_location=map_location, weights_only=True)
    try:
        encoder.backbone.load_state_dict(state)
    except RuntimeError as exc:
        raise MedContrastError(f"{weights} does not fit {info['name']}: {first_line(exc)}") from exc
    return encoder
