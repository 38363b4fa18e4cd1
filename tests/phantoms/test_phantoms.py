import hashlib
from pathlib import Path

import pydicom

from medcontrast.phantoms.writer import make_phantoms


def _tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes(tmp_path):
    a = make_phantoms(tmp_path / "a", patients=6, seed=5, workers=2, progress=False)
    b = make_phantoms(tmp_path / "b", patients=6, seed=5, workers=1, progress=False)
    assert _tree_digest(a.out_dir) == _tree_digest(b.out_dir)
    c = make_phantoms(tmp_path / "c", patients=6, seed=6, workers=1, progress=False)
    assert _tree_digest(c.out_dir) != _tree_digest(a.out_dir)


def test_archive_contents(phantom_archive):
    files = [p for p in phantom_archive.rglob("*") if p.is_file()]
    dicoms = [p for p in files if p.suffix not in (".csv", ".gz")]
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in dicoms]
    photometric = {str(d.PhotometricInterpretation) for d in headers if d.Modality in ("CR", "DX")}
    assert photometric == {"MONOCHROME1", "MONOCHROME2"}
    assert any(p.suffix == "" for p in dicoms) and any(p.suffix == ".dcm" for p in dicoms)
    assert {d.Modality for d in headers} >= {"CR", "DX"}
    assert any(p.name.endswith(".nii.gz") for p in files)
    for d in headers[:5]:
        for tag in (
            "PatientName",
            "PatientID",
            "PatientBirthDate",
            "AccessionNumber",
            "InstitutionName",
        ):
            assert str(d.get(tag, "")), f"{tag} missing"
    labels = (phantom_archive / "labels.csv").read_text().splitlines()[1:]
    classes = {line.rsplit(",", 1)[1] for line in labels}
    assert {"consolidation", "normal"} <= classes
    assert 0 < len(labels) < len(dicoms)  # a labeled subset only


def test_series_file_names_do_not_follow_position(phantom_archive):
    series = [d for d in (phantom_archive / "volumes").glob("*/*") if d.is_dir()]
    assert series
    disagreements = 0
    for folder in series:
        slices = sorted(folder.iterdir())
        z = [
            float(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient[2])
            for p in slices
        ]
        disagreements += z != sorted(z)
    assert disagreements == len(series)
