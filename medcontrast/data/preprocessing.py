"""Deterministic preprocessing: one sample's pixels -> a model-ready (C, *size) array.

Built from MONAI array transforms (orientation, spacing, intensity scaling, resizing), applied
once per sample and cached (see :mod:`medcontrast.data.cache`); random augmentation comes later.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields
from typing import Protocol

import numpy as np
import torch

from medcontrast.data.loading import Loaded
from medcontrast.errors import MedContrastError

INTENSITY_MODES = ("auto", "percentile", "window", "minmax", "none")
RESIZE_MODES = ("pad", "stretch")


class PreprocessSettings(Protocol):
    """What :meth:`PreprocessSpec.from_settings` reads (the config's ``data:`` section has it)."""

    ndim: int
    size: list[int]
    spacing: list[float] | None
    intensity: str
    window: list[float]
    percentiles: list[float]
    resize: str


@dataclass(frozen=True)
class PreprocessSpec:
    """Everything that decides a cached array; its hash names the cache file."""

    ndim: int
    size: tuple[int, ...]
    spacing: tuple[float, ...] | None = None
    intensity: str = "auto"
    window: tuple[float, float] = (-1000.0, 1000.0)
    percentiles: tuple[float, float] = (0.5, 99.5)
    resize: str = "pad"

    def __post_init__(self) -> None:
        if self.ndim not in (2, 3):
            raise MedContrastError(f"data.ndim must be 2 or 3, got {self.ndim}")
        if len(self.size) != self.ndim or min(self.size) < 1:
            raise MedContrastError(
                f"data.size must be {self.ndim} whole numbers of 1 or more (one per axis, "
                f"data.ndim={self.ndim}), not {list(self.size)}"
            )
        if self.spacing is not None and len(self.spacing) != self.ndim:
            raise MedContrastError(
                f"data.spacing {list(self.spacing)} must have {self.ndim} values"
            )
        if self.intensity not in INTENSITY_MODES:
            raise MedContrastError(
                f"data.intensity must be one of {INTENSITY_MODES}, got {self.intensity!r}"
            )
        if self.resize not in RESIZE_MODES:
            raise MedContrastError(
                f"data.resize must be one of {RESIZE_MODES}, got {self.resize!r}"
            )
        if len(self.window) != 2 or not self.window[0] < self.window[1]:
            raise MedContrastError(
                f"data.window must be two values [low, high] with low < high, not "
                f"{list(self.window)}"
            )
        if len(self.percentiles) != 2 or not 0 <= self.percentiles[0] < self.percentiles[1] <= 100:
            raise MedContrastError(
                f"data.percentiles must be [low, high] with 0 <= low < high <= 100, not "
                f"{list(self.percentiles)}"
            )

    @classmethod
    def from_settings(cls, settings: PreprocessSettings) -> PreprocessSpec:
        """The cache-defining part of a ``data:`` section (lists become tuples)."""
        return cls.from_record({f.name: getattr(settings, f.name) for f in fields(cls)})

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def to_record(self) -> dict:
        """The full deterministic preprocessing as ``encoder.json`` records it: the settings,
        plus what :func:`preprocess` fixes whatever they are (spelled out, so that a reader of
        the file needs no medcontrast source)."""
        return {
            **asdict(self),
            "channels": 1,  # colour is converted to luminance on loading
            "orientation": "RAS" if self.ndim == 3 else None,
            "intensity_auto": "window for CT, percentiles for everything else",
            "output": f"float32 (1, {', '.join(map(str, self.size))}) in [0, 1]",
        }

    @classmethod
    def from_record(cls, record: dict) -> PreprocessSpec:
        """Inverse of :meth:`to_record`, also of a ``data:`` mapping: its fields (lists become
        tuples, an empty spacing none; a missing optional one takes its default), the
        descriptive ones ignored."""
        values = {
            f.name: tuple(record[f.name]) if isinstance(record[f.name], list) else record[f.name]
            for f in fields(cls)
            if f.name in record
        }
        values["spacing"] = values.get("spacing") or None
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise MedContrastError(f"preprocessing record {record} is incomplete: {exc}") from exc


def preprocess(loaded: Loaded, spec: PreprocessSpec, modality: str = "") -> np.ndarray:
    """Loaded pixels -> float32 array (1, *spec.size).

    Intensity ``auto`` windows CT (Hounsfield units mean the same in every scanner) and scales
    everything else between percentiles (MR and radiograph values have no fixed meaning).

    2D: (H, W) -> (1, H, W). 3D: (X, Y, Z) with a RAS affine -> reoriented to RAS, optionally
    resampled to ``spec.spacing`` mm, -> (1, X, Y, Z). Then intensity scaling to [0, 1] and
    resizing (keeping the aspect ratio and padding, or stretching).
    """
    from monai.data import MetaTensor
    from monai.transforms import (
        Orientation,
        Resize,
        ResizeWithPadOrCrop,
        ScaleIntensity,
        ScaleIntensityRange,
        ScaleIntensityRangePercentiles,
        Spacing,
    )

    arr = loaded.array
    if arr.ndim != spec.ndim:
        raise MedContrastError(f"sample is {arr.ndim}D but data.ndim is {spec.ndim}")
    if spec.ndim == 3:
        affine = loaded.affine if loaded.affine is not None else np.eye(4)
    else:
        sp = loaded.spacing or (1.0, 1.0)
        affine = np.diag([sp[0], sp[1], 1.0, 1.0])
    img = MetaTensor(
        torch.as_tensor(np.ascontiguousarray(arr), dtype=torch.float32)[None],
        affine=torch.as_tensor(affine, dtype=torch.float64),
    )
    if spec.ndim == 3:
        img = Orientation(axcodes="RAS", labels=(("L", "R"), ("P", "A"), ("I", "S")))(img)
    if spec.spacing is not None and (loaded.spacing is not None or spec.ndim == 3):
        img = Spacing(pixdim=spec.spacing, mode="bilinear")(img)
    intensity = spec.intensity
    if intensity == "auto":
        intensity = "window" if modality.upper() == "CT" else "percentile"
    if intensity == "percentile":
        img = ScaleIntensityRangePercentiles(*spec.percentiles, b_min=0.0, b_max=1.0, clip=True)(
            img
        )
    elif intensity == "window":
        img = ScaleIntensityRange(*spec.window, b_min=0.0, b_max=1.0, clip=True)(img)
    elif intensity == "minmax":
        img = ScaleIntensity(minv=0.0, maxv=1.0)(img)
    mode = "bilinear" if spec.ndim == 2 else "trilinear"
    if spec.resize == "stretch":
        img = Resize(spatial_size=spec.size, mode=mode, anti_aliasing=True)(img)
    else:
        img = Resize(
            spatial_size=max(spec.size), size_mode="longest", mode=mode, anti_aliasing=True
        )(img)
        img = ResizeWithPadOrCrop(spatial_size=spec.size)(img)
    out = img.as_tensor() if hasattr(img, "as_tensor") else torch.as_tensor(img)
    return out.numpy().astype(np.float32, copy=False)
