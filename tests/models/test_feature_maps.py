"""The encoder contract's spatial feature maps and patch tokens, beside unchanged pooled features
and exports."""

from __future__ import annotations

import copy

import pytest
import torch

from medcontrast.errors import MedContrastError
from medcontrast.models.encoders import Encoder, EncoderSpec, build_encoder

ENCODERS = [
    # name, ndim, size, kwargs, grid, whether pooled == spatial mean of the map
    ("timm:resnet10t", 2, (32, 32), {}, (1, 1), True),
    ("timm:vit_tiny_patch16_224", 2, (32, 32), {"patch_size": 8}, (4, 4), False),  # class token
    ("monai:resnet10", 3, (16, 16, 16), {}, (1, 1, 1), True),
    ("monai:vit", 3, (16, 16, 16), {"patch_size": 4}, (4, 4, 4), True),
    ("monai:swin", 3, (32, 32, 32), {}, (1, 1, 1), True),
]


@pytest.mark.parametrize("name,ndim,size,kwargs,grid,mean_pooled", ENCODERS)
def test_feature_map_beside_unchanged_pooled_features(name, ndim, size, kwargs, grid, mean_pooled):
    enc = build_encoder(name, ndim, 1, size, **kwargs).eval()
    x = torch.rand(2, 1, *size)
    with torch.no_grad():
        fmap, pooled = enc.feature_map(x), enc(x)
    assert fmap.shape == (2, enc.num_features, *grid)
    assert pooled.shape == (2, enc.num_features)
    if mean_pooled:
        torch.testing.assert_close(fmap.flatten(2).mean(-1), pooled, atol=1e-5, rtol=1e-4)
    # The export is the backbone's own state dict: the accessors hold no weights.
    assert set(enc.state_dict()) == {f"backbone.{k}" for k in enc.backbone.state_dict()}


@pytest.mark.parametrize("name,ndim,size,kwargs", [e[:4] for e in ENCODERS if "vit" in e[0]])
def test_patch_tokens_of_all_patches_are_the_encoder_s_tokens(name, ndim, size, kwargs):
    enc = build_encoder(name, ndim, 1, size, **kwargs).eval()
    x = torch.rand(2, 1, *size)
    tok = enc.patch_tokens
    with torch.no_grad():
        prefix, patches = tok.embed(enc.backbone, x)
        out = tok.encode(enc.backbone, torch.cat([prefix, patches], 1))[:, prefix.shape[1] :]
        fmap = enc.feature_map(x)
    assert (
        patches.shape[1] == fmap[0, 0].numel()
        and tok.patch_size == (size[0] // fmap.shape[2],) * ndim
    )
    torch.testing.assert_close(out.transpose(1, 2).reshape(fmap.shape), fmap)


def test_a_deep_copy_uses_its_own_weights():
    """BYOL's and DINO's EMA targets are deep copies: their feature maps must read their weights."""
    enc = build_encoder("monai:resnet10", 3, 1, (16, 16, 16)).eval()
    twin = copy.deepcopy(enc)
    with torch.no_grad():
        for p in twin.parameters():
            p.mul_(0.5)
        x = torch.rand(2, 1, 16, 16, 16)
        assert not torch.allclose(twin.feature_map(x), enc.feature_map(x))


def test_an_encoder_without_a_feature_map_says_so():
    enc = Encoder(torch.nn.Flatten(), 4, EncoderSpec("custom:flat", 2, size=[2, 2]))
    assert not enc.has_feature_map and enc.patch_tokens is None
    with pytest.raises(MedContrastError, match="custom:flat exposes no spatial feature map"):
        enc.feature_map(torch.zeros(1, 1, 2, 2))
