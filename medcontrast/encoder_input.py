"""An exported encoder's input: the preprocessing its run recorded, applied to a new file or array.

``encoder.json`` carries the run's deterministic preprocessing (:meth:`PreprocessSpec.to_record`);
:func:`preprocess_input` reads a DICOM, NIfTI or PNG/JPEG file as ``index`` and the cache do and
gives the array the encoder saw in pretraining, bit for bit (the cache keeps it as float16).
Runs exported before the record existed still work: their ``config.yaml`` holds the same settings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import yaml

from medcontrast.archive.scan import scan_file
from medcontrast.archive.series import samples_from_files
from medcontrast.data.loading import Loaded, SampleLoadError, check_pixels, load_sample
from medcontrast.data.preprocessing import PreprocessSpec, preprocess
from medcontrast.errors import MedContrastError

ENCODER_JSON = "encoder.json"


def input_spec(run: str | Path) -> PreprocessSpec:
    """The preprocessing of the encoder in ``run`` (a run folder, its ``encoder.pth`` or its
    ``encoder.json``)."""
    path = Path(run)
    folder = path if path.is_dir() else path.parent
    spec_file = folder / ENCODER_JSON
    if not spec_file.exists():
        raise MedContrastError(
            f"{spec_file} is missing: it records the encoder's architecture and preprocessing "
            "(is this a finished medcontrast run folder?)"
        )
    try:
        info = json.loads(spec_file.read_text())
    except ValueError as exc:
        raise MedContrastError(f"{spec_file} is not valid JSON ({exc})") from exc
    if "preprocessing" in info:
        return PreprocessSpec.from_record(info["preprocessing"])
    return _from_run_config(folder, spec_file)


def _from_run_config(folder: Path, spec_file: Path) -> PreprocessSpec:
    # Exports before encoder.json held the preprocessing: the run's config.yaml has its settings.
    config = folder / "config.yaml"
    if not config.exists():
        raise MedContrastError(
            f"{spec_file} does not record the preprocessing (written by an older medcontrast) "
            f"and {config} is not there to recover it from"
        )
    data = (yaml.safe_load(config.read_text()) or {}).get("data", {})
    return PreprocessSpec.from_record(data)


def _as_spec(encoder: str | Path | PreprocessSpec) -> PreprocessSpec:
    return encoder if isinstance(encoder, PreprocessSpec) else input_spec(encoder)


def preprocess_input(
    image: str | Path | Sequence[str | Path] | np.ndarray,
    encoder: str | Path | PreprocessSpec,
    *,
    modality: str | None = None,
    spacing: tuple[float, ...] | None = None,
    affine: np.ndarray | None = None,
) -> np.ndarray:
    """One image -> the float32 array (1, *size) in [0, 1] that the encoder takes (add a batch
    axis and convert with ``torch.from_numpy(x)[None]``).

    Args:
        image: a DICOM file (one image, or a multi-frame volume), the files of one DICOM series
            (a volume), a NIfTI file, a PNG/JPEG/TIFF export, or an array: 2D (H, W) or 3D (X, Y, Z) in RAS order (as nibabel gives it).
        encoder: a run folder, its ``encoder.pth`` or ``encoder.json``, or a
            :class:`PreprocessSpec`.
        modality: "CT" selects the Hounsfield window under intensity ``auto``; read from the
            DICOM header (or a BIDS file name) when not given.
        spacing, affine: of an array (mm per axis; a 4x4 voxel-to-RAS matrix); files carry theirs.
    """
    spec = _as_spec(encoder)
    if isinstance(image, np.ndarray):
        loaded = Loaded(np.asarray(image, dtype=np.float32), spacing, affine)
        name, found = "array", ""
    else:
        paths = [Path(p) for p in ([image] if isinstance(image, str | Path) else image)]
        loaded, found = read_image(paths)
        name = paths[0].name
    shape = tuple(loaded.array.shape)
    if spec.ndim == 2 and len(shape) == 3 and (shape[-1] in (3, 4) or shape[0] in (3, 4)):
        raise MedContrastError(
            f"{name} {shape} looks like a colour image; the encoder takes one grey channel "
            "(convert to luminance first, as medcontrast does for colour files)"
        )
    if loaded.array.ndim != spec.ndim:
        raise MedContrastError(
            f"{name} is {loaded.array.ndim}D ({tuple(loaded.array.shape)}) but the encoder "
            f"takes {spec.ndim}D inputs"
        )
    try:
        check_pixels(loaded.array, name)
    except SampleLoadError as exc:
        raise MedContrastError(str(exc)) from exc
    return preprocess(loaded, spec, found if modality is None else modality)


def read_image(paths: list[Path]) -> tuple[Loaded, str]:
    """One image's pixels and modality: a file, or the files of one DICOM series, classified,
    stacked and read as ``index`` and the cache do; a clear error naming the file otherwise."""
    for path in paths:
        if not path.is_file():
            raise MedContrastError(f"{path}: no such file (a folder? use `medcontrast embed`)")
    root = Path(os.path.commonpath([p.parent for p in paths]))
    records = [scan_file(p, root) for p in paths]
    for path, record in zip(paths, records, strict=True):
        if record.error:
            raise MedContrastError(f"{path}: {record.error}")
    drafts = samples_from_files(records)
    if any(r.kind == "npz" for r in records) or len(drafts) != 1:
        raise MedContrastError(
            f"{paths[0]}{' ...' if len(paths) > 1 else ''}: holds {len(drafts) or 'no'} images, "
            "not one; pass one image (an array, a file, one series' files) or use "
            "`medcontrast embed`"
        )
    draft = drafts[0]
    if draft.error:
        raise MedContrastError(f"{paths[0]}: {draft.error}")
    try:
        return load_sample(draft.format, [root / f for f in draft.files], draft.member), (
            draft.modality
        )
    except SampleLoadError as exc:
        raise MedContrastError(str(exc)) from exc
