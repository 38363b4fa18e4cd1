"""``medcontrast phantoms``: the embedded default archive, written as real files.

What it writes under OUT_DIR (paths carry no identifiers, as in a PACS export):

* ``radiographs/STxxxxxx/SExxxxxx/IMxxxxxx[.dcm]``: chest radiographs, CR (MONOCHROME1, with
  ImagerPixelSpacing) or DX (MONOCHROME2, PixelSpacing), 2-4 per patient over 1-2 studies; one
  file in three has no extension. Label: ``consolidation`` or ``normal``.
* ``volumes/STxxxxxx/SExxxxxx/<random>``: head MR or CT as one DICOM file per slice; file names
  and InstanceNumbers do not follow slice position. Label: ``lesion`` or ``normal``.
* ``nifti/sub-xxxx/anat/sub-xxxx_{T1w,ct}.nii.gz``: head volumes with an oblique affine and
  anisotropic voxels.
* ``labels.csv`` (``path,label``) for about 40% of patients; the rest is unlabeled.

DICOM headers carry fake but realistic identifiers (PatientName, PatientID, PatientBirthDate,
AccessionNumber, InstitutionName...) so that privacy can be tested. The same seed gives the same
bytes.
"""

from __future__ import annotations

import gzip
import hashlib
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcontrast.errors import MedContrastError
from medcontrast.phantoms.anatomy import (
    chest_anatomy,
    chest_radiograph,
    consolidation_site,
    head_volume,
    radiograph_acquisition,
)
from medcontrast.phantoms.identities import patient_identity
from medcontrast.progress import progress_bar
from medcontrast.threads import thread_budget

LABEL_FRACTION = 0.4


@dataclass
class PhantomSummary:
    """What was written (counts only, no identifiers)."""

    out_dir: Path
    patients: int
    radiographs: int
    volumes: int
    dicom_files: int
    nifti_files: int
    labeled: int


class _Uids:
    """Deterministic DICOM UIDs: the same seed and name give the same UID."""

    def __init__(self, seed: int) -> None:
        self.seed = seed

    def __call__(self, *parts: object) -> str:
        # A "2.25." UID from a 128-bit hash (pydicom's generate_uid ignores its entropy sources
        # when asked for the 2.25 form, so it would not be reproducible).
        text = "\x00".join(["medcontrast-phantom", str(self.seed), *map(str, parts)])
        return "2.25." + str(int(hashlib.sha256(text.encode()).hexdigest()[:32], 16))


def _base_dataset(sop_class: str, sop_uid: str, identity: dict[str, str], study: dict[str, str]):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    for key, value in identity.items():
        setattr(ds, key, value)
    for key, value in study.items():
        setattr(ds, key, value)
    ds.Manufacturer = "medcontrast phantom"
    ds.BurnedInAnnotation = "NO"
    return ds


