"""The batched views launch a fixed, small number of operators per call (issue 22)."""

from __future__ import annotations

import pytest
import torch

from medcontrast.augment.batched import BatchedViews
from medcontrast.augment.params import AugmentParams
from medcontrast.config import views_preset
from medcontrast.config.presets import VIEW_PRESETS
from medcontrast.profiling import top_level_aten_calls

LIMIT = 100  # top-level aten calls per call; about 300 small kernels before (measured-on-gpu.md)


def _calls(preset: str, nd: int, batch: int, side: int, sparse: bool) -> int:
    size = (side,) * nd
    params = AugmentParams.from_config(views_preset(preset, flip_axes=[0]), nd, size)
    views = BatchedViews(params, compile="off", sparse=sparse)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(batch, 1, *size, generator=g)
    views(x, g)  # constants are made on the first call
    return sum(top_level_aten_calls(lambda: views(x, g)).values())


# sparse=False is the path a GPU runs (every sample through every step), True a CPU's
@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize(
    ("preset", "nd", "batch", "side"), [("radiograph", 2, 64, 64), ("mri", 3, 4, 32)]
)
def test_the_issues_cases_stay_under_the_limit(preset, nd, batch, side, sparse):
    assert _calls(preset, nd, batch, side, sparse) <= LIMIT


@pytest.mark.parametrize("sparse", [False, True])
@pytest.mark.parametrize("preset", list(VIEW_PRESETS))
@pytest.mark.parametrize("nd", [2, 3])
def test_every_preset_stays_under_the_limit_whatever_the_batch(preset, nd, sparse):
    side = 16 if nd == 3 else 32
    small, large = _calls(preset, nd, 2, side, sparse), _calls(preset, nd, 16, side, sparse)
    assert small == large <= LIMIT


def test_a_pair_launches_about_what_one_call_does():
    params = AugmentParams.from_config(views_preset("radiograph", flip_axes=[0]), 2, (32, 32))
    views, g = BatchedViews(params, compile="off", sparse=False), torch.Generator().manual_seed(0)
    x = torch.rand(8, 1, 32, 32, generator=g)
    views.pair(x, x, g)
    one = sum(top_level_aten_calls(lambda: views(x, g)).values())
    pair = sum(top_level_aten_calls(lambda: views.pair(x, x, g)).values())
    assert pair <= one + 3  # the stacking and the two halves


@pytest.mark.parametrize("nd", [2, 3])
def test_an_elastic_deformation_alone_keeps_the_shape(nd):
    """No crop, flip, turn or affine: the matrix is the identity and the field does the work."""
    probs = {k: 0.0 for k in views_preset("none").__dict__ if k.endswith("_prob")}
    size = (12,) * nd
    params = AugmentParams.from_config(
        views_preset("none", **{**probs, "elastic_prob": 1.0}), nd, size
    )
    x = torch.rand(3, 1, *size)
    out = BatchedViews(params, compile="off")(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.isfinite(out).all() and not torch.equal(out, x)


def test_non_square_images_and_channels():
    params = AugmentParams.from_config(views_preset("mask"), 3, (12, 12, 16))
    x = torch.rand(3, 2, 12, 12, 16)
    out = BatchedViews(params, compile="off")(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_a_failed_compilation_falls_back_to_the_plain_path(monkeypatch, capsys):
    def broken(fn, **kw):
        def run(*args):
            raise RuntimeError("no compiler here")

        return run

    monkeypatch.setattr(torch, "compile", broken)
    params = AugmentParams.from_config(views_preset("radiograph"), 2, (16, 16))
    views, x = BatchedViews(params, compile="on"), torch.rand(4, 1, 16, 16)
    out = views(x, torch.Generator().manual_seed(0))
    plain = BatchedViews(params, compile="off", sparse=False)(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, plain) and views.mode.startswith("plain (torch.compile failed")
    assert "no compiler here" in capsys.readouterr().err
    assert BatchedViews(params).mode == "plain"  # auto: compiled on CUDA only
