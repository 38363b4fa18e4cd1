"""Look at one archive file, by content, without decoding pixels.

``scan_file`` is a pure function of a path, so the walk can run it in a process pool; its result,
:class:`FileRecord`, holds what series stacking, labels and pseudonyms need. Raw identifiers stay in memory
(``DicomInfo.keys`` and ``phi``): they are hashed before anything is written.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medcontrast.errors import first_line

if TYPE_CHECKING:
    from pydicom import Dataset

NIFTI_SUFFIXES = (".nii", ".nii.gz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom", ".dic", ".ima", "")

# Modalities whose pixels are not an image of anatomy: dose grids, plans, structured reports...
NON_IMAGE_MODALITIES = {
    "RTDOSE": "RT Dose grid (a radiation dose map, not an image)",
    "RTSTRUCT": "RT Structure Set (contours, no image)",
    "RTPLAN": "RT Plan (no image)",
    "RTRECORD": "RT treatment record (no image)",
    "SR": "structured report (no image)",
    "KO": "key object selection (no image)",
    "PR": "presentation state (no image)",
    "REG": "registration object (no image)",
    "SEG": "segmentation object (labels, not an image)",
    "ECG": "ECG waveform (no image)",
}

# Identifying attributes whose values must never appear in an output (also in file paths).
PHI_TAGS = (
    "PatientID",
    "OtherPatientIDs",
    "AccessionNumber",
    "PatientBirthDate",
    "InstitutionName",
    "InstitutionAddress",
    "PatientAddress",
)
NAME_TAGS = ("PatientName", "ReferringPhysicianName", "PerformingPhysicianName")
_NON_WORD = re.compile(r"[^a-z0-9]+")


@dataclass
class DicomInfo:
    """What series stacking and loading need from a DICOM header (raw values; never written)."""

    modality: str
    sop_class: str
    transfer_syntax: str
    rows: int
    cols: int
    frames: int
    samples_per_pixel: int
    photometric: str
    position: list[float] | None
    orientation: list[float] | None
    frame_geometry: bool
    acquisition: str
    echo: str
    temporal: str
    keys: dict[str, str]  # patient_id, patient_name, birth_date, study_uid, series_uid, accession


@dataclass
class FileRecord:
    """One file of the archive, as the walk saw it."""

    rel: str
    kind: str  # dicom | nifti | image | npz | other
    error: str = ""  # non-empty: the file is skipped, for this reason
    dicom: DicomInfo | None = None
    shape: tuple[int, ...] = ()
    spacing: tuple[float, ...] | None = None
    members: dict[str, tuple[int, ...]] = field(default_factory=dict)  # npz: key -> shape
    npz_labels: dict[str, np.ndarray] = field(default_factory=dict)  # npz: "<split>_labels" arrays
    phi: set[tuple[str, ...]] = field(default_factory=set)  # identifying phrases (memory only)


def normalise(text: str) -> str:
    """Lower case, every run of non-alphanumerics turned into one space (for phrase matching)."""
    return _NON_WORD.sub(" ", text.lower()).strip()


def _phi_values(ds) -> set[tuple[str, ...]]:
    """Identifying values as phrase tuples; a path is identifying if it holds every phrase of one.

    A name counts when both its family and given parts appear (``DOE^JOHN`` matches a folder
    ``Doe_John`` but a file ``john.png`` alone does not); other values count whole.
    """
    values: set[tuple[str, ...]] = set()
    for tag in PHI_TAGS:
        value = ds.get(tag)
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            text = normalise(str(item)) if item is not None else ""
            if len(text) >= 3:
                values.add((text,))
    for tag in NAME_TAGS:
        value = ds.get(tag)
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            if item is None:
                continue
            parts = tuple(
                p for p in (normalise(x) for x in str(item).split("^")[:2]) if len(p) >= 2
            )
            if parts and len(" ".join(parts)) >= 3:
                values.add(parts)
    return values


def _suffix(name: str) -> str:
    lower = name.lower()
    if lower.endswith(".nii.gz"):
        return ".nii.gz"
    return os.path.splitext(lower)[1]


def _has_dicm_magic(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(132)
    return len(head) == 132 and head[128:132] == b"DICM"


def _first_line(exc: BaseException) -> str:
    return first_line(exc, 160)  # a manifest's status column stays short


def scan_file(path: Path, root: Path) -> FileRecord:
    """Classify one file and read its header; never raises for a bad file."""
    rel = path.relative_to(root).as_posix()
    try:
        size = path.stat().st_size
        if not os.access(path, os.R_OK):
            return FileRecord(rel, "other", "unreadable: permission denied")
        if size == 0:
            return FileRecord(rel, "other", "empty file (0 bytes)")
        suffix = _suffix(path.name)
        if suffix in NIFTI_SUFFIXES:
            return _scan_nifti(path, rel)
        if suffix == ".npz":
            return _scan_npz(path, rel)
        if suffix in IMAGE_SUFFIXES:
            return _scan_image(path, rel)
        if _has_dicm_magic(path):
            return _scan_dicom(path, rel, size, has_magic=True)
        if suffix in DICOM_SUFFIXES:
            return _scan_dicom(path, rel, size, has_magic=False)
        return FileRecord(rel, "other", f"not an image file ({suffix or 'no extension'})")
    except PermissionError:
        return FileRecord(rel, "other", "unreadable: permission denied")
    except OSError as exc:
        return FileRecord(rel, "other", f"unreadable: {exc.strerror or _first_line(exc)}")


def _scan_nifti(path: Path, rel: str) -> FileRecord:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)
        zooms = tuple(float(z) for z in img.header.get_zooms())
    except Exception as exc:
        return FileRecord(rel, "nifti", f"not a readable NIfTI file ({_first_line(exc)})")
    squeezed = list(shape)
    while len(squeezed) > 3 and squeezed[-1] == 1:
        squeezed.pop()
    if len(squeezed) > 3:
        return FileRecord(
            rel,
            "nifti",
            f"4D volume {'x'.join(map(str, shape))} (a time series or several "
            "volumes); medcontrast learns from 3D volumes: split it into 3D files first",
            shape=tuple(squeezed),
        )
    if len(squeezed) < 2:
        return FileRecord(rel, "nifti", f"wrong dimensions: NIfTI array of shape {shape}")
    if len(squeezed) == 3 and squeezed[2] == 1:
        return FileRecord(
            rel, "nifti", shape=(squeezed[1], squeezed[0]), spacing=(zooms[1], zooms[0])
        )
    if len(squeezed) == 2:
        return FileRecord(
            rel, "nifti", shape=(squeezed[1], squeezed[0]), spacing=(zooms[1], zooms[0])
        )
    return FileRecord(rel, "nifti", shape=tuple(squeezed), spacing=zooms[:3])


def _scan_npz(path: Path, rel: str) -> FileRecord:
    """Shapes from the .npy headers inside the zip (no image data read); labels are small and
    read whole."""
    import numpy.lib.format as npformat

    try:
        members: dict[str, tuple[int, ...]] = {}
        labels: dict[str, np.ndarray] = {}
        with zipfile.ZipFile(path) as zf:
            for name in zf.namelist():
                if not name.endswith(".npy"):
                    continue
                with zf.open(name) as fh:
                    version = npformat.read_magic(fh)
                    read = (
                        npformat.read_array_header_1_0
                        if version == (1, 0)
                        else npformat.read_array_header_2_0
                    )
                    shape = read(fh)[0]
                members[name[:-4]] = tuple(int(s) for s in shape)
            for key in members:
                if key.endswith("_labels"):
                    with zf.open(key + ".npy") as fh:
                        labels[key] = npformat.read_array(fh, allow_pickle=False)
    except Exception as exc:
        return FileRecord(rel, "npz", f"not a readable .npz archive ({_first_line(exc)})")
    splits = [k[: -len("_images")] for k in members if k.endswith("_images")]
    if not splits:
        return FileRecord(rel, "npz", "no '<split>_images' arrays: not a MedMNIST-style .npz")
    return FileRecord(rel, "npz", members=members, npz_labels=labels)


def _scan_image(path: Path, rel: str) -> FileRecord:
    from PIL import Image

    try:
        with Image.open(path) as img:
            width, height = img.size
            frames = getattr(img, "n_frames", 1)
            img.verify()  # checks the file structure without decoding all pixels
    except Exception as exc:
        return FileRecord(rel, "image", f"not a readable image ({_first_line(exc)})")
    if frames > 1:
        return FileRecord(rel, "image", f"multi-page image ({frames} pages) is not supported")
    return FileRecord(rel, "image", shape=(height, width))


def _float_list(value, n: int) -> list[float] | None:
    try:
        out = [float(v) for v in value]
    except (TypeError, ValueError):
        return None
    return out if len(out) == n else None


def _scan_dicom(path: Path, rel: str, size: int, has_magic: bool) -> FileRecord:
    from medcontrast.data.loading import SampleLoadError, read_dicom_header

    try:
        ds = read_dicom_header(path)
    except SampleLoadError:
        return FileRecord(rel, "dicom", "truncated file: it ends inside a DICOM element")
    except Exception as exc:
        reason = "not a DICOM file" if not has_magic else "not a readable DICOM file"
        return FileRecord(rel, "dicom" if has_magic else "other", f"{reason} ({_first_line(exc)})")
    sop = ds.get("SOPClassUID")
    sop_name = getattr(sop, "name", str(sop or ""))
    if not has_magic and sop is None and "Rows" not in ds and "PixelData" not in ds:
        return FileRecord(
            rel, "other", "not a DICOM file (no DICM marker and no DICOM image elements)"
        )
    modality = str(ds.get("Modality", "") or "").upper()
    phi = _phi_values(ds)
    reason = _not_an_image(ds, sop_name, modality) or _undecodable(ds, size)
    if reason:
        return FileRecord(rel, "dicom", reason, phi=phi)
    info = _dicom_info(ds, modality, sop_name)
    spacing = None
    for tag in ("PixelSpacing", "ImagerPixelSpacing"):
        value = _float_list(ds.get(tag), 2)
        if value and all(v > 0 for v in value):
            spacing = (value[0], value[1])
            break
    return FileRecord(
        rel, "dicom", dicom=info, shape=(info.rows, info.cols), spacing=spacing, phi=phi
    )


def _not_an_image(ds: Dataset, sop_name: str, modality: str) -> str:
    """Why a readable DICOM file holds no image we can use ("" when it holds one)."""
    if sop_name == "Media Storage Directory Storage":
        return "DICOMDIR index file (lists other files, holds no image)"
    if modality in NON_IMAGE_MODALITIES:
        return f"DICOM {NON_IMAGE_MODALITIES[modality]}"
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            return "float pixel data (parametric map) is not supported"
        return f"DICOM without pixel data ({sop_name or 'unknown SOP class'})"
    return ""


def _undecodable(ds: Dataset, size: int) -> str:
    """Why an image's pixels cannot be decoded: unknown encoding, no decoder installed, wrong
    dimensions, or fewer bytes than the header promises ("" when they can)."""
    from pydicom.pixels import get_decoder

    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts is None:
        return (
            "DICOM without a transfer syntax (no file meta header): "
            "cannot tell how the pixels are encoded"
        )
    try:
        decoder_ok = get_decoder(ts).is_available
    except NotImplementedError:
        decoder_ok = False
    if not decoder_ok:
        return (
            f"pixel data compressed as {getattr(ts, 'name', ts)} and no "
            "decoder for it is installed (pylibjpeg, pylibjpeg-libjpeg, "
            "pylibjpeg-openjpeg)"
        )
    rows, cols = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
    if rows < 2 or cols < 2:
        return f"wrong dimensions: {rows} rows x {cols} columns"
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    samples = int(ds.get("SamplesPerPixel", 1) or 1)
    element = ds.get_item(0x7FE00010, keep_deferred=True)
    if not ts.is_compressed and getattr(element, "length", None) not in (None, 0xFFFFFFFF):
        bits = int(ds.get("BitsAllocated", 16) or 16)
        expected = rows * cols * frames * samples * bits // 8
        tell = getattr(element, "value_tell", None)
        if element.length < expected or (tell is not None and tell + element.length > size):
            return (
                "truncated pixel data: the file is shorter than its "
                f"header says ({rows}x{cols}x{frames} frames)"
            )
    return ""


def _dicom_info(ds: Dataset, modality: str, sop_name: str) -> DicomInfo:
    """What series stacking and loading need of a decodable image's header."""
    from medcontrast.data.loading import frame_geometry

    ts = ds.file_meta.TransferSyntaxUID
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    keys = {
        "patient_id": str(ds.get("PatientID", "") or ""),
        "patient_name": str(ds.get("PatientName", "") or ""),
        "birth_date": str(ds.get("PatientBirthDate", "") or ""),
        "study_uid": str(ds.get("StudyInstanceUID", "") or ""),
        "series_uid": str(ds.get("SeriesInstanceUID", "") or ""),
        "accession": str(ds.get("AccessionNumber", "") or ""),
    }
    return DicomInfo(
        modality=modality or "OT",
        sop_class=sop_name,
        transfer_syntax=getattr(ts, "name", str(ts)),
        rows=int(ds.Rows),
        cols=int(ds.Columns),
        frames=frames,
        samples_per_pixel=int(ds.get("SamplesPerPixel", 1) or 1),
        photometric=str(ds.get("PhotometricInterpretation", "") or ""),
        position=_float_list(ds.get("ImagePositionPatient"), 3),
        orientation=_float_list(ds.get("ImageOrientationPatient"), 6),
        frame_geometry=frames > 1 and frame_geometry(ds) is not None,
        acquisition=str(ds.get("AcquisitionNumber", "") or ""),
        echo=str(ds.get("EchoNumbers", "") or ""),
        temporal=str(ds.get("TemporalPositionIdentifier", "") or ""),
        keys=keys,
    )
