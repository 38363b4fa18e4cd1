"""Evaluate checks its data against each pretrained encoder's preprocessing, for every encoder
family: a difference that changes the input is an error naming both values (or, asked for, a
warning), a harmless one a one-line warning."""

from __future__ import annotations

import pytest

from medcontrast.config import InitConfig
from medcontrast.data.preprocessing import PreprocessSpec
from medcontrast.errors import MedContrastError
from medcontrast.evaluation.inits import resolve_inits
from medcontrast.evaluation.input_check import compare_inputs
from medcontrast.export import export_encoder
from medcontrast.models.encoders import EncoderSpec, build_from_spec

XR = PreprocessSpec(ndim=2, size=(32, 32))


def test_size_spacing_and_resize_change_the_input():
    diff = compare_inputs(XR, PreprocessSpec(ndim=2, size=(64, 64), resize="stretch"))
    assert len(diff.changing) == 2 and not diff.harmless
    assert (
        "data.size is [64, 64] but the encoder was pretrained with data.size=[32, 32]"
        in (diff.changing[0])
    )
    vol = PreprocessSpec(ndim=3, size=(16, 16, 16))
    spaced = PreprocessSpec(ndim=3, size=(16, 16, 16), spacing=(2.0, 2.0, 2.0))
    assert "data.spacing is [2.0, 2.0, 2.0]" in compare_inputs(vol, spaced).changing[0]


@pytest.mark.parametrize(
    ("now", "modalities", "changing"),
    [
        (PreprocessSpec(ndim=2, size=(32, 32), window=(-100, 100)), ["CR", "DX"], False),
        (PreprocessSpec(ndim=2, size=(32, 32), window=(-100, 100)), ["CT"], True),
        (PreprocessSpec(ndim=2, size=(32, 32), window=(-100, 100)), None, True),
        (PreprocessSpec(ndim=2, size=(32, 32), intensity="percentile"), ["CR"], False),
        (PreprocessSpec(ndim=2, size=(32, 32), intensity="percentile"), ["CT", "MR"], True),
        (PreprocessSpec(ndim=2, size=(32, 32), percentiles=(1, 99)), ["CT"], False),
        (PreprocessSpec(ndim=2, size=(32, 32), intensity="minmax"), ["CR"], True),
    ],
)
def test_intensity_counts_as_the_evaluated_modalities_see_it(now, modalities, changing):
    diff = compare_inputs(XR, now, modalities)
    assert bool(diff.changing) == changing, diff
    assert bool(diff.harmless) != changing, diff  # every case differs in one field


# One encoder of each family, exported with its preprocessing at 32 px.
FAMILIES = {
    "timm:resnet10t": 2,
    "timm:vit_tiny_patch16_224": 2,
    "monai:resnet10": 3,
    "monai:vit": 3,
}


def _run(tmp_path, name):
    ndim = FAMILIES[name]
    size = [32] * ndim if ndim == 2 else [16] * 3
    spec = PreprocessSpec(ndim=ndim, size=tuple(size))
    kw = {"kwargs": {"num_layers": 1, "hidden_size": 48, "mlp_dim": 96, "num_heads": 2}}
    encoder = build_from_spec(
        EncoderSpec(name=name, ndim=ndim, size=size, **(kw if name == "monai:vit" else {}))
    )
    export_encoder(encoder, tmp_path / "run", spec)
    return tmp_path / "run", spec


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_is_checked(tmp_path, capsys, name):
    run, spec = _run(tmp_path, name)
    inits = [InitConfig(name="ssl", source=str(run))]
    bigger = PreprocessSpec(ndim=spec.ndim, size=tuple(s * 2 for s in spec.size))
    if name == "monai:vit":  # a fixed-size network cannot take another size at all
        for on_mismatch in ("error", "warn"):
            with pytest.raises(
                MedContrastError,
                match=r"data\.size is \[32, 32, 32\] but .* "
                r"pretrained at data\.size=\[16, 16, 16\] and cannot take",
            ):
                resolve_inits(inits, bigger, on_mismatch=on_mismatch)
    else:
        with pytest.raises(MedContrastError, match=r"data\.size is \[.*\] but the encoder was"):
            resolve_inits(inits, bigger)
        (ssl, _random) = resolve_inits(inits, bigger, on_mismatch="warn")
        assert any("data.size" in n for n in ssl.notes)
        assert "warning: " in capsys.readouterr().err
    harmless = PreprocessSpec(ndim=spec.ndim, size=spec.size, window=(-50.0, 50.0))
    (ssl, _random) = resolve_inits(inits, harmless, modalities=["MR"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "data.window" in lines[0] and "the same images" in lines[0]
    (ssl, _random) = resolve_inits(inits, spec)
    assert ssl.notes == [] and capsys.readouterr().err == ""
