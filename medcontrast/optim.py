"""Optimizers and the learning-rate schedule."""

from __future__ import annotations

import math

import torch
from torch import nn

from medcontrast.errors import MedContrastError


class LARS(torch.optim.Optimizer):
    """SGD with momentum and layer-wise adaptive rate scaling (You et al., 2017), as used for
    large-batch SimCLR and BYOL. Parameters in groups with ``lars=False`` (biases, norms) get plain
    SGD with momentum. torch ships no LARS, hence this one.
    """

    def __init__(
        self,
        params,
        lr: float,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        eta: float = 0.001,
    ) -> None:
        super().__init__(
            params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, eta=eta, lars=True)
        )

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if group["lars"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                    p_norm, g_norm = torch.norm(p), torch.norm(grad)
                    trust = torch.where(
                        (p_norm > 0) & (g_norm > 0),
                        group["eta"] * p_norm / g_norm,
                        torch.ones_like(p_norm),
                    )
                    grad = grad * trust
                state = self.state[p]
                buf = state.get("momentum_buffer")
                if buf is None:
                    buf = state["momentum_buffer"] = torch.clone(grad).detach()
                else:
                    buf.mul_(group["momentum"]).add_(grad)
                p.add_(buf, alpha=-group["lr"])


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay (and no LARS scaling) for biases and normalisation parameters."""
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0, "lars": False},
    ]


def build_optimizer(
    name: str, model: nn.Module, lr: float, weight_decay: float, fused: bool = False
) -> torch.optim.Optimizer:
    """``fused``: AdamW's fused kernel (one launch for every parameter; ``train.fused_optimizer``);
    the other optimizers have none here."""
    groups = param_groups(model, weight_decay)
    if name == "adamw":
        for g in groups:
            g.pop("lars", None)
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), fused=fused or None)
    if name == "lars":
        return LARS(groups, lr=lr, weight_decay=weight_decay)
    if name == "sgd":
        for g in groups:
            g.pop("lars", None)
        return torch.optim.SGD(groups, lr=lr, momentum=0.9)
    raise MedContrastError(f"unknown train.optimizer {name!r}; choose adamw, lars or sgd")


def warmup_cosine(total_steps: int, warmup_steps: int, min_ratio: float):
    """LR multiplier: linear warm-up, then cosine decay to ``min_ratio`` (Loshchilov & Hutter, 2017)."""

    def factor(step: int) -> float:
        if warmup_steps > 0 and step < warmup_steps:
            return (step + 1) / warmup_steps
        span = max(1, total_steps - warmup_steps)
        progress = min(1.0, (step - warmup_steps) / span)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def layer_decay_groups(encoder: nn.Module, lr: float, decay: float) -> list[dict]:
    """Parameter groups of an encoder whose learning rate shrinks by ``decay`` per layer from
    the last stage down to the stem (layer-wise decay, Clark et al., ELECTRA, ICLR 2020; Bao et
    al., BEiT, ICLR 2022): early layers hold the general features worth keeping.

    timm backbones are split by their own ``group_matcher`` (blocks of a ViT, stages of a CNN);
    other backbones (the MONAI networks) by their top-level children in order, since MONAI
    offers no such grouping. ``decay=1`` gives one group at ``lr``.
    """
    backbone = getattr(encoder, "backbone", encoder)
    if decay == 1.0:
        return [{"params": [p for p in encoder.parameters() if p.requires_grad], "lr": lr}]
    if hasattr(backbone, "group_matcher"):
        from timm.optim import param_groups_layer_decay

        groups = param_groups_layer_decay(backbone, weight_decay=0.0, layer_decay=decay)
        return [{"params": g["params"], "lr": lr * g["lr_scale"]} for g in groups]
    layers = [list(m.parameters()) for m in backbone.children()]
    layers = [params for params in layers if params]
    return [
        {"params": params, "lr": lr * decay ** (len(layers) - 1 - i)}
        for i, params in enumerate(layers)
    ]
