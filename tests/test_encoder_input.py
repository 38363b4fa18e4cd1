"""An exported encoder's preprocessing applied to new files: the arrays of the cache bit for bit
(2D DICOM, DICOM series, NIfTI, CT window and percentile scaling), and a clear error for an
encoder folder without its record, an input of another dimensionality or a broken file."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

import medcontrast
from medcontrast.data.cache import build_cache
from medcontrast.data.manifest import read_manifest
from medcontrast.data.preprocessing import PreprocessSpec
from medcontrast.data.selection import select_rows
from medcontrast.encoder_input import input_spec
from medcontrast.errors import MedContrastError
from medcontrast.export import SPEC, export_encoder
from medcontrast.models.encoders import EncoderSpec, build_from_spec

# Non-default settings, so that a record that forgot one of them would show.
SPECS = {
    "2d": (
        PreprocessSpec(ndim=2, size=(24, 20), percentiles=(1.0, 99.0), resize="stretch"),
        "timm:resnet10t",
    ),
    "3d": (
        PreprocessSpec(ndim=3, size=(12, 12, 10), spacing=(3.0, 3.0, 4.0), window=(-200, 300)),
        "monai:resnet10",
    ),
}


def _export(folder, key):
    spec, name = SPECS[key]
    encoder = build_from_spec(EncoderSpec(name=name, ndim=spec.ndim, size=list(spec.size)))
    export_encoder(encoder, folder, spec)
    return spec


@pytest.mark.parametrize("key", sorted(SPECS))
def test_preprocess_reproduces_the_cache_bit_for_bit(phantom_manifest, tmp_path, key):
    spec = _export(tmp_path / "run", key)
    assert input_spec(tmp_path / "run") == spec
    manifest = read_manifest(phantom_manifest)
    rows = select_rows(manifest, ndim=spec.ndim)
    cache = build_cache(manifest, rows, spec, tmp_path / "cache", workers=1, progress=False)
    assert set(cache.rows["format"]) >= ({"dicom"} if key == "2d" else {"nifti", "dicom-series"})
    for i, row in cache.rows.iterrows():
        x = medcontrast.preprocess(manifest.source_paths(row), tmp_path / "run")
        assert x.dtype == np.float32 and x.shape == (1, *spec.size)
        assert np.array_equal(x.astype(np.float16), cache.array[i]), row["source"]


def test_an_array_and_the_modality_choose_the_window(tmp_path):
    spec = _export(tmp_path / "run", "3d")
    rng = np.random.default_rng(0)
    volume = rng.normal(0, 400, (20, 20, 16)).astype(np.float32)
    ct = medcontrast.preprocess(volume, tmp_path / "run", modality="CT", spacing=(1, 1, 1))
    mr = medcontrast.preprocess(volume, tmp_path / "run", spacing=(1, 1, 1))
    assert ct.shape == mr.shape == (1, *spec.size)
    assert not np.array_equal(ct, mr)  # window [-200, 300] vs percentiles


def test_older_exports_take_the_preprocessing_from_config_yaml(tmp_path):
    spec = _export(tmp_path / "run", "2d")
    info = json.loads((tmp_path / "run" / SPEC).read_text())
    del info["preprocessing"]
    (tmp_path / "run" / SPEC).write_text(json.dumps(info))
    with pytest.raises(MedContrastError, match=r"config\.yaml is not there"):
        input_spec(tmp_path / "run")
    (tmp_path / "run" / "config.yaml").write_text(
        "data:\n  ndim: 2\n  size: [24, 20]\n  percentiles: [1.0, 99.0]\n  resize: stretch\n"
    )
    assert input_spec(tmp_path / "run" / "encoder.pth") == spec


def test_bad_input_is_named(phantom_archive, tmp_path):
    with pytest.raises(MedContrastError, match=r"encoder\.json is missing"):
        medcontrast.preprocess(np.ones((8, 8)), tmp_path)
    _export(tmp_path / "run", "2d")
    volume = next(phantom_archive.rglob("*.nii.gz"))
    with pytest.raises(MedContrastError, match=rf"{re.escape(volume.name)} is 3D .* takes 2D"):
        medcontrast.preprocess(volume, tmp_path / "run")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(MedContrastError, match=r"broken\.png: not a readable image"):
        medcontrast.preprocess(broken, tmp_path / "run")
    with pytest.raises(MedContrastError, match="colour image; the encoder takes one grey"):
        medcontrast.preprocess(np.random.default_rng(0).random((8, 8, 3)), tmp_path / "run")
    with pytest.raises(MedContrastError, match="blank image"):
        medcontrast.preprocess(np.zeros((8, 8)), tmp_path / "run")
    with pytest.raises(MedContrastError, match="no such file"):
        medcontrast.preprocess(tmp_path, tmp_path / "run")
