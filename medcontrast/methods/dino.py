"""DINO (Caron et al., "Emerging Properties in Self-Supervised Vision Transformers", ICCV 2021):
self-distillation with no labels. A student network matches the output distribution of an EMA
teacher across crops of one image; the teacher's outputs are centred (a running mean subtracted)
and sharpened (a low temperature), which together prevent collapse without negatives, and the
student also sees small local crops (multi-crop) that the teacher does not."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from medcontrast.augment.multicrop import LocalCrops
from medcontrast.distributed import all_reduce_mean
from medcontrast.losses import dino_loss
from medcontrast.methods.base import METHODS, Method, MomentumPair, momentum_at
from medcontrast.models.encoders import Encoder
from medcontrast.models.heads import HeadSpec


class Prototypes(nn.Module):
    """DINO's last layer: L2-normalised input times L2-normalised weights, i.e. a weight-normed
    linear layer with its norm fixed to 1 (``norm_last_layer=True`` in the paper's code).

    Shapes: (B, dim) -> (B, out_dim) logits in [-1, 1].
    """

    def __init__(self, dim: int, out_dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_dim, dim))
        nn.init.trunc_normal_(self.weight, std=0.02)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return F.linear(F.normalize(z, dim=-1), F.normalize(self.weight, dim=-1))


@torch.no_grad()
def updated_center(center: torch.Tensor, teacher: torch.Tensor, momentum: float) -> torch.Tensor:
    """The centre after one batch: ``m * center + (1 - m) * mean of the teacher logits`` over
    every global crop of the global batch (averaged across DDP processes).

    Shapes: center (K,), teacher (G, B, K) -> (K,).
    """
    batch_mean = all_reduce_mean(teacher.float().mean(dim=(0, 1)))
    return center * momentum + batch_mean * (1 - momentum)


def teacher_temp_at(start: float, end: float, warmup: float, progress: float) -> float:
    """Linear warm-up of the teacher temperature from ``start`` to ``end`` over the first
    ``warmup`` fraction of training, then constant (DINO: 0.04 -> 0.07 over 30 epochs)."""
    if warmup <= 0 or progress >= warmup:
        return end
    return start + (end - start) * progress / warmup


@METHODS.register("dino")
class DINO(Method):
    """Student: encoder -> ``head`` MLP -> prototypes; teacher: their EMA copy.

    A batch has ``view1`` and ``view2`` (B, C, *size), the two global crops, and, with
    ``local_crops`` > 0, ``local`` (local_crops * B, C, *local) made by the training loop from the
    global views on the device (:class:`~medcontrast.augment.multicrop.LocalCrops`). The student
    sees every crop, the teacher the two global ones.

    Buffers ``center`` (out_dim,) and ``teacher_temp`` () are in the state dict, so a resumed
    run continues with the same centring and temperature.
    """

    def __init__(
        self,
        encoder: Encoder,
        head: HeadSpec | None = None,
        out_dim: int = 4096,
        student_temp: float = 0.1,
        teacher_temp: float = 0.07,
        warmup_teacher_temp: float = 0.04,
        teacher_temp_warmup: float = 0.3,
        center_momentum: float = 0.9,
        momentum: float = 0.99,
        local_crops: int = 6,
        local_size: float = 0.5,
        local_scale: tuple[float, float] = (0.25, 0.6),
    ) -> None:
        super().__init__(encoder)
        head = head or HeadSpec()
        self.projector = head.projector(encoder.num_features)
        self.prototypes = Prototypes(head.dim, out_dim)
        self.target = MomentumPair(self.encoder, self.projector, self.prototypes)
        self.student_temp = student_temp
        self.temps = (warmup_teacher_temp, teacher_temp, teacher_temp_warmup)
        self.center_momentum = center_momentum
        self.base_momentum = momentum
        self.momentum = momentum
        local = LocalCrops(local_crops, local_size, tuple(local_scale))  # checks the settings
        self.local_views = local if local_crops > 0 else None
        self.register_buffer("center", torch.zeros(out_dim))
        self.register_buffer("teacher_temp", torch.tensor(warmup_teacher_temp))
        self._next_center: torch.Tensor | None = None

    def _student(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        return h, self.prototypes(self.projector(h))

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        b = batch["view1"].shape[0]
        globals_ = torch.cat([batch["view1"], batch["view2"]], 0)  # (2B, C, *size)
        h, s = self._student(globals_)
        crops = [s]
        if "local" in batch:  # another size: its own encoder pass
            crops.append(self._student(batch["local"])[1])
        student = torch.cat(crops, 0).reshape(-1, b, s.shape[-1])  # (V, B, K)
        enc, proj, protos = self.target.targets
        with torch.no_grad():
            teacher = protos(proj(enc(globals_))).reshape(2, b, -1)  # (2, B, K)
        loss = dino_loss(student, teacher, self.center, self.student_temp, float(self.teacher_temp))
        if self.training:  # applied in after_step, once the step is taken
            self._next_center = updated_center(self.center, teacher, self.center_momentum)
        probs = F.softmax((teacher.float() - self.center) / self.teacher_temp, dim=-1)
        entropy = -(probs * probs.clamp_min(1e-12).log()).sum(-1).mean() / math.log(probs.shape[-1])
        return {
            "loss": loss,
            "teacher_temp": self.teacher_temp.detach().clone(),
            "teacher_entropy": entropy,  # 0: one-hot (sharp); 1: uniform (collapsed to flat)
            "momentum": torch.tensor(self.momentum),
            "feature_std": h.detach().float().std(0).mean(),
        }

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        if self._next_center is not None:
            self.center.copy_(self._next_center)
            self._next_center = None
        self.teacher_temp.fill_(teacher_temp_at(*self.temps, progress))
        self.momentum = momentum_at(self.base_momentum, progress)
        self.target.update([self.encoder, self.projector, self.prototypes], self.momentum)
