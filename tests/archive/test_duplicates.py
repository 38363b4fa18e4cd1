"""``index`` finds images stored under two patients or two splits (a study exported twice under
a new ID): noted in their rows and the sidecar, dropped when asked; copies within one patient
are left alone; near-identical copies only when asked."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pydicom
from PIL import Image

from medcontrast.archive.duplicates import coarse_digest, pixel_digest
from medcontrast.archive.index import build_index, write_index


def _archive(phantom_archive, tmp_path, new_patient: bool):
    """Three phantom radiographs, plus a copy of the first: re-exported under a new patient ID
    (``new_patient``) or the same patient's file copied to another folder."""
    root = tmp_path / "archive"
    sources = sorted(phantom_archive.rglob("*.dcm"))[:3]
    for i, src in enumerate(sources):
        (root / f"p{i}").mkdir(parents=True)
        shutil.copy(src, root / f"p{i}" / "image.dcm")
    ds = pydicom.dcmread(sources[0])
    if new_patient:
        ds.PatientID, ds.PatientName = "REEXPORT-0001", "COPY^PLANTED"
        ds.StudyInstanceUID = pydicom.uid.generate_uid()
        ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    (root / "copy").mkdir()
    ds.save_as(root / "copy" / "image.dcm")
    return root


def test_a_planted_copy_across_two_patients_is_reported_and_dropped(phantom_archive, tmp_path):
    root = _archive(phantom_archive, tmp_path, new_patient=True)
    result = build_index(root, progress=False)
    (group,) = result.duplicates.groups
    assert group.kind == "pixel-identical" and group.patients == 2 and len(group.rows) == 2
    table = result.table
    assert all("pixel-identical to" in n for n in table.loc[group.rows, "notes"])
    assert (table["status"] == "ok").sum() == 4  # reported, nothing dropped
    assert "duplicates 1 groups of 2 samples" in result.summary()
    out = write_index(result, tmp_path / "m.csv", root)
    record = json.loads(out.with_suffix(".json").read_text())["duplicates"]
    assert record["groups"] == 1 and record["across_patients"] == 1 and record["dropped"] == 0

    dropped = build_index(root, progress=False, drop_duplicates=True).table
    kept, copy = dropped.loc[group.rows[0]], dropped.loc[group.rows[1]]
    assert kept["status"] == "ok" and copy["status"] == "skipped"
    assert copy["reason"].startswith(f"pixel-identical copy of {kept['sample_id']}")
    # no identifier of the copy reaches the manifest
    text = pd.read_csv(out, dtype=str).to_csv() + out.with_suffix(".json").read_text()
    assert "REEXPORT" not in text and "PLANTED" not in text


def test_a_copy_within_one_patient_is_not_reported(phantom_archive, tmp_path):
    root = _archive(phantom_archive, tmp_path, new_patient=False)
    result = build_index(root, progress=False)
    assert result.duplicates.groups == [] and result.duplicates.record()["checked"]
    unverified = build_index(root, progress=False, verify=False)
    assert not unverified.duplicates.checked
    assert "duplicates not checked" in unverified.summary()


def test_near_identical_copies_only_when_asked(tmp_path):
    root = tmp_path / "archive"
    root.mkdir()
    rng = np.random.default_rng(0)
    image = (np.add.outer(np.arange(64), np.arange(64)) * 2 % 255).astype(np.uint8)
    noisy = np.clip(image.astype(int) + rng.integers(-1, 2, image.shape), 0, 255).astype(np.uint8)
    Image.fromarray(image).save(root / "a.png")
    Image.fromarray(noisy).save(root / "b.png")  # the same picture re-encoded, another "patient"
    Image.fromarray(rng.integers(0, 255, (64, 64), dtype=np.uint8)).save(root / "c.png")
    assert build_index(root, progress=False).duplicates.groups == []
    (group,) = build_index(root, progress=False, near_duplicates=True).duplicates.groups
    assert group.kind == "near-identical" and len(group.rows) == 2


def test_medmnist_copies_across_splits(tmp_path):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, (4, 28, 28), dtype=np.uint8)
    test = images[:2].copy()
    test[1] = rng.integers(0, 255, (28, 28), dtype=np.uint8)
    np.savez(
        tmp_path / "tiny.npz",
        train_images=images,
        train_labels=np.zeros((4, 1), np.uint8),
        test_images=test,  # test image 0 is train image 0
        test_labels=np.zeros((2, 1), np.uint8),
    )
    result = build_index(tmp_path / "tiny.npz", progress=False)
    (group,) = result.duplicates.groups
    assert set(result.table.loc[group.rows, "member"]) == {"train:0", "test:0"}


def test_digests():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert pixel_digest(a) == pixel_digest(a.astype(np.uint16))  # the values, not the dtype
    assert pixel_digest(a) != pixel_digest(a.reshape(4, 3))  # nor the same bytes in another shape
    assert coarse_digest(a) == coarse_digest(a * 2 + 1)  # min-max scaled
    assert coarse_digest(np.ones((40, 40, 40))) == coarse_digest(np.ones((40, 40, 40)))
