"""The README's loading snippets, run as written (only the paths swapped for a test's): timm and
MONAI give the same features as ``load_encoder``, timm warns about nothing and its data config
is the encoder's (input size, mean 0, std 1), and ``encoder.json`` records the preprocessing."""

from __future__ import annotations

import json
import logging
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import medcontrast
from medcontrast.data.preprocessing import PreprocessSpec
from medcontrast.export import SPEC, TIMM_CONFIG, export_encoder
from medcontrast.models.encoders import EncoderSpec, build_from_spec

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippet(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    found = [b for b in blocks if marker in b]
    assert len(found) == 1, f"one README python block with {marker!r}, found {len(found)}"
    return found[0]


def _run(code: str, caplog) -> dict:
    """Execute a snippet; any warning, or a log record at WARNING or above, fails the test."""
    scope: dict = {}
    with warnings.catch_warnings(), caplog.at_level(logging.WARNING):
        warnings.simplefilter("error")
        exec(compile(code, "README.md", "exec"), scope)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    return scope


# The timm families a user is likely to export: a CNN, and a ViT (its img_size and dynamic size).
TIMM_ENCODERS = {"timm:regnetx_002": [32, 32], "timm:vit_tiny_patch16_224": [32, 32]}


@pytest.mark.parametrize("name", sorted(TIMM_ENCODERS))
def test_readme_timm_snippet(phantom_archive, tmp_path, caplog, name):
    size = TIMM_ENCODERS[name]
    spec = PreprocessSpec(ndim=2, size=tuple(size))
    encoder = build_from_spec(EncoderSpec(name=name, ndim=2, size=size))
    run = tmp_path / "run"
    export_encoder(encoder, run, spec)
    image = next(phantom_archive.rglob("*.dcm"))
    code = _snippet('"local-dir:').replace("runs/my-run", str(run))
    scope = _run(code.replace("scans/new-image.dcm", str(image)), caplog)
    config = __import__("timm").data.resolve_data_config(model=scope["model"])
    assert config["input_size"] == (1, *size)
    assert list(config["mean"]) == [0.0] and list(config["std"]) == [1.0]
    assert config["crop_pct"] == 1.0
    with torch.no_grad():
        ours = medcontrast.load_encoder(run).eval()(torch.from_numpy(scope["x"])[None])
    assert scope["features"].shape == ours.shape == (1, encoder.num_features)
    torch.testing.assert_close(scope["features"], ours)
    timm_cfg = json.loads((run / TIMM_CONFIG).read_text())
    assert PreprocessSpec.from_record(timm_cfg["medcontrast_preprocessing"]) == spec


def test_readme_monai_snippet(phantom_archive, tmp_path, caplog):
    spec = PreprocessSpec(ndim=3, size=(16, 16, 16))
    encoder = build_from_spec(EncoderSpec(name="monai:resnet18", ndim=3, stem_stride=1))
    run = tmp_path / "run"
    export_encoder(encoder, run, spec)
    assert not (run / TIMM_CONFIG).exists()  # timm cannot build a MONAI network
    volume = next(phantom_archive.rglob("*.nii.gz"))
    code = _snippet("monai.networks.nets").replace("runs/my-3d-run", str(run))
    scope = _run(code.replace("scans/new-volume.nii.gz", str(volume)), caplog)
    assert scope["x"].shape == (1, 16, 16, 16)
    with torch.no_grad():
        ours = medcontrast.load_encoder(run).eval()(torch.from_numpy(scope["x"])[None])
    assert scope["features"].shape == ours.shape == (1, 512)
    torch.testing.assert_close(scope["features"], ours)


def test_encoder_json_records_the_preprocessing(tmp_path):
    spec = PreprocessSpec(ndim=3, size=(8, 8, 8), spacing=(2.0, 2.0, 2.0), intensity="window")
    export_encoder(build_from_spec(EncoderSpec(name="monai:resnet10", ndim=3)), tmp_path, spec)
    record = json.loads((tmp_path / SPEC).read_text())["preprocessing"]
    assert record["orientation"] == "RAS" and record["channels"] == 1
    assert record["window"] == [-1000.0, 1000.0] and record["spacing"] == [2.0, 2.0, 2.0]
    assert PreprocessSpec.from_record(record) == spec
    assert np.isclose(record["percentiles"], [0.5, 99.5]).all()