def _write_dicom(ds, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


def _radiograph_file(
    path: Path,
    pixels: np.ndarray,
    mono1: bool,
    spacing: float,
    uids: _Uids,
    key: tuple,
    identity: dict[str, str],
    study: dict[str, str],
    series_uid: str,
    number: int,
) -> None:
    from pydicom.uid import ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation

    stored = np.round(pixels * 4095).astype(np.uint16)
    if mono1:
        stored = (4095 - stored).astype(np.uint16)
    sop_class = ComputedRadiographyImageStorage if mono1 else DigitalXRayImageStorageForPresentation
    ds = _base_dataset(sop_class, uids("sop", *key), identity, study)
    ds.Modality = "CR" if mono1 else "DX"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = number
    ds.InstanceNumber = 1
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA" if number % 2 else "AP"
    ds.PatientOrientation = ["L", "F"]
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME1" if mono1 else "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    if mono1:
        ds.ImagerPixelSpacing = [spacing, spacing]
    else:
        ds.PixelSpacing = [spacing, spacing]
        ds.ImagerPixelSpacing = [spacing, spacing]
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, 0, "US"
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    ds.PixelData = stored.tobytes()
    _write_dicom(ds, path)


def _volume_series(
    folder: Path,
    vol: np.ndarray,
    modality: str,
    spacing: tuple[float, float, float],
    rng: np.random.Generator,
    uids: _Uids,
    key: tuple,
    identity: dict[str, str],
    study: dict[str, str],
    series_uid: str,
) -> int:
    """One file per axial slice; names random, InstanceNumber reversed for half the series."""
    from pydicom.uid import CTImageStorage, MRImageStorage

    nx, ny, nz = vol.shape
    origin = np.array([-nx * spacing[0] / 2, -ny * spacing[1] / 2, rng.uniform(-60, 0)])
    names = rng.choice(10**6, size=nz, replace=False)
    reverse = rng.random() < 0.5
    if modality == "CT":
        stored_all = np.clip(np.round(vol + 1024), 0, 4095).astype(np.uint16)
    else:
        stored_all = np.clip(np.round(vol / max(float(vol.max()), 1e-6) * 2000), 0, 4095).astype(
            np.uint16
        )
    for k in range(nz):
        sop_class = CTImageStorage if modality == "CT" else MRImageStorage
        ds = _base_dataset(sop_class, uids("sop", *key, k), identity, study)
        ds.Modality = modality
        ds.SeriesInstanceUID = series_uid
        ds.SeriesNumber = 3
        ds.InstanceNumber = (nz - k) if reverse else (k + 1)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [
            float(origin[0]),
            float(origin[1]),
            float(origin[2] + k * spacing[2]),
        ]
        ds.SliceThickness = spacing[2]
        ds.PixelSpacing = [spacing[1], spacing[0]]  # row spacing, column spacing
        ds.FrameOfReferenceUID = uids("for", *key)
        ds.Rows, ds.Columns = ny, nx
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        if modality == "CT":
            ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 1, -1024, "HU"
            ds.WindowCenter, ds.WindowWidth = 40, 80
            ds.KVP = 120
        else:
            ds.MagneticFieldStrength = 1.5
            ds.ScanningSequence = "GR"
            ds.RepetitionTime, ds.EchoTime = 8.0, 3.7
        ds.PixelData = np.ascontiguousarray(stored_all[:, :, k].T).tobytes()  # (rows, cols)
        _write_dicom(ds, folder / f"{int(names[k]):06d}")
    return nz


def _write_nifti(path: Path, vol: np.ndarray, modality: str, rng: np.random.Generator) -> None:
    """An oblique (rotated about the S axis), anisotropic NIfTI, gzip'd without a timestamp."""
    import nibabel as nib

    zooms = np.array([rng.uniform(3.8, 4.4), rng.uniform(3.8, 4.4), rng.uniform(5.5, 7.0)])
    phi = np.deg2rad(rng.uniform(-15, 15))
    rot = np.array([[np.cos(phi), -np.sin(phi), 0], [np.sin(phi), np.cos(phi), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(zooms)
    affine[:3, 3] = -affine[:3, :3] @ (np.array(vol.shape) / 2)
    data = (
        np.round(vol).astype(np.int16)
        if modality == "CT"
        else np.round(vol * 1000).astype(np.int16)
    )
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    img.header["descrip"] = b"medcontrast phantom"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(img.to_bytes(), compresslevel=6, mtime=0))


def _write_patient(
    args: tuple[Path, int, int, float],
) -> tuple[list[tuple[str, str]], dict[str, int]]:
    """Everything one patient contributes; a pure function of (seed, patient index)."""
    out, seed, p, volume_fraction = args
    prng = np.random.default_rng([seed, p])
    uids = _Uids(seed)
    identity = patient_identity(prng, p)
    labeled = prng.random() < LABEL_FRACTION
    anatomy = chest_anatomy(prng)
    n_studies = 1 if prng.random() < 0.6 else 2
    images_left = int(prng.integers(2, 5))
    sick = prng.random() < 0.45
    labels: list[tuple[str, str]] = []
    counts = {"radiographs": 0, "volumes": 0, "dicom": 0, "nifti": 0}
    for s in range(n_studies):
        study_folder = out / "radiographs" / f"ST{p * 4 + s + 1:06d}"
        study = {
            "StudyInstanceUID": uids("study", p, s),
            "StudyDate": f"20{int(prng.integers(18, 26))}{int(prng.integers(1, 13)):02d}"
            f"{int(prng.integers(1, 29)):02d}",
            "StudyTime": "101500",
            "AccessionNumber": f"ACC{int(prng.integers(10**8, 10**9))}",
            "StudyID": f"{int(prng.integers(1000, 9999))}",
            "StudyDescription": "XR CHEST",
        }
        # A follow-up study may show the consolidation resolved; within a study it stays put.
        finding = sick if s == 0 else (sick and prng.random() < 0.5)
        site = consolidation_site(prng) if finding else None
        n_here = images_left if s == n_studies - 1 else max(1, images_left // 2)
        images_left -= n_here
        mono1 = prng.random() < 0.5
        spacing = float(np.round(prng.uniform(1.6, 2.0), 3))
        for k in range(n_here):
            pixels = radiograph_acquisition(prng, chest_radiograph(prng, anatomy, site))
            name = f"IM{k + 1:06d}" + ("" if (p + k) % 3 == 0 else ".dcm")
            path = study_folder / f"SE{k + 1:06d}" / name
            _radiograph_file(
                path,
                pixels,
                mono1,
                spacing,
                uids,
                (p, s, k),
                identity,
                study,
                uids("series", p, s, k),
                k + 1,
            )
            counts["radiographs"] += 1
            counts["dicom"] += 1
            if labeled:
                labels.append(
                    (path.relative_to(out).as_posix(), "consolidation" if finding else "normal")
                )
    if prng.random() < volume_fraction:
        rel, lesion = _write_head(out, p, prng, uids, identity, counts)
        if labeled:
            labels.append((rel, "lesion" if lesion else "normal"))
    return labels, counts


def _write_head(
    out: Path,
    p: int,
    prng: np.random.Generator,
    uids: _Uids,
    identity: dict[str, str],
    counts: dict[str, int],
) -> tuple[str, bool]:
    """Patient ``p``'s head MR or CT, as a DICOM series or a NIfTI file (counted into
    ``counts``); returns its path under ``out`` and whether it shows a lesion."""
    modality = "CT" if prng.random() < 0.5 else "MR"
    lesion = prng.random() < 0.45
    vol = head_volume(prng, lesion, modality)
    if prng.random() < 0.5:
        study = {
            "StudyInstanceUID": uids("study", p, "head"),
            "StudyDate": "20240601",
            "StudyTime": "090000",
            "AccessionNumber": f"ACC{int(prng.integers(10**8, 10**9))}",
            "StudyDescription": f"{modality} HEAD",
        }
        folder = out / "volumes" / f"ST{p * 4 + 3:06d}" / "SE000003"
        inplane = float(np.round(prng.uniform(3.8, 4.4), 3))
        spacing3 = (inplane, inplane, float(np.round(prng.uniform(5.5, 7.0), 3)))
        counts["dicom"] += _volume_series(
            folder,
            vol,
            modality,
            spacing3,
            prng,
            uids,
            (p, "vol"),
            identity,
            study,
            uids("series", p, "head"),
        )
        rel = folder.relative_to(out).as_posix()
    else:
        sub = f"sub-{p + 1:04d}"
        path = out / "nifti" / sub / "anat" / f"{sub}_{'T1w' if modality == 'MR' else 'ct'}.nii.gz"
        _write_nifti(path, vol, modality, prng)
        counts["nifti"] += 1
        rel = path.relative_to(out).as_posix()
    counts["volumes"] += 1
    return rel, lesion


def make_phantoms(
    out_dir: str | Path,
    patients: int = 300,
    seed: int = 0,
    volume_fraction: float = 0.5,
    workers: int | None = None,
    progress: bool = True,
) -> PhantomSummary:
    """Write the phantom archive; see the module docstring for its layout.

    Each patient is a pure function of (seed, index), so patients are written in parallel and the
    result does not depend on ``workers``.
    """
    out = Path(out_dir)
    if patients < 4:
        raise MedContrastError("--patients must be at least 4")
    if out.exists() and any(out.iterdir()):
        raise MedContrastError(f"{out} exists and is not empty; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    workers = workers or min(4, thread_budget())
    jobs = [(out, seed, p, volume_fraction) for p in range(patients)]
    bar = dict(
        desc="phantoms", total=patients, unit="patient", disable=not progress, file=sys.stderr
    )
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            results = list(progress_bar(pool.map(_write_patient, jobs, chunksize=4), **bar))
    else:
        results = list(progress_bar(map(_write_patient, jobs), **bar))
    labels = [item for patient_labels, _ in results for item in patient_labels]
    totals = {k: sum(c[k] for _, c in results) for k in results[0][1]}
    lines = ["path,label"] + [f"{path},{label}" for path, label in labels]
    (out / "labels.csv").write_text("\n".join(lines) + "\n")
    return PhantomSummary(
        out,
        patients,
        totals["radiographs"],
        totals["volumes"],
        totals["dicom"],
        totals["nifti"],
        len(labels),
    )
