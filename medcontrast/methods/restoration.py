"""Restoration pretraining in the style of Models Genesis (Zhou et al., "Models Genesis", Medical
Image Analysis 2021): the encoder sees a corrupted image (local pixel shuffling, a non-linear
intensity curve, in- or out-painting) and a light decoder restores the original from its feature
map, under a mean-squared error. Optionally a contrastive term on the two corrupted views as in
the SwinUNETR pretraining (Tang et al., "Self-Supervised Pre-Training of Swin Transformers for 3D
Medical Image Analysis", CVPR 2022), weighted in the config. For CNN encoders in 2D and 3D (and
any encoder with a spatial feature map); the decoder is never exported.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medcontrast.augment.corruptions import GenesisCorruption
from medcontrast.errors import MedContrastError
from medcontrast.losses import nt_xent
from medcontrast.methods.base import METHODS, Method, dry_run
from medcontrast.models.decoders import UpsamplingDecoder
from medcontrast.models.encoders import Encoder
from medcontrast.models.heads import HeadSpec


def restoration_loss(restored: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Mean squared error over every pixel (Models Genesis' loss). Shapes: (B, C, *size) each."""
    return F.mse_loss(restored.float(), clean.float())


def feature_shape(encoder: Encoder, method: str) -> tuple[int, tuple[int, ...]]:
    """(channels, grid) of ``encoder``'s feature map at its input size, from one
    :func:`~medcontrast.methods.base.dry_run`; raises naming ``method`` where there is none."""
    spec = encoder.spec
    if not encoder.has_feature_map:
        raise MedContrastError(
            f"method.name={method} attaches a decoder to the encoder's feature map, and "
            f"model.encoder={spec.name} exposes none; use a timm or monai: encoder"
        )
    if not spec.size:
        raise MedContrastError(f"method.name={method} needs data.size (the decoder's output)")
    with dry_run(encoder):
        fmap = encoder.feature_map(torch.zeros(1, spec.in_channels, *spec.size))
    return fmap.shape[1], tuple(fmap.shape[2:])


@METHODS.register("restoration")
class Restoration(Method):
    """Encoder feature map -> :class:`~medcontrast.models.decoders.UpsamplingDecoder` -> the
    clean view.

    Both views of a batch, (B, C, *size) each, are corrupted on the device by
    :class:`~medcontrast.augment.corruptions.GenesisCorruption` (one draw per sample, from the
    loop's seeded generator) and restored: 2B images per step. With ``contrastive_weight`` > 0
    the spatial means of the two corrupted views' feature maps (the pooled features for CNNs)
    also go through the ``head`` projector into NT-Xent at ``temperature``; the loss is
    ``restoration_weight * mse + contrastive_weight * nt_xent``.
    """

    draws_on_device = True

    def __init__(
        self,
        encoder: Encoder,
        head: HeadSpec | None = None,
        nonlinear_prob: float = 0.9,
        shuffle_prob: float = 0.5,
        shuffle_cell: float = 0.1,
        paint_prob: float = 0.9,
        inpaint_rate: float = 0.2,
        decoder_width: int = 64,
        restoration_weight: float = 1.0,
        contrastive_weight: float = 0.0,
        temperature: float = 0.1,
    ) -> None:
        super().__init__(encoder)
        self.corrupt = GenesisCorruption(
            nonlinear_prob, shuffle_prob, shuffle_cell, paint_prob, inpaint_rate
        )
        if decoder_width < 1:
            raise MedContrastError(f"method.decoder_width must be 1 or more, not {decoder_width}")
        if (
            restoration_weight < 0
            or contrastive_weight < 0
            or restoration_weight == 0 == contrastive_weight
        ):
            raise MedContrastError(
                "method.restoration_weight and method.contrastive_weight must be >= 0 and not "
                f"both 0, not {restoration_weight} and {contrastive_weight}"
            )
        channels, grid = feature_shape(encoder, "restoration")
        size = tuple(encoder.spec.size)
        self.decoder = UpsamplingDecoder(
            channels, grid, encoder.spec.in_channels, size, decoder_width
        )
        self.projector = None
        if contrastive_weight > 0:
            self.projector = (head or HeadSpec()).projector(channels)
        self.weights = (restoration_weight, contrastive_weight)
        self.temperature = temperature

    def device_draws(
        self, batch: dict[str, torch.Tensor], generator: torch.Generator
    ) -> dict[str, torch.Tensor]:
        clean = torch.cat([batch["view1"], batch["view2"]], 0)
        return {"corrupted": self.corrupt(clean, generator)}  # (2B, C, *size)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        b = batch["view1"].shape[0]
        clean = torch.cat([batch["view1"], batch["view2"]], 0)
        fmap = self.encoder.feature_map(batch["corrupted"])  # (2B, C', *grid)
        mse = restoration_loss(self.decoder(fmap), clean)
        h = fmap.flatten(2).mean(-1)  # (2B, C')
        out = {"restoration": mse.detach(), "feature_std": h.detach().float().std(0).mean()}
        loss = self.weights[0] * mse
        if self.projector is not None:
            z = self.projector(h)
            contrast = nt_xent(z[:b], z[b:], self.temperature)
            loss = loss + self.weights[1] * contrast
            out["contrastive"] = contrast.detach()
        return {"loss": loss, **out}
