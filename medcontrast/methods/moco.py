"""MoCo v2 (He et al., CVPR 2020; Chen et al., arXiv:2003.04297): momentum encoder and a queue of
negatives, with the symmetric loss of MoCo v3 and optional same-patient masking of the queue."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from medcontrast.distributed import gather_no_grad
from medcontrast.losses import moco_infonce
from medcontrast.methods.base import METHODS, Method, MomentumPair, momentum_at
from medcontrast.models.encoders import Encoder
from medcontrast.models.heads import HeadSpec


@METHODS.register("moco")
class MoCo(Method):
    """Queries from the online branch, keys from an EMA copy; a FIFO queue holds old keys.

    Buffers ``queue`` (K, D), ``queue_groups`` (K,) and ``queue_ptr`` are part of the state dict,
    so a resumed run continues with the same negatives.
    """

    def __init__(
        self,
        encoder: Encoder,
        head: HeadSpec | None = None,
        temperature: float = 0.2,
        queue_size: int = 4096,
        momentum: float = 0.99,
        mask_same_patient: bool = False,
    ) -> None:
        super().__init__(encoder)
        head = head or HeadSpec()
        self.projector = head.projector(encoder.num_features)
        self.target = MomentumPair(self.encoder, self.projector)
        self.temperature = temperature
        self.base_momentum = momentum
        self.momentum = momentum
        self.mask_same_patient = mask_same_patient
        self.register_buffer("queue", F.normalize(torch.randn(queue_size, head.dim), dim=1))
        self.register_buffer("queue_groups", torch.full((queue_size,), -1, dtype=torch.long))
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))

    def _keys(self, x: torch.Tensor) -> torch.Tensor:
        enc, proj = self.target.targets
        with torch.no_grad():
            return F.normalize(proj(enc(x)).float(), dim=1)

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        b = batch["view1"].shape[0]
        both = torch.cat([batch["view1"], batch["view2"]], 0)
        h = self.encoder(both)
        q = self.projector(h)
        k = self._keys(both)
        groups = batch.get("patient")
        qg = groups if self.mask_same_patient else None
        kg = self.queue_groups if self.mask_same_patient else None
        queue = self.queue.clone()
        loss = 0.5 * (
            moco_infonce(q[:b], k[b:], queue, self.temperature, qg, kg)
            + moco_infonce(q[b:], k[:b], queue, self.temperature, qg, kg)
        )
        if self.training:
            self._enqueue(k, torch.cat([groups, groups]) if groups is not None else None)
        return {
            "loss": loss,
            "momentum": torch.tensor(self.momentum),
            "feature_std": h.detach().float().std(0).mean(),
        }

    @torch.no_grad()
    def _enqueue(self, keys: torch.Tensor, groups: torch.Tensor | None) -> None:
        keys = gather_no_grad(keys)
        groups = (
            gather_no_grad(groups)
            if groups is not None
            else torch.full((keys.shape[0],), -1, dtype=torch.long, device=keys.device)
        )
        size = self.queue.shape[0]
        keys, groups = keys[-size:], groups[-size:]
        idx = (self.queue_ptr + torch.arange(keys.shape[0], device=keys.device)) % size
        self.queue[idx] = keys.to(self.queue.dtype)
        self.queue_groups[idx] = groups
        self.queue_ptr.copy_((self.queue_ptr + keys.shape[0]) % size)

    def after_step(self, progress: float) -> None:
        self.momentum = momentum_at(self.base_momentum, progress)
        self.target.update([self.encoder, self.projector], self.momentum)
