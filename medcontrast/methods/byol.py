"""BYOL (Grill et al., "Bootstrap Your Own Latent", NeurIPS 2020): no negatives; an online
network with a predictor regresses the EMA target network's projection of the other view."""

from __future__ import annotations

import torch

from medcontrast.losses import byol_loss
from medcontrast.methods.base import METHODS, Method, MomentumPair, momentum_at
from medcontrast.models.encoders import Encoder
from medcontrast.models.heads import HeadSpec


@METHODS.register("byol")
class BYOL(Method):
    """Online: encoder -> projector -> predictor. Target: EMA of encoder and projector."""

    def __init__(
        self,
        encoder: Encoder,
        head: HeadSpec | None = None,
        momentum: float = 0.99,
    ) -> None:
        super().__init__(encoder)
        head = head or HeadSpec()
        self.projector = head.projector(encoder.num_features)
        self.predictor = head.predictor()
        self.target = MomentumPair(self.encoder, self.projector)
        self.base_momentum = momentum
        self.momentum = momentum

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        b = batch["view1"].shape[0]
        both = torch.cat([batch["view1"], batch["view2"]], 0)
        h = self.encoder(both)
        p = self.predictor(self.projector(h))
        enc, proj = self.target.targets
        with torch.no_grad():
            z = proj(enc(both))
        loss = 0.5 * (byol_loss(p[:b], z[b:]) + byol_loss(p[b:], z[:b]))
        return {
            "loss": loss,
            "momentum": torch.tensor(self.momentum),
            "feature_std": h.detach().float().std(0).mean(),
        }

    def after_step(self, progress: float) -> None:
        self.momentum = momentum_at(self.base_momentum, progress)
        self.target.update([self.encoder, self.projector], self.momentum)
