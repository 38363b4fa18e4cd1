"""``medcontrast embed``: one row per usable sample of the phantom archive with the encoder's own
features, no identifier in the file or the console, bad files and samples of another
dimensionality skipped and counted, Parquet and .npz read back, clear errors."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch

import medcontrast
from medcontrast.data.manifest import read_manifest
from medcontrast.data.preprocessing import PreprocessSpec
from medcontrast.embedding import ID_COLUMNS, feature_columns, read_table
from medcontrast.errors import MedContrastError
from medcontrast.export import export_encoder
from medcontrast.models.encoders import EncoderSpec, build_from_spec
from tests.archive.test_pseudonyms import identifying_values

SPEC = PreprocessSpec(ndim=2, size=(32, 32))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("run")
    encoder = build_from_spec(EncoderSpec(name="timm:resnet10t", ndim=2, size=[32, 32]))
    export_encoder(encoder, folder, SPEC)
    return folder


def test_embed_the_phantom_archive(phantom_archive, phantom_manifest, run, tmp_path):
    out = tmp_path / "features.parquet"  # .npz: test_read_table_round_trip
    args = ["embed", str(run), str(phantom_archive), "--out", str(out), "--batch-size", "16"]
    args += ["--labels", str(phantom_archive / "labels.csv"), "--cache-dir", str(tmp_path / "c")]
    proc = subprocess.run(
        [sys.executable, "-m", "medcontrast.cli", *args],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    table = read_table(out)
    manifest = read_manifest(phantom_manifest).ok
    usable = manifest[manifest["ndim"] == 2]  # the 3D volumes are counted, not embedded
    assert len(table) == len(usable) > 0
    assert set(table["sample_id"]) == set(usable["sample_id"])  # the index's pseudonyms
    assert list(table.columns[:4]) == ID_COLUMNS and len(feature_columns(table)) == 512
    assert (table["label"] != "").any()
    assert "3D sample; the encoder takes 2D" in proc.stderr
    # the encoder's own features of the file, preprocessed as in pretraining
    row = usable.iloc[0]
    path = read_manifest(phantom_manifest).source_paths(row)
    x = torch.from_numpy(medcontrast.preprocess(path, run))[None]
    with torch.no_grad():
        want = medcontrast.load_encoder(run).eval()(x)[0].numpy()
    got = table.loc[table["sample_id"] == row["sample_id"], feature_columns(table)]
    np.testing.assert_allclose(got.to_numpy()[0], want, rtol=1e-4, atol=1e-5)
    values = identifying_values(phantom_archive)
    assert values
    written = out.read_bytes().decode("latin-1") + proc.stdout + proc.stderr
    assert not [v for v in values if v in written]


def test_bad_files_are_skipped_and_counted(phantom_archive, run, tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    good = sorted(phantom_archive.rglob("*.dcm"))[:3]
    for i, path in enumerate(good):
        shutil.copy(path, folder / f"{i}.dcm")
    (folder / "broken.png").write_bytes(b"\x89PNG cut short")
    (folder / "notes.txt").write_text("not an image")
    table = medcontrast.embed(run, folder, cache_dir=tmp_path / "cache", progress=False)
    assert len(table) == 3
    skipped = table.attrs["skipped"]
    assert sum(skipped.values()) == 2, skipped
    with pytest.raises(MedContrastError, match="no readable 2D image"):
        medcontrast.embed(run, folder / "notes.txt", cache_dir=tmp_path / "cache", progress=False)


def test_a_manifest_and_single_files_give_the_same_features(phantom_manifest, run, tmp_path):
    manifest = read_manifest(phantom_manifest)
    by_manifest = medcontrast.embed(run, phantom_manifest, progress=False, cache_dir=tmp_path)
    radiographs = manifest.ok[manifest.ok["format"] == "dicom"].head(2)
    files = [manifest.source_paths(r)[0] for _, r in radiographs.iterrows()]
    singles = medcontrast.embed(run, files, progress=False, cache_dir=tmp_path)
    assert len(singles) == len(files) > 0
    # sample pseudonyms hash the path within the indexed folder, so a file indexed alone gets
    # another; the patient pseudonym (of the header's PatientID) and the features are the same
    cols = feature_columns(singles)
    for _, row in singles.iterrows():
        same = by_manifest[by_manifest["patient"] == row["patient"]]
        gaps = np.abs(same[cols].to_numpy() - row[cols].to_numpy(np.float32)).max(axis=1)
        assert gaps.min() < 1e-4, gaps


def test_bad_requests_are_refused(phantom_archive, run, tmp_path):
    with pytest.raises(MedContrastError, match="inside the archive"):
        medcontrast.embed(run, phantom_archive, phantom_archive / "f.npz", progress=False)
    with pytest.raises(MedContrastError, match=r"\.parquet or a \.npz"):
        medcontrast.embed(run, phantom_archive, tmp_path / "f.csv", progress=False)
    with pytest.raises(MedContrastError, match="does not exist"):
        medcontrast.embed(run, tmp_path / "nowhere", progress=False)
    with pytest.raises(MedContrastError, match=r"encoder\.json is missing|no encoder weights"):
        medcontrast.embed(tmp_path, phantom_archive, progress=False)
    assert not list(phantom_archive.rglob("f.*"))  # nothing written in the archive


def test_read_table_round_trip(tmp_path):
    from medcontrast.embedding import _table, write_table

    rows = pd.DataFrame({c: [f"{c}-1", f"{c}-2"] for c in ID_COLUMNS})
    table = _table(rows, np.arange(6, dtype=np.float32).reshape(2, 3))
    write_table(table, tmp_path / "t.npz")
    pd.testing.assert_frame_equal(read_table(tmp_path / "t.npz"), table)
