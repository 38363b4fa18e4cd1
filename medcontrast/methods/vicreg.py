"""VICReg (Bardes, Ponce and LeCun, "VICReg: Variance-Invariance-Covariance Regularization for
Self-Supervised Learning", ICLR 2022): no negatives, no momentum encoder, no large batch; the
embeddings of two views are pulled together while the variance of each dimension is kept up and
the dimensions are decorrelated, which prevents collapse."""

from __future__ import annotations

import torch

from medcontrast.losses import vicreg_loss
from medcontrast.methods.base import METHODS, Method
from medcontrast.models.encoders import Encoder
from medcontrast.models.heads import HeadSpec


@METHODS.register("vicreg")
class VICReg(Method):
    """Encoder -> expander MLP (the ``head``: the paper uses three layers of 8192; wider than
    SimCLR's projection helps) -> VICReg loss on the global batch.

    The batch's two views (B, C, *size) give (B, head.dim) embeddings each; the logged terms are
    the unweighted invariance, variance and covariance.
    """

    def __init__(
        self,
        encoder: Encoder,
        head: HeadSpec | None = None,
        sim_weight: float = 25.0,
        var_weight: float = 25.0,
        cov_weight: float = 1.0,
    ) -> None:
        super().__init__(encoder)
        head = head or HeadSpec()
        self.projector = head.projector(encoder.num_features)
        self.weights = (sim_weight, var_weight, cov_weight)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        b = batch["view1"].shape[0]
        h = self.encoder(torch.cat([batch["view1"], batch["view2"]], 0))  # (2B, D)
        z = self.projector(h)
        loss, terms = vicreg_loss(z[:b], z[b:], *self.weights)
        return {
            "loss": loss,
            **{k: v.detach() for k, v in terms.items()},
            "feature_std": h.detach().float().std(0).mean(),
        }
