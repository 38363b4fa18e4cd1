"""The method contract: ``forward(batch) -> {"loss": scalar, ...}``.

A batch is a dict with ``view1`` and ``view2`` of shape (B, C, *size), ``patient`` (B,) integer
group codes and optionally ``label`` (B,). Extra entries of the returned dict are logged.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from medcontrast.models.encoders import Encoder
from medcontrast.registry import Registry

METHODS: Registry[type[Method]] = Registry("method")


class Method(nn.Module):
    """Base class: holds the online encoder that gets exported."""

    needs_labels = False

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def after_step(self, progress: float) -> None:
        """Called after each optimizer step with training progress in [0, 1]."""


def momentum_at(base: float, progress: float) -> float:
    """Cosine increase of the EMA momentum from ``base`` to 1 (BYOL, Grill et al., 2020)."""
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1) / 2


class MomentumPair(nn.Module):
    """A frozen copy of modules updated as an exponential moving average of the originals."""

    def __init__(self, *modules: nn.Module) -> None:
        super().__init__()
        self.targets = nn.ModuleList(copy.deepcopy(m) for m in modules)
        for p in self.targets.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, sources: list[nn.Module], momentum: float) -> None:
        for src, tgt in zip(sources, self.targets, strict=True):
            for ps, pt in zip(src.parameters(), tgt.parameters(), strict=True):
                pt.mul_(momentum).add_(ps.detach(), alpha=1 - momentum)
            for bs, bt in zip(src.buffers(), tgt.buffers(), strict=True):
                bt.copy_(bs)


def build_method(name: str, encoder: Encoder, **kwargs) -> Method:
    """Instantiate a registered method; ``kwargs`` are the method's own keyword arguments."""
    cls = METHODS.get(name)
    import inspect

    accepted = set(inspect.signature(cls.__init__).parameters) - {"self", "encoder"}
    return cls(encoder, **{k: v for k, v in kwargs.items() if k in accepted})
