"""MAE (He et al., "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022): a vision
transformer sees a random quarter of an image's patches; a small transformer decoder, used only
in pretraining, predicts the pixels of the rest, and the loss is taken on the masked patches only.
For timm ViTs in 2D and MONAI's ViT in 3D (the encoder's ``patch_tokens``); the encoder is
exported alone.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from medcontrast.augment.cells import to_cells
from medcontrast.errors import MedContrastError
from medcontrast.methods.base import METHODS, Method
from medcontrast.models.encoders import Encoder
from medcontrast.models.heads import HeadSpec


def patchify(x: torch.Tensor, patch: tuple[int, ...]) -> torch.Tensor:
    """(B, C, *size) -> (B, N, prod(patch) * C): patches in row-major grid order (that of the
    encoder's tokens), each flattened pixel-major with the channels last."""
    cells = to_cells(x, patch)  # (B, C, N, prod(patch))
    return cells.permute(0, 2, 3, 1).reshape(cells.shape[0], cells.shape[2], -1)


def mask_from_noise(noise: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor]:
    """MAE's per-sample random masking: the ``keep`` patches of lowest noise stay visible.

    Shapes: noise (B, N) -> ids_keep (B, keep), mask (B, N) with 1 where a patch is masked.
    """
    ids_keep = noise.argsort(1)[:, :keep]
    mask = torch.ones_like(noise).scatter_(1, ids_keep, 0.0)
    return ids_keep, mask


def mae_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, norm_pix: bool = True
) -> torch.Tensor:
    """Mean squared error on the masked patches only; with ``norm_pix`` each target patch is
    standardised by its own mean and variance first (the paper's better setting).

    Shapes: pred, target (B, N, P); mask (B, N), 1 = masked.
    """
    target = target.float()
    if norm_pix:
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    per_patch = (pred.float() - target).pow(2).mean(-1)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1)


class MAEDecoder(nn.Module):
    """(B, K, D) visible tokens and their indices -> (B, N, patch_dim) predictions of every patch.

    Visible tokens are projected to ``dim``, mask tokens fill the other places, a learned
    position embedding is added (the paper's is a fixed sine-cosine table; a learned one works
    for any number of dimensions), then ``depth`` pre-norm transformer blocks and a linear
    prediction of each patch's pixels.
    """

    def __init__(
        self, enc_dim: int, n_patches: int, patch_dim: int, dim: int, depth: int, heads: int
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(enc_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, n_patches, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(
                dim,
                heads,
                4 * dim,
                dropout=0.0,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.pred = nn.Linear(dim, patch_dim)

    def forward(self, visible: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        x = self.embed(visible)  # (B, K, dim)
        b, _, dim = x.shape
        full = self.mask_token.expand(b, self.pos.shape[1], dim).to(x.dtype).clone()
        full = full.scatter(1, ids_keep[..., None].expand(-1, -1, dim), x)  # (B, N, dim)
        full = full + self.pos
        for block in self.blocks:
            full = block(full)
        return self.pred(self.norm(full))


def patch_grid(encoder: Encoder, size: tuple[int, ...]) -> tuple[int, ...]:
    """The patch grid of ``encoder`` at spatial ``size``; raises naming the settings where a
    patch does not divide the input."""
    patch = encoder.patch_tokens.patch_size
    if len(patch) != len(size) or any(s % p for s, p in zip(size, patch, strict=True)):
        raise MedContrastError(
            f"method.name=mae: the patch size {list(patch)} of model.encoder={encoder.spec.name} "
            f"does not divide data.size {list(size)}; change data.size or model.patch_size"
        )
    return tuple(s // p for s, p in zip(size, patch, strict=True))


@METHODS.register("mae")
class MAE(Method):
    """Encoder (visible patches) -> :class:`MAEDecoder` -> pixels of the masked patches.

    Both views of a batch, (B, C, *size) each, are masked independently (2B images per step);
    the noise that orders each image's patches is drawn on the device by the loop's seeded
    generator, so a resumed run masks the same patches. Class and register tokens go through the
    encoder but not the decoder. ``head`` is not used.
    """

    draws_on_device = True

    def __init__(
        self,
        encoder: Encoder,
        head: HeadSpec | None = None,
        mask_ratio: float = 0.75,
        decoder_dim: int = 128,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        norm_pix_loss: bool = True,
    ) -> None:
        super().__init__(encoder)
        spec = encoder.spec
        if encoder.patch_tokens is None:
            raise MedContrastError(
                f"method.name=mae masks a vision transformer's patch tokens and model.encoder="
                f"{spec.name} has none; use a timm ViT (e.g. timm:vit_tiny_patch16_224) or "
                "monai:vit, or method.name=restoration for CNN encoders"
            )
        if not 0 < mask_ratio < 1:
            raise MedContrastError(f"method.mask_ratio must be in (0, 1), not {mask_ratio}")
        if decoder_dim % decoder_heads:
            raise MedContrastError(
                f"method.decoder_dim={decoder_dim} must be a multiple of "
                f"method.decoder_heads={decoder_heads}"
            )
        if not spec.size:
            raise MedContrastError("method.name=mae needs data.size")
        self.patch = encoder.patch_tokens.patch_size
        n = math.prod(patch_grid(encoder, tuple(spec.size)))
        self.keep = max(1, round(n * (1 - mask_ratio)))
        patch_dim = math.prod(self.patch) * spec.in_channels
        self.decoder = MAEDecoder(
            encoder.num_features, n, patch_dim, decoder_dim, decoder_depth, decoder_heads
        )
        self.norm_pix_loss = norm_pix_loss
        self.n_patches = n

    def check_input(self, size: tuple[int, ...]) -> None:
        super().check_input(size)
        if math.prod(patch_grid(self.encoder, size)) != self.n_patches:
            raise MedContrastError(
                f"method.name=mae was built for data.size {self.encoder.spec.size}, not {list(size)}"
            )

    def device_draws(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        b, dev = batch["view1"].shape[0], batch["view1"].device
        return {"mask_noise": torch.rand(2 * b, self.n_patches, generator=generator, device=dev)}

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        x = torch.cat([batch["view1"], batch["view2"]], 0)  # (2B, C, *size)
        tokens, net = self.encoder.patch_tokens, self.encoder.backbone
        prefix, patches = tokens.embed(net, x)  # (2B, P, D), (2B, N, D)
        ids_keep, mask = mask_from_noise(batch["mask_noise"], self.keep)
        d = patches.shape[-1]
        visible = patches.gather(1, ids_keep[..., None].expand(-1, -1, d))  # (2B, K, D)
        encoded = tokens.encode(net, torch.cat([prefix, visible], 1))[:, prefix.shape[1] :]
        pred = self.decoder(encoded, ids_keep)  # (2B, N, patch_dim)
        loss = mae_loss(pred, patchify(x, self.patch), mask, self.norm_pix_loss)
        return {"loss": loss, "feature_std": encoded.detach().float().mean(1).std(0).mean()}
