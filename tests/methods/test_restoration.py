"""Restoration pretraining (Models Genesis): loss, shapes, the corrupted input, bad settings."""

from __future__ import annotations

import pytest
import torch

from medcontrast.errors import MedContrastError
from medcontrast.methods import build_method
from medcontrast.methods.restoration import restoration_loss
from medcontrast.models.encoders import Encoder, EncoderSpec, build_encoder
from medcontrast.models.heads import HeadSpec


def test_loss_is_zero_for_a_perfect_restoration_only():
    x = torch.randn(3, 1, 8, 8, 8)
    assert float(restoration_loss(x, x)) == 0
    assert float(restoration_loss(x + 0.1, x)) == pytest.approx(0.01, rel=1e-4)


@pytest.mark.parametrize(
    "name,ndim,size", [("timm:resnet10t", 2, (28, 28)), ("monai:resnet10", 3, (12, 12, 12))]
)
@pytest.mark.parametrize("contrastive", [0.0, 0.5])
def test_restores_the_clean_views_from_the_corrupted(name, ndim, size, contrastive):
    enc = build_encoder(name, ndim, 1, size)
    method = build_method(
        "restoration", enc, HeadSpec(hidden=16, dim=8), contrastive_weight=contrastive
    )
    batch = {"view1": torch.rand(4, 1, *size), "view2": torch.rand(4, 1, *size)}
    batch.update(method.device_draws(batch, torch.Generator().manual_seed(0)))
    assert batch["corrupted"].shape == (8, 1, *size)
    assert not torch.equal(batch["corrupted"], torch.cat([batch["view1"], batch["view2"]]))
    out = method(batch)
    assert torch.isfinite(out["loss"]) and ("contrastive" in out) == (contrastive > 0)
    # A decoder that gives back the clean views: the restoration term is zero.
    clean = torch.cat([batch["view1"], batch["view2"]])
    method.decoder.forward = lambda fmap: clean
    assert float(method(batch)["restoration"]) == 0
    assert all(k.startswith(("encoder.", "decoder.", "projector.")) for k in method.state_dict())


def test_an_encoder_without_a_feature_map_is_refused_naming_the_setting():
    enc = Encoder(torch.nn.Flatten(), 4, EncoderSpec("custom:flat", 2, size=[2, 2]))
    with pytest.raises(MedContrastError, match=r"method\.name=restoration .*custom:flat"):
        build_method("restoration", enc)


def test_weights_must_leave_a_loss():
    enc = build_encoder("timm:resnet10t", 2, 1, (28, 28))
    with pytest.raises(MedContrastError, match="restoration_weight"):
        build_method("restoration", enc, restoration_weight=0.0)
