"""Indexing real, phantom and broken archives."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from medcontrast.archive.index import build_index, write_index
from medcontrast.cli import main
from medcontrast.data.loading import load_sample
from medcontrast.data.manifest import read_manifest
from tests.conftest import shared_data


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {
        p.relative_to(root).as_posix(): (
            hashlib.md5(p.read_bytes()).hexdigest(),
            p.stat().st_mtime_ns,
        )
        for p in root.rglob("*")
        if p.is_file()
    }


def _accounted(manifest, root: Path) -> set[str]:
    files = set()
    for _, row in manifest.table.iterrows():
        files.update(p.relative_to(root).as_posix() for p in manifest.source_paths(row))
    return files


def test_phantoms_every_file_accounted_and_archive_unchanged(phantom_archive, tmp_path):
    before = _snapshot(phantom_archive)
    out = tmp_path / "m.csv"
    assert (
        main(
            [
                "index",
                str(phantom_archive),
                "--out",
                str(out),
                "--labels",
                str(phantom_archive / "labels.csv"),
                "--quiet",
            ]
        )
        == 0
    )
    assert _snapshot(phantom_archive) == before
    manifest = read_manifest(out)
    assert _accounted(manifest, phantom_archive) == set(before)
    ok = manifest.ok
    assert set(ok["format"]) == {"dicom", "dicom-series", "nifti"}
    assert (ok.groupby("patient")["split"].nunique() == 1).all()
    assert set(ok["split"]) == {"train", "val", "test"}
    labeled = ok[ok["label"] != ""]
    assert 0 < len(labeled) < len(ok)
    series = ok[ok["format"] == "dicom-series"].iloc[0]
    assert series["shape"] == "48x56x32" and series["ndim"] == 3
    paths = manifest.source_paths(series)
    z = [float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2]) for p in paths]
    assert z == sorted(z)  # ascending along the slice normal, whatever the file names say


def test_refuses_to_write_inside_the_archive(phantom_archive, capsys):
    assert (
        main(["index", str(phantom_archive), "--out", str(phantom_archive / "m.csv"), "--quiet"])
        == 2
    )
    assert "never modifies the archive" in capsys.readouterr().err


def test_monochrome1_is_inverted(phantom_manifest):
    manifest = read_manifest(phantom_manifest)
    means = {}
    for _, row in manifest.ok[manifest.ok["modality"].isin(["CR", "DX"])].iterrows():
        arr = load_sample(row["format"], manifest.source_paths(row)).array
        h = arr.shape[0]
        # Lungs (upper middle) are darker than the spine and mediastinum in every display.
        means.setdefault(row["modality"], []).append(
            arr[h // 3, :].mean() < arr[h // 3, arr.shape[1] // 2]
        )
    assert all(means["CR"]) and all(means["DX"])


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _dicom(path: Path, pixels: np.ndarray | None, modality: str = "CT", **extra) -> None:
    meta = FileMetaDataset()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientID = "BROKEN-PATIENT-1"
    ds.PatientName = "TEST^BROKEN"
    ds.SeriesInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    for k, v in extra.items():
        setattr(ds, k, v)
    if pixels is not None:
        ds.Rows, ds.Columns = pixels.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = pixels.astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture()
def broken_archive(tmp_path) -> Path:
    root = tmp_path / "broken"
    good = (np.arange(64 * 64).reshape(64, 64) % 4096).astype(np.uint16)
    _dicom(root / "good.dcm", good)
    _write(root / "zero.dcm", b"")
    _write(root / "notdicom.dcm", b"this is a text file pretending to be DICOM" * 10)
    _dicom(root / "full.dcm", good)
    data = (root / "full.dcm").read_bytes()
    _write(root / "truncated.dcm", data[: len(data) - 3000])
    (root / "full.dcm").unlink()
    _dicom(root / "sr.dcm", None, modality="SR")
    _dicom(root / "constant.dcm", np.full((32, 32), 7, np.uint16))
    nan = np.ones((8, 8, 8), np.float32)
    nan[2, 2, 2] = np.nan
    nib.save(nib.Nifti1Image(nan, np.eye(4)), root / "nan.nii.gz")
    nib.save(
        nib.Nifti1Image(np.random.rand(8, 8, 8, 3).astype(np.float32), np.eye(4)),
        root / "4d.nii.gz",
    )
    nib.save(nib.Nifti1Image(np.random.rand(9).astype(np.float32), np.eye(4)), root / "1d.nii")
    _write(root / "notes.txt", b"hello")
    locked = root / "locked.dcm"
    shutil.copy(root / "good.dcm", locked)
    os.chmod(locked, 0)
    return root


def test_broken_files_are_skipped_with_reasons(broken_archive, tmp_path, capsys):
    before = _snapshot(broken_archive)
    out = tmp_path / "m.csv"
    assert main(["index", str(broken_archive), "--out", str(out), "--quiet"]) == 0
    manifest = read_manifest(out)  # file names such as good.dcm are pseudonyms there
    names = [manifest.source_paths(row)[0].name for _, row in manifest.table.iterrows()]
    t = manifest.table.assign(name=names).set_index("name")
    reasons = t["reason"].to_dict()
    assert t.loc["good.dcm", "status"] == "ok"
    assert "empty file" in reasons["zero.dcm"]
    assert "not a DICOM file" in reasons["notdicom.dcm"]
    assert "truncated" in reasons["truncated.dcm"]
    assert "structured report" in reasons["sr.dcm"]
    assert "same value" in reasons["constant.dcm"]
    assert "NaN" in reasons["nan.nii.gz"]
    assert "4D" in reasons["4d.nii.gz"]
    assert "dimensions" in reasons["1d.nii"]
    assert "not an image file" in reasons["notes.txt"]
    if os.geteuid() != 0:  # root reads any file
        assert "permission" in reasons["locked.dcm"]
    assert (t["status"] == "skipped").sum() >= 9
    assert "skipped" in capsys.readouterr().out
    assert _snapshot(broken_archive) == before
    assert "BROKEN-PATIENT-1" not in out.read_text()


def test_nothing_usable_exits_non_zero(tmp_path):
    root = tmp_path / "empty"
    _write(root / "a.txt", b"x")
    assert main(["index", str(root), "--out", str(tmp_path / "m.csv"), "--quiet"]) == 1


def test_npz_and_image_folders(tmp_path):
    from PIL import Image

    root = tmp_path / "exports"
    for cls in ("Hand", "CXR"):
        for i in range(3):
            (root / cls).mkdir(parents=True, exist_ok=True)
            Image.fromarray((np.random.rand(20, 24) * 255).astype(np.uint8)).save(
                root / cls / f"{i}.png"
            )
    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "tiny.npz",
        train_images=rng.integers(0, 255, (5, 28, 28), dtype=np.uint8),
        train_labels=np.array([[0], [1], [0], [1], [0]], np.uint8),
        test_images=rng.integers(0, 255, (2, 28, 28), dtype=np.uint8),
        test_labels=np.array([[1], [0]]),
    )
    r = build_index(root, labels_from_folders=True, progress=False)
    ok = r.table[r.table["status"] == "ok"]
    assert sorted(set(ok["label"])) == ["CXR", "Hand"] and set(ok["shape"]) == {"20x24"}
    r = build_index(tmp_path / "tiny.npz", progress=False)
    ok = r.table[r.table["status"] == "ok"]
    assert len(ok) == 7 and set(ok["split"]) == {"train", "test"}
    train = ok[ok["split"] == "train"]
    assert list(train["label"]) == ["0", "1", "0", "1", "0"]
    assert list(train["member"]) == [f"train:{i}" for i in range(5)]


def test_labels_join_by_series_and_patient(phantom_archive, tmp_path):
    volumes = sorted((phantom_archive / "volumes").glob("*/*"))[0]
    ds = pydicom.dcmread(next(volumes.iterdir()), stop_before_pixels=True)
    labels = tmp_path / "labels.csv"
    labels.write_text(
        f"series_uid,patient_id,label\n{ds.SeriesInstanceUID},,lesion\n,{ds.PatientID},normal\n"
    )
    r = build_index(phantom_archive, labels=labels, progress=False)
    ok = r.table[r.table["status"] == "ok"]
    assert (ok[ok["format"] == "dicom-series"]["label"] == "lesion").sum() == 1
    assert (ok["label"] == "normal").sum() >= 2  # the same patient's radiographs, by PatientID


def test_real_reader_files(tmp_path):
    root = shared_data("readers").resolve()
    out = tmp_path / "readers.csv"
    result = build_index(root, progress=False)
    write_index(result, out, root)
    manifest = read_manifest(out)
    t = manifest.table
    assert _accounted(manifest, root) == {
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()
    }
    # Folder names are pseudonyms in the manifest; the real paths come back through the map.
    real = {i: manifest.source_paths(row) for i, row in t.iterrows()}
    assert "series_CT5N" not in out.read_text()
    by_file = {
        real[i][0].relative_to(root).as_posix(): row
        for i, row in t.iterrows()
        if not row["source"].startswith("private:")
    }
    ct5_index = next(i for i, paths in real.items() if "series_CT5N" in str(paths[0]))
    ct5 = t.loc[ct5_index]
    assert ct5["status"] == "ok" and ct5["shape"] == "16x16x5"
    order = [p.name for p in real[ct5_index]]
    assert order == ["3353", "3023", "2693", "2392", "2062"]  # by position, not by name
    for name in (
        "MR_small_jpeg_ls_lossless.dcm",
        "MR_small_RLE.dcm",
        "RG1_J2KR.dcm",
        "JPEG-LL.dcm",
        "MR_small_bigendian.dcm",
        "emri_small.dcm",
    ):
        assert by_file[f"dicom/{name}"]["status"] == "ok", name
    assert by_file["dicom/RG1_UNCR.dcm"]["shape"] == "1955x1841"
    for name, words in {
        "MR_truncated.dcm": "truncated",
        "waveform_ecg.dcm": "ECG",
        "rtdose.dcm": "RT Dose",
        "emri_small_jpeg_2k_lossless_too_short.dcm": "truncated",
        "no_meta.dcm": "DICOM",
        "nifti/example4d.nii.gz": "4D",
    }.items():
        key = name if "/" in name else f"dicom/{name}"
        assert by_file[key]["status"] == "skipped" and words in by_file[key]["reason"], name
    assert "JPEG" in by_file["dicom/JPEG-lossy.dcm"]["reason"]
