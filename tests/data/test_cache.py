"""The preprocessed cache: the same array with one process or several, a bad file skipped and
reported (never fatal), a second build reusing the file, MedMNIST rows read from their archive."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from medcontrast.archive.index import build_index, write_index
from medcontrast.data.cache import build_cache
from medcontrast.data.manifest import read_manifest
from medcontrast.data.preprocessing import PreprocessSpec
from medcontrast.data.selection import select_rows
from medcontrast.errors import MedContrastError

SPEC = PreprocessSpec(ndim=2, size=(16, 16))


@pytest.fixture()
def archive(tmp_path):
    """40 PNG exports (enough for the process pool) and a MedMNIST-style .npz of 5 images."""
    root = tmp_path / "archive"
    rng = np.random.default_rng(0)
    for i in range(40):
        (root / "png").mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 24), dtype=np.uint8)).save(
            root / "png" / f"{i:02d}.png"
        )
    np.savez(
        root / "tiny.npz",
        train_images=rng.integers(0, 255, (5, 28, 28), dtype=np.uint8),
        train_labels=np.zeros((5, 1), np.uint8),
    )
    out = tmp_path / "manifest.csv"
    write_index(build_index(root, progress=False), out, root)
    return root, read_manifest(out)


def _build(manifest, tmp_path, name, workers=0):
    rows = select_rows(manifest, ndim=2)
    return build_cache(manifest, rows, SPEC, tmp_path / name, workers=workers, progress=False)


@pytest.mark.parametrize("npz_chunk", [1024, 2])
def test_one_process_or_two_give_the_same_array(archive, tmp_path, monkeypatch, npz_chunk):
    # a chunk of 2 splits the .npz's 5 images over three worker tasks
    monkeypatch.setattr("medcontrast.data.cache.NPZ_CHUNK", npz_chunk)
    _, manifest = archive
    one, two = _build(manifest, tmp_path, "a"), _build(manifest, tmp_path, "b", workers=2)
    assert one.array.shape == (45, 1, 16, 16) and one.array.dtype == np.float16
    assert np.array_equal(np.asarray(one.array), np.asarray(two.array))
    assert list(one.rows["sample_id"]) == list(two.rows["sample_id"]) and not one.failed
    assert float(np.min(one.array)) >= 0 and float(np.max(one.array)) <= 1


def test_a_file_broken_after_indexing_is_left_out_and_named(archive, tmp_path):
    root, manifest = archive
    (root / "png" / "07.png").write_bytes(b"not a png any more")
    cache = _build(manifest, tmp_path, "c")
    assert len(cache) == len(cache.array) == 44
    ((sample, reason),) = cache.failed
    assert sample not in set(cache.rows["sample_id"]) and "07.png" in reason
    assert str(root) not in reason  # no archive path in what a run folder records


def test_a_second_build_reuses_the_cache_file(archive, tmp_path):
    _, manifest = archive
    first = _build(manifest, tmp_path, "d")
    stamp = first.path.stat().st_mtime_ns
    again = _build(manifest, tmp_path, "d")
    assert again.path == first.path and again.path.stat().st_mtime_ns == stamp
    assert np.array_equal(np.asarray(first.array), np.asarray(again.array))


def test_a_cache_file_that_does_not_match_its_settings_is_refused(archive, tmp_path):
    _, manifest = archive
    cache = _build(manifest, tmp_path, "d")
    meta_path = cache.path.with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta_path.write_text(json.dumps({**meta, "spec": "another"}))
    with pytest.raises(MedContrastError, match=r"cache .*\.npy holds .* delete the file"):
        _build(manifest, tmp_path, "d")
    meta_path.write_text(json.dumps(meta))
    np.save(cache.path, np.zeros((3, 1, 16, 16), np.float16))  # cut short
    with pytest.raises(MedContrastError, match=r"holds \(3, 1, 16, 16\)"):
        _build(manifest, tmp_path, "d")
