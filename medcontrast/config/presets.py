"""Presets per kind of image (radiograph, CT, MRI, ultrasound, mammography, mask, none): the
augmentation, and the self-supervised method a config that names none pretrains with."""

from __future__ import annotations

import difflib
from typing import Any

from medcontrast.errors import MedContrastError

# Augmentation presets: a YAML file or the command line says ``views.preset: ct`` and may still
# set any single view key, which then wins over the preset.
VIEW_PRESETS: dict[str, dict[str, object]] = {
    # Chest and skeletal radiographs: left-right flips are plausible, 90-degree turns are not.
    "radiograph": dict(
        crop_scale=[0.5, 1.0],
        flip_axes=[1],
        rot90_prob=0.0,
        rotate_deg=10.0,
        contrast_prob=0.5,
        hist_shift_prob=0.2,
        bias_field_prob=0.2,
        noise_prob=0.3,
        blur_prob=0.2,
        dropout_prob=0.2,
    ),
    # CT in Hounsfield units windowed to [0, 1]: mild intensity changes, no bias field.
    "ct": dict(
        crop_scale=[0.6, 1.0],
        flip_axes=[0],
        rotate_deg=10.0,
        contrast_prob=0.3,
        gamma=[0.8, 1.25],
        hist_shift_prob=0.1,
        bias_field_prob=0.0,
        noise_prob=0.3,
        noise_std=0.03,
        blur_prob=0.2,
        dropout_prob=0.2,
    ),
    # MRI: arbitrary intensity scale and coil bias fields.
    "mri": dict(
        crop_scale=[0.6, 1.0],
        flip_axes=[0],
        rotate_deg=10.0,
        contrast_prob=0.5,
        hist_shift_prob=0.3,
        bias_field_prob=0.5,
        bias_field_coeff=0.4,
        noise_prob=0.3,
        blur_prob=0.2,
        dropout_prob=0.2,
    ),
    # B-mode ultrasound (2D). Spatial: the probe is at the top, so depth runs down axis 0 and
    # shadows fall down it: no up-down flip and no quarter turns; left-right flips are a probe
    # held the other way round. A probe's angle: rotations; depth settings: zoom. (Tissue
    # compressed under the probe would call for elastic deformation, left out while its MONAI
    # and batched paths disagree: the MONAI one moves pixels about 3x as far.) Intensity: speckle is
    # multiplicative (Burckhardt 1978), so its noise is too (noise_kind: speckle) and additive
    # noise is never drawn; speckle grain changes with the transducer's frequency: blur;
    # gain, time-gain compensation and dynamic range differ per machine and operator: contrast,
    # a smooth bias field (a gain that varies with depth) and scale; gain multiplies, so no
    # shift (anechoic fluid stays black). No dropout holes: acoustic shadows are bands that
    # run down from bone or calcification, which rectangular holes do not imitate, and real
    # ones are in the data already. Crops keep most of the sector (a small crop of speckle
    # alone is texture without anatomy). Contrastive learning on ultrasound with crops, flips
    # and intensity changes: USCL (Chen et al., MICCAI 2021).
    "ultrasound": dict(
        crop_scale=[0.6, 1.0],
        flip_axes=[1],
        rot90_prob=0.0,
        affine_prob=0.5,
        rotate_deg=10.0,
        scale=0.15,
        elastic_prob=0.0,
        contrast_prob=0.5,
        gamma=[0.7, 1.5],
        hist_shift_prob=0.0,
        scale_intensity_prob=0.5,
        shift_intensity_prob=0.0,
        bias_field_prob=0.5,
        bias_field_coeff=0.3,
        noise_prob=0.5,
        noise_std=0.15,
        noise_kind="speckle",
        blur_prob=0.3,
        blur_sigma=[0.25, 1.0],
        sharpen_prob=0.0,
        dropout_prob=0.0,
    ),
    # Screening mammography (2D, CC and MLO views). Findings are small: microcalcifications are
    # 0.1-1 mm, a few pixels at the 0.05-0.1 mm detector pitch, so nothing may erase them: no
    # blur, no noise, no dropout holes, mild zoom, and crops that zoom in (a crop resized back
    # magnifies) rather than shrink; pair it with a high data.size (>= 512; docs/small-archive.md).
    # Laterality: a left breast mirrored left-right is a plausible right breast (the chest wall
    # changes side), so flips run along axis 1 only; an up-down flip would put the pectoral
    # muscle of an MLO view at the bottom, which no view has: never, nor quarter turns.
    # Intensity: vendors' processing differs (contrast, a gain), the compressed breast's
    # thickness gives a smooth gradient from chest wall to skin line: a mild bias field.
    "mammography": dict(
        crop_scale=[0.5, 1.0],
        flip_axes=[1],
        rot90_prob=0.0,
        affine_prob=0.3,
        rotate_deg=5.0,
        scale=0.05,
        elastic_prob=0.0,
        contrast_prob=0.5,
        gamma=[0.8, 1.25],
        hist_shift_prob=0.2,
        bias_field_prob=0.3,
        bias_field_coeff=0.2,
        noise_prob=0.0,
        blur_prob=0.0,
        sharpen_prob=0.0,
        dropout_prob=0.0,
    ),
    # Binary shape masks (e.g. AdrenalMNIST3D): geometry only.
    "mask": dict(
        crop_scale=[0.7, 1.0],
        flip_axes=[0, 1, 2],
        flip_prob=0.5,
        rot90_prob=0.5,
        affine_prob=0.7,
        rotate_deg=15.0,
        scale=0.15,
        elastic_prob=0.3,
        contrast_prob=0.0,
        hist_shift_prob=0.0,
        scale_intensity_prob=0.0,
        shift_intensity_prob=0.0,
        bias_field_prob=0.0,
        noise_prob=0.0,
        blur_prob=0.3,
        dropout_prob=0.2,
    ),
    "none": dict(
        crop_prob=0.0,
        flip_prob=0.0,
        rot90_prob=0.0,
        affine_prob=0.0,
        elastic_prob=0.0,
        contrast_prob=0.0,
        hist_shift_prob=0.0,
        scale_intensity_prob=0.0,
        shift_intensity_prob=0.0,
        bias_field_prob=0.0,
        noise_prob=0.0,
        blur_prob=0.0,
        sharpen_prob=0.0,
        dropout_prob=0.0,
    ),
}


