"""No identifying header value may reach any output or log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pydicom

from medcontrast.privacy import Pseudonymizer, load_salt, unit_interval

IDENTIFYING = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "AccessionNumber",
    "InstitutionName",
    "OtherPatientIDs",
    "ReferringPhysicianName",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
)


def identifying_values(archive: Path) -> set[str]:
    values = set()
    for path in archive.rglob("*"):
        if path.is_file() and path.suffix not in (".csv", ".gz"):
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            for tag in IDENTIFYING:
                value = ds.get(tag)
                if value is not None and str(value):
                    values.add(str(value))
                    if tag == "PatientName":
                        values.update(p for p in str(value).split("^") if len(p) > 3)
    return values


def test_pseudonyms_are_keyed_and_stable(tmp_path):
    a = Pseudonymizer(load_salt(tmp_path / "a"))
    b = Pseudonymizer(load_salt(tmp_path / "b"))
    assert a("patient", "MRN1") == a("patient", "MRN1")
    assert a("patient", "MRN1") != b("patient", "MRN1")
    assert a("patient", "X") != a("study", "X")
    assert a("patient", "MRN1").startswith("pat-")
    assert (tmp_path / "a").stat().st_mode & 0o777 == 0o600
    assert 0 <= unit_interval("pat-123") < 1


def test_no_identifier_in_manifest_or_logs(phantom_archive, tmp_path):
    out = tmp_path / "m.csv"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "medcontrast.cli",
            "index",
            str(phantom_archive),
            "--out",
            str(out),
            "--labels",
            str(phantom_archive / "labels.csv"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    values = identifying_values(phantom_archive)
    assert values, "phantoms must carry identifiers for this test to mean anything"
    written = out.read_text() + out.with_suffix(".json").read_text() + proc.stdout + proc.stderr
    leaked = [v for v in values if v in written]
    assert not leaked, f"identifiers leaked: {leaked[:5]}"


def test_identifier_in_a_path_is_kept_private(tmp_path):
    from medcontrast.data.index import build_index, write_index
    from medcontrast.data.manifest import read_manifest
    from medcontrast.data.phantoms import make_phantoms

    archive = tmp_path / "archive"
    make_phantoms(archive, patients=4, seed=1, workers=1, progress=False)
    first = next(p for p in sorted((archive / "radiographs").rglob("IM*")))
    ds = pydicom.dcmread(first, stop_before_pixels=True)
    family, given = str(ds.PatientName).split("^")
    named = archive / f"{family}_{given}".replace(" ", "_")
    named.mkdir()
    first.rename(named / first.name)
    result = build_index(archive, progress=False)
    write_index(result, tmp_path / "m.csv", archive)
    text = (tmp_path / "m.csv").read_text()
    assert family not in text
    manifest = read_manifest(tmp_path / "m.csv")
    row = manifest.table[manifest.table["source"].str.startswith("private:")].iloc[0]
    assert manifest.source_paths(row)[0] == named / first.name
