"""Turn scanned files into samples: one row of the manifest each.

* A DICOM series of single-frame slices that share an orientation and size, with distinct
  positions along the slice normal, becomes one volume, its slices ordered by that position
  (not by file name or InstanceNumber, which need not follow anatomy).
* A multi-frame DICOM file is one volume (frames ordered by their plane positions when given).
* Every other image file is a sample of its own (radiographs, single CT/MR slices, exports).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from medcontrast.archive.scan import FileRecord
from medcontrast.data.dicom_geometry import order_by_position

VOLUME_MODALITIES = {"CT", "MR", "PT", "NM", "OT"}
MIN_SLICES = 3
_BIDS_SUBJECT = re.compile(r"^sub-[A-Za-z0-9]+$")
# BIDS file-name suffixes that tell a NIfTI file's modality (NIfTI headers do not).
_BIDS_MODALITY = {
    "t1w": "MR",
    "t2w": "MR",
    "flair": "MR",
    "pd": "MR",
    "dwi": "MR",
    "bold": "MR",
    "t2star": "MR",
    "ct": "CT",
    "pet": "PT",
}


def nifti_modality(rel: str) -> str:
    """``sub-01_T1w.nii.gz`` -> "MR", ``sub-01_ct.nii.gz`` -> "CT"; "" when the name does not say."""
    stem = rel.rsplit("/", 1)[-1].split(".", 1)[0]
    return _BIDS_MODALITY.get(stem.rsplit("_", 1)[-1].lower(), "") if "_" in stem else ""


@dataclass
class Draft:
    """A sample before pseudonymisation. ``keys`` hold raw identifiers (memory only)."""

    files: list[str]
    format: str  # dicom | dicom-series | nifti | image | npz
    modality: str
    ndim: int
    shape: tuple[int, ...]
    spacing: tuple[float, ...] | None
    keys: dict[str, str] = field(default_factory=dict)
    member: str = ""
    label: str = ""
    split: str = ""
    error: str = ""
    notes: list[str] = field(default_factory=list)
    pixels: str = ""  # digest of the decoded pixels (duplicates.pixel_digest), when verified
    coarse: str = ""  # duplicates.coarse_digest, when near-identical copies are looked for


def _bids_subject(rel: str) -> str:
    for part in rel.split("/")[:-1]:
        if _BIDS_SUBJECT.match(part):
            return part
    return ""


def _file_keys(rec: FileRecord) -> dict[str, str]:
    """Grouping keys for non-DICOM files: a BIDS subject folder, else the file is its own patient."""
    subject = _bids_subject(rec.rel)
    patient = f"bids:{subject}" if subject else f"file:{rec.rel}"
    return {"patient_id": patient, "study_uid": patient, "series_uid": f"file:{rec.rel}"}


def _dicom_patient(keys: dict[str, str], rel: str) -> str:
    if keys.get("patient_id"):
        return keys["patient_id"]
    if keys.get("patient_name"):
        return f"name:{keys['patient_name']}|{keys.get('birth_date', '')}"
    if keys.get("study_uid"):
        return f"study:{keys['study_uid']}"
    return f"file:{rel}"


def _dicom_keys(rec: FileRecord) -> dict[str, str]:
    raw = dict(rec.dicom.keys)
    raw["patient_id"] = _dicom_patient(raw, rec.rel)
    raw["study_uid"] = raw.get("study_uid") or raw.get("accession") or f"file:{rec.rel}"
    raw["series_uid"] = raw.get("series_uid") or f"file:{rec.rel}"
    return raw


def _single(rec: FileRecord, note: str = "") -> Draft:
    info = rec.dicom
    keys = _dicom_keys(rec)
    notes = [note] if note else []
    if info.frames > 1:
        if info.samples_per_pixel > 1:
            return Draft(
                [rec.rel],
                "dicom",
                info.modality,
                3,
                (),
                None,
                keys,
                error=f"colour multi-frame {info.modality} ({info.frames} frames; cine "
                "loop, not a volume): not supported",
            )
        if not info.frame_geometry:
            notes.append("no per-frame positions: frames stacked in file order")
        shape = (info.cols, info.rows, info.frames)
        spacing = (rec.spacing[1], rec.spacing[0], 0.0) if rec.spacing else None
        return Draft([rec.rel], "dicom", info.modality, 3, shape, spacing, keys, notes=notes)
    if info.samples_per_pixel > 1:
        notes.append("colour image converted to luminance")
    if rec.spacing is None:
        notes.append("pixel spacing unknown")
    return Draft([rec.rel], "dicom", info.modality, 2, rec.shape, rec.spacing, keys, notes=notes)


def _series_volumes(recs: list[FileRecord]) -> list[Draft]:
    """Split one SeriesInstanceUID into volumes and single images."""
    out: list[Draft] = []
    stackable: dict[tuple, list[FileRecord]] = defaultdict(list)
    for rec in recs:
        info = rec.dicom
        if (
            info.frames == 1
            and info.samples_per_pixel == 1
            and info.modality in VOLUME_MODALITIES
            and info.position is not None
            and info.orientation is not None
        ):
            ori = tuple(np.round(info.orientation, 3))
            stackable[(ori, info.rows, info.cols)].append(rec)
        else:
            out.append(_single(rec))
    orientations = {key[0] for key in stackable}
    for (ori, rows, cols), slices in stackable.items():
        if len(slices) < MIN_SLICES:
            note = (
                "image of a series whose slices differ in orientation; kept as a 2D image"
                if len(orientations) > 1
                else ""
            )
            out.extend(_single(r, note) for r in slices)
            continue
        out.extend(_stack(slices, list(ori), rows, cols))
    return out


def _stack(slices: list[FileRecord], ori: list[float], rows: int, cols: int) -> list[Draft]:
    order, dist = order_by_position([r.dicom.position for r in slices], ori)
    unique = np.unique(np.round(dist, 3))
    if len(unique) == 1:
        # Same plane repeated (several encodings or echoes of one slice): separate images.
        return [_single(r) for r in slices]
    if len(unique) < len(dist):
        # Several acquisitions or echoes interleaved in one series: split and try again.
        parts: dict[tuple, list[FileRecord]] = defaultdict(list)
        for r in slices:
            parts[(r.dicom.acquisition, r.dicom.echo, r.dicom.temporal)].append(r)
        if len(parts) > 1:
            drafts = []
            for part in parts.values():
                drafts.extend(
                    _stack(part, ori, rows, cols)
                    if len(part) >= MIN_SLICES
                    else [_single(r) for r in part]
                )
            return drafts
        first = slices[0]
        return [
            Draft(
                [r.rel for r in slices],
                "dicom-series",
                first.dicom.modality,
                3,
                (),
                None,
                _dicom_keys(first),
                error=f"series of {len(slices)} slices with only {len(unique)} distinct "
                "positions and nothing (acquisition, echo, time) to tell them apart",
            )
        ]
    ordered = [slices[i] for i in order]
    gaps = np.diff(dist)
    step = float(np.median(gaps))
    notes = []
    if np.max(np.abs(gaps - step)) > 0.1 * step + 1e-3:
        notes.append("uneven slice gaps (missing slices?); spacing is the median gap")
    first = ordered[0]
    ps = first.spacing
    if ps is None:
        notes.append("pixel spacing unknown")
    spacing = (ps[1], ps[0], round(step, 6)) if ps else (1.0, 1.0, round(step, 6))
    return [
        Draft(
            [r.rel for r in ordered],
            "dicom-series",
            first.dicom.modality,
            3,
            (cols, rows, len(ordered)),
            spacing,
            _dicom_keys(first),
            notes=notes,
        )
    ]


def samples_from_files(records: list[FileRecord]) -> list[Draft]:
    """All samples (including skipped ones) from the scanned files, in a stable order."""
    drafts: list[Draft] = []
    series: dict[str, list[FileRecord]] = defaultdict(list)
    for rec in records:
        if rec.error:
            keys = _dicom_keys(rec) if rec.dicom else _file_keys(rec)
            fmt = rec.kind if rec.kind in ("nifti", "image", "npz", "dicom") else "other"
            drafts.append(Draft([rec.rel], fmt, "", 0, rec.shape, None, keys, error=rec.error))
        elif rec.kind == "dicom":
            series[rec.dicom.keys.get("series_uid") or f"file:{rec.rel}"].append(rec)
        elif rec.kind == "nifti":
            ndim = len(rec.shape)
            drafts.append(
                Draft(
                    [rec.rel],
                    "nifti",
                    nifti_modality(rec.rel),
                    ndim,
                    rec.shape,
                    rec.spacing,
                    _file_keys(rec),
                )
            )
        elif rec.kind == "image":
            drafts.append(
                Draft(
                    [rec.rel],
                    "image",
                    "",
                    2,
                    rec.shape,
                    None,
                    _file_keys(rec),
                    notes=["pixel spacing unknown"],
                )
            )
        elif rec.kind == "npz":
            drafts.extend(_npz_drafts(rec))
    for uid in sorted(series):
        drafts.extend(_series_volumes(series[uid]))
    drafts.sort(key=_order)
    return drafts


def _order(d: Draft) -> tuple[str, str, int]:
    split, _, idx = d.member.partition(":")
    return d.files[0], split, int(idx) if idx.isdigit() else -1


def _npz_drafts(rec: FileRecord) -> list[Draft]:
    """One sample per image of a MedMNIST-style file; its splits are kept."""
    drafts = []
    for key in sorted(rec.members):
        if not key.endswith("_images"):
            continue
        split = key[: -len("_images")]
        shape = rec.members[key]
        spatial = shape[1:]
        if len(spatial) == 3 and spatial[-1] in (3, 4) and spatial[0] != spatial[-1]:
            spatial = spatial[:2]  # (H, W, RGB)
        ndim = len(spatial)
        labels = rec.npz_labels.get(f"{split}_labels")
        notes = []
        if labels is not None and labels.ndim == 2 and labels.shape[1] > 1:
            notes = ["multi-label targets are not supported: indexed unlabeled"]
            labels = None
        if labels is not None and len(labels) != shape[0]:
            notes = [
                f"{split}_labels has {len(labels)} rows for {shape[0]} images: indexed unlabeled"
            ]
            labels = None
        flat = labels.reshape(len(labels), -1)[:, 0] if labels is not None else None
        for i in range(shape[0]):
            # MedMNIST has no patient identifiers: every image counts as its own patient.
            keys = {"patient_id": f"npz:{rec.rel}:{split}:{i}", "study_uid": "", "series_uid": ""}
            keys["study_uid"] = keys["series_uid"] = keys["patient_id"]
            drafts.append(
                Draft(
                    [rec.rel],
                    "npz",
                    "",
                    ndim,
                    tuple(spatial),
                    None,
                    keys,
                    member=f"{split}:{i}",
                    split=_npz_split(split),
                    label="" if flat is None else str(int(flat[i])),
                    notes=list(notes),
                )
            )
    return drafts


def _npz_split(name: str) -> str:
    return {"training": "train", "validation": "val", "valid": "val", "testing": "test"}.get(
        name, name
    )
