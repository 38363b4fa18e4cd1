"""Supervised contrastive learning (Khosla et al., NeurIPS 2020) on the labeled rows."""

from __future__ import annotations

import torch

from medcontrast.losses import supcon
from medcontrast.methods.base import METHODS, Method
from medcontrast.models.encoders import Encoder
from medcontrast.models.heads import mlp


@METHODS.register("supcon")
class SupCon(Method):
    """Encoder -> projection MLP -> SupCon loss; needs ``label`` in every batch."""

    needs_labels = True

    def __init__(
        self,
        encoder: Encoder,
        proj_hidden: int = 512,
        proj_dim: int = 128,
        proj_layers: int = 2,
        temperature: float = 0.1,
    ) -> None:
        super().__init__(encoder)
        self.projector = mlp(encoder.num_features, proj_hidden, proj_dim, proj_layers)
        self.temperature = temperature

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        b = batch["view1"].shape[0]
        h = self.encoder(torch.cat([batch["view1"], batch["view2"]], 0))
        z = self.projector(h)
        loss = supcon(z[:b], z[b:], batch["label"], self.temperature)
        return {"loss": loss, "feature_std": h.detach().float().std(0).mean()}
