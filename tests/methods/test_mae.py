"""MAE: patch order, the masking distribution, the loss on masked patches, bad settings."""

from __future__ import annotations

import math

import pytest
import torch

from medcontrast.errors import MedContrastError
from medcontrast.methods import build_method
from medcontrast.methods.mae import mae_loss, mask_from_noise, patchify
from medcontrast.models.encoders import build_encoder


@pytest.mark.parametrize("size,patch", [((8, 12), (4, 3)), ((4, 6, 8), (2, 3, 4))])
def test_patches_are_in_the_grid_order_of_the_encoder_tokens(size, patch):
    grid = [s // p for s, p in zip(size, patch, strict=True)]
    # Each pixel holds the row-major index of its patch (channel 0) and its channel (1).
    index = torch.arange(math.prod(grid), dtype=torch.float32).reshape(grid)
    for a, p in enumerate(patch):
        index = index.repeat_interleave(p, dim=a)
    x = torch.stack([index, torch.full(size, 7.0)])[None]  # (1, 2, *size)
    out = patchify(x, patch)
    assert out.shape == (1, math.prod(grid), 2 * math.prod(patch))
    assert torch.equal(
        out[0, :, 0::2], torch.arange(out.shape[1])[:, None].float().expand(-1, math.prod(patch))
    )
    assert bool((out[0, :, 1::2] == 7).all())  # channels last within a patch


def test_each_patch_is_masked_with_the_mask_ratio():
    n, patches, keep = 4000, 16, 4
    noise = torch.rand(n, patches, generator=torch.Generator().manual_seed(0))
    ids_keep, mask = mask_from_noise(noise, keep)
    assert bool((mask.sum(1) == patches - keep).all())  # exactly N - keep masked per image
    assert bool((mask.gather(1, ids_keep) == 0).all())
    torch.testing.assert_close(mask.mean(0), torch.full((patches,), 0.75), atol=0.03, rtol=0)


@pytest.mark.parametrize("norm_pix", [False, True])
def test_loss_is_zero_for_a_perfect_reconstruction_of_the_masked_patches(norm_pix):
    target = torch.randn(3, 10, 12)
    mask = (torch.rand(3, 10) < 0.7).float()
    mask[:, 0] = 1
    ideal = target
    if norm_pix:
        ideal = (target - target.mean(-1, keepdim=True)) / (
            target.var(-1, keepdim=True) + 1e-6
        ).sqrt()
    garbage = torch.where(mask[..., None].bool(), ideal, torch.randn_like(ideal) * 100)
    assert float(mae_loss(garbage, target, mask, norm_pix)) == pytest.approx(0, abs=1e-10)
    wrong = torch.where(mask[..., None].bool(), ideal + 1, ideal)
    assert float(mae_loss(wrong, target, mask, norm_pix)) == pytest.approx(1, rel=1e-5)


@pytest.mark.parametrize(
    "name,ndim,size,patch",
    [("timm:vit_tiny_patch16_224", 2, (32, 32), 8), ("monai:vit", 3, (16, 16, 16), 4)],
)
def test_trains_vits_and_draws_its_masks_from_the_generator(name, ndim, size, patch):
    method = build_method(
        "mae", build_encoder(name, ndim, 1, size, patch_size=patch), decoder_dim=32
    )
    batch = {"view1": torch.rand(2, 1, *size), "view2": torch.rand(2, 1, *size)}
    draw = method.device_draws(batch, torch.Generator().manual_seed(1))
    again = method.device_draws(batch, torch.Generator().manual_seed(1))
    assert torch.equal(draw["mask_noise"], again["mask_noise"])
    assert draw["mask_noise"].shape == (4, (size[0] // patch) ** ndim)
    out = method({**batch, **draw})
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and method.encoder.backbone is not None
    grads = [p.grad for p in method.encoder.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)


def test_a_cnn_and_a_patch_that_does_not_divide_are_refused_naming_the_setting():
    with pytest.raises(
        MedContrastError, match=r"model\.encoder=timm:resnet10t has none.*restoration"
    ):
        build_method("mae", build_encoder("timm:resnet10t", 2, 1, (32, 32)))
    vit = build_encoder("timm:vit_tiny_patch16_224", 2, 1, (30, 30), patch_size=8)
    with pytest.raises(
        MedContrastError, match=r"\[8, 8\] .* does not divide data\.size \[30, 30\]"
    ):
        build_method("mae", vit)
