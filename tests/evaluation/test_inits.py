"""Initialisations: random init is the same network as the pretrained one it is compared with."""

from __future__ import annotations

from pathlib import Path

import pytest

from medcontrast.config import InitConfig
from medcontrast.data.preprocessing import PreprocessSpec
from medcontrast.errors import MedContrastError
from medcontrast.evaluation.inits import resolve_inits
from medcontrast.export import export_encoder
from medcontrast.models.encoders import EncoderSpec, build_from_spec

VOLUMES = PreprocessSpec(ndim=3, size=(16, 16, 16))


def _run(tmp_path: Path, stem: int) -> Path:
    spec = EncoderSpec("monai:resnet10", 3, 1, [16, 16, 16], stem)
    folder = tmp_path / f"run-stem{stem}"
    export_encoder(build_from_spec(spec), folder)
    return folder


def test_random_init_inherits_stem_of_pretrained_run(tmp_path: Path) -> None:
    run = _run(tmp_path, stem=1)
    inits = resolve_inits(
        [
            InitConfig(name="ssl", source=str(run)),
            InitConfig(name="random", source="random", encoder="monai:resnet10"),
        ],
        VOLUMES,
    )
    by_name = {i.name: i for i in inits}
    assert by_name["ssl"].spec.stem_stride == 1
    assert by_name["random"].spec.stem_stride == 1
    ssl, rnd = by_name["ssl"].make(0), by_name["random"].make(0)
    assert [p.shape for p in ssl.parameters()] == [p.shape for p in rnd.parameters()]
    assert ssl.backbone.conv1.stride == rnd.backbone.conv1.stride


def test_explicit_stem_wins_and_automatic_random_matches(tmp_path: Path) -> None:
    run = _run(tmp_path, stem=1)
    explicit = resolve_inits(
        [
            InitConfig(name="ssl", source=str(run)),
            InitConfig(name="fast", source="random", encoder="monai:resnet10", stem_stride=2),
        ],
        VOLUMES,
    )
    assert {i.name: i.spec.stem_stride for i in explicit} == {"ssl": 1, "fast": 2}
    auto = resolve_inits([InitConfig(name="ssl", source=str(run))], VOLUMES)
    assert [i.spec.stem_stride for i in auto] == [1, 1]


def test_random_without_encoder_is_an_error() -> None:
    with pytest.raises(MedContrastError, match="needs encoder"):
        resolve_inits([InitConfig(name="random", source="random")], PreprocessSpec(2, (32, 32)))
