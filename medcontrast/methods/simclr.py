"""SimCLR (Chen et al., "A Simple Framework for Contrastive Learning of Visual Representations",
ICML 2020), optionally patient-aware (MICLe, Azizi et al., ICCV 2021)."""

from __future__ import annotations

import torch

from medcontrast.losses import nt_xent
from medcontrast.methods.base import METHODS, Method
from medcontrast.models.encoders import Encoder
from medcontrast.models.heads import HeadSpec


@METHODS.register("simclr")
class SimCLR(Method):
    """Encoder -> projection MLP -> NT-Xent over the global batch.

    Patient-aware positives (view 2 taken from another image of the same patient) come from the
    data side; ``mask_same_patient`` removes same-patient negatives here.
    """

    def __init__(
        self,
        encoder: Encoder,
        head: HeadSpec | None = None,
        temperature: float = 0.1,
        mask_same_patient: bool = False,
    ) -> None:
        super().__init__(encoder)
        head = head or HeadSpec()
        self.projector = head.projector(encoder.num_features)
        self.temperature = temperature
        self.mask_same_patient = mask_same_patient

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        b = batch["view1"].shape[0]
        h = self.encoder(torch.cat([batch["view1"], batch["view2"]], 0))  # (2B, D)
        z = self.projector(h)
        loss = nt_xent(
            z[:b],
            z[b:],
            self.temperature,
            groups=batch.get("patient"),
            mask_same_group=self.mask_same_patient,
        )
        return {"loss": loss, "feature_std": h.detach().float().std(0).mean()}