def with_preset(views: dict[str, Any], prefix: str = "views.") -> dict[str, Any]:
    """Preset values under the explicitly given ones."""
    name = views.get("preset") or ""
    if not name:
        return views
    if name not in VIEW_PRESETS:
        close = difflib.get_close_matches(str(name), list(VIEW_PRESETS), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        raise MedContrastError(
            f"unknown {prefix}preset {name!r}{hint}; known: {', '.join(VIEW_PRESETS)}"
        )
    return {**VIEW_PRESETS[name], **views}


# The method of a config that names none (``method.name`` left out): the best on the CPU proxy
# (docs/benchmarks.md, "Which method: VICReg and DINO beside SimCLR and BYOL").
DEFAULT_METHOD = "simclr"

# The method per ``views.preset`` where the config names none. Measured on the proxy for
# radiographs (PneumoniaMNIST) and binary mask volumes (AdrenalMNIST3D); CT and MRI follow the
# 3D result, as no CT or MRI intensity set was measured (docs/benchmarks.md says so).
METHOD_PRESETS: dict[str, str] = {
    "radiograph": "simclr",
    "ct": "simclr",
    "mri": "simclr",
    "ultrasound": "simclr",  # not measured on ultrasound: the default (docs/benchmarks.md)
    "mammography": "simclr",  # not measured on mammography: the default
    "mask": "simclr",
    "none": DEFAULT_METHOD,
}


def with_method_preset(tree: dict[str, Any]) -> dict[str, Any]:
    """``tree`` with ``method.name`` filled from its views preset where it names no method."""
    method = tree.get("method")
    if method is not None and not isinstance(method, dict):
        return tree  # not a mapping: from_dict names the error
    if (method or {}).get("name"):
        return tree
    views = tree.get("views")
    preset = views.get("preset") if isinstance(views, dict) else ""
    name = METHOD_PRESETS.get(preset or "", DEFAULT_METHOD)
    return {**tree, "method": {**(method or {}), "name": name}}
