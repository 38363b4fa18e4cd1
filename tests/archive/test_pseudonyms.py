"""No identifying header value may reach any output or log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom

from medcontrast.archive.pseudonyms import Pseudonymizer, load_salt, unit_interval

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
    from medcontrast.archive.index import build_index, write_index
    from medcontrast.data.manifest import read_manifest
    from medcontrast.phantoms.writer import make_phantoms

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


PLANTED = "Smith^Johnathan"  # archives exported by patient name are common


def _named_archive(root: Path) -> None:
    """PNG radiographs under patient-named folders, labelled by their parent folder, and a
    broken file whose reader message quotes its path."""
    from PIL import Image

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    for p, patient in enumerate([PLANTED, "Doe^Jane", "Roe^Richard", "Poe^Edgar"]):
        for label in ("normal", "opacity"):
            folder = root / patient / label
            folder.mkdir(parents=True)
            for k in range(6):
                blob = np.exp(-((xx - 16) ** 2 + (yy - 16) ** 2) / 40.0) * (label == "opacity")
                img = 0.4 * rng.random((32, 32)) + 0.6 * blob + 0.1 * (xx / 32)
                Image.fromarray((255 * img / img.max()).astype(np.uint8)).save(
                    folder / f"img{p}{k}.png"
                )
    (root / PLANTED / "normal" / "broken.png").write_bytes(b"\x89PNG not really" * 20)
    (root / PLANTED / "scan.nii.gz").write_bytes(b"not a volume" * 20)


def test_a_patient_name_as_a_folder_reaches_no_output(tmp_path, capsys):
    from medcontrast.cli import main
    from medcontrast.data.manifest import read_manifest

    archive, out = tmp_path / "archive", tmp_path / "out"
    _named_archive(archive)
    manifest = out / "manifest.csv"
    assert main(["index", str(archive), "--out", str(manifest), "--labels-from-folders"]) == 0
    common = [
        f"data.manifest={manifest}",
        "data.size=[32,32]",
        f"data.cache_dir={out / 'cache'}",
        "data.modalities=[]",
    ]
    run = [*common, f"out_dir={out / 'runs'}", "name=r", "model.encoder=timm:resnet10t"]
    run += ["train.batch_size=8", "train.max_steps=2", "views.path=batched"]
    assert main(["pretrain", *run]) == 0
    evaluation = [*common, f"out_dir={out / 'eval'}", "name=e", "bootstrap=20"]
    evaluation += [f"inits=[{{name: ssl, source: '{out / 'runs' / 'r'}'}}]"]
    evaluation += ["protocols=[linear,knn]", "budgets.shots=[2]", "budgets.seeds=[0]"]
    evaluation += ["budgets.fractions=[]", "retrieval_queries=2"]
    assert main(["evaluate", *evaluation]) == 0
    logs = capsys.readouterr()
    assert "50 files -> 48 usable samples, 2 skipped" in logs.out
    table = read_manifest(manifest).table
    broken = table[table["reason"].str.contains("not a readable")]
    assert len(broken) == 2, table["reason"].tolist()  # the reader messages are kept, scrubbed
    assert str(archive) not in "".join(table["reason"])
    # Every file written, and everything printed, is free of the planted name and its parts.
    words = [PLANTED, *PLANTED.split("^")]
    for path in [p for p in out.rglob("*") if p.is_file()]:
        data = path.read_bytes()
        assert not [w for w in words if w.encode() in data], path
    assert not [w for w in words if w in logs.out + logs.err]
    # The manifest still finds every file: the real names come back through the private map.
    m = read_manifest(manifest)
    found = {p for _, row in m.table.iterrows() for p in m.source_paths(row)}
    assert found == {p for p in archive.rglob("*") if p.is_file()}


def test_a_patient_name_as_a_file_name_reaches_no_output(tmp_path, capsys):
    """A hospital export names files after patients as often as folders: a file name that may
    carry a name, a date or a record number becomes a pseudonym with its extension (the real
    name in the private map), while the names scanners give (IM000001.dcm) stay readable."""
    from PIL import Image

    from medcontrast.archive.index import build_index, write_index
    from medcontrast.data.cache import build_cache
    from medcontrast.data.manifest import read_manifest
    from medcontrast.data.preprocessing import PreprocessSpec
    from medcontrast.data.selection import select_rows

    archive = tmp_path / "archive"
    archive.mkdir()
    rng = np.random.default_rng(0)
    names = ["Smith^John_19600101_chest.png", "MRN4471923.png", "IM000001.png", "broken.png"]
    for name in names[:3]:
        Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(archive / name)
    (archive / names[3]).write_bytes(b"not an image")
    write_index(build_index(archive, progress=False), tmp_path / "m.csv", archive)
    text = (tmp_path / "m.csv").read_text() + (tmp_path / "m.json").read_text()
    for part in ("Smith", "John", "19600101", "4471923", "broken"):
        assert part not in text
    assert "IM000001.png" in text and text.count("fil-") >= 3
    manifest = read_manifest(tmp_path / "m.csv")
    real = {manifest.source_paths(row)[0].name for _, row in manifest.table.iterrows()}
    assert real == set(names)
    rows = select_rows(manifest, ndim=2)
    cache = build_cache(manifest, rows, PreprocessSpec(2, (16, 16)), tmp_path / "c", workers=1)
    assert len(cache.rows) == 3 and "Smith" not in capsys.readouterr().err
