"""Supervised contrastive learning (Khosla et al., NeurIPS 2020) on the labeled rows."""

from __future__ import annotations

import torch

from medcontrast.losses import supcon
from medcontrast.methods.base import METHODS, Method
from medcontrast.models.encoders import Encoder
from medcontrast.models.heads import HeadSpec


@METHODS.register("supcon")
class SupCon(Method):
    """Encoder -> projection MLP -> SupCon loss; needs ``label`` in every batch."""

    needs_labels = True

    def __init__(
        self,
        encoder: Encoder,
        head: HeadSpec | None = None,
        temperature: float = 0.1,
    ) -> None:
        super().__init__(encoder)
        head = head or HeadSpec()
        self.projector = head.projector(encoder.num_features)
        self.temperature = temperature

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        b = batch["view1"].shape[0]
        h = self.encoder(torch.cat([batch["view1"], batch["view2"]], 0))
        z = self.projector(h)
        loss = supcon(z[:b], z[b:], batch["label"], self.temperature)
        return {"loss": loss, "feature_std": h.detach().float().std(0).mean()}
