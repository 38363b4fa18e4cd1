"""Batch-norm statistics that describe the evaluated images ("precise BN").

A network's batch-norm layers normalise with running statistics in eval mode. A randomly
initialised network holds mean 0 and variance 1 there, which do not describe its activations on
real images: measured on the demo's phantom radiographs, a random ``timm:regnetx_002`` in eval
mode gave features about 50 times smaller than in train mode, with 35% of the feature columns
constant at 64 px and every column constant at 32 px. A linear probe on such features needs huge
weights; LP-FT copies them into the head, the first fine-tuning steps move the statistics to the
data's scale, and the logits explode (every prediction 0 or 1). A pretrained encoder's statistics
describe its pretraining views, not the evaluated images either.

So every initialisation, pretrained or random alike (the comparison stays paired), gets its
running statistics re-estimated on the same unlabelled training-split images before frozen
features are extracted and before each validation or test prediction of a fine-tune: a forward
pass in train mode without gradients, averaged over the whole set (momentum None), as in Wu and
Johnson, "Rethinking 'Batch' in BatchNorm" (2021), which calls it precise BN. PyTorch has no
helper for it (``torch.optim.swa_utils.update_bn`` wants a data loader and leaves dropout on);
this is that loop, a screen long. Layers without running statistics (LayerNorm, GroupNorm) are
left alone.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

MAX_NORM_IMAGES = 256  # enough for stable statistics; a forward pass each, before each check


def norm_rows(rows: np.ndarray, limit: int = MAX_NORM_IMAGES) -> np.ndarray:
    """At most ``limit`` of ``rows`` (indices), evenly spaced: the images whose statistics the
    batch-norm layers take. No label is read."""
    if len(rows) <= limit:
        return np.asarray(rows)
    return np.asarray(rows)[np.linspace(0, len(rows) - 1, limit).round().astype(int)]


def _norm_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


@torch.no_grad()
def recalibrate_norm(
    model: nn.Module,
    images: np.ndarray | torch.Tensor,
    device: torch.device,
    batch_size: int = 256,
) -> bool:
    """Re-estimate every batch-norm layer's running mean and variance of ``model`` on ``images``
    (n, C, *size): the average of the batch statistics over the whole set. The model is left in
    eval mode. Returns False (nothing changed) when it has no such layer or fewer than 2 images
    (a batch of one has no variance)."""
    layers = _norm_layers(model)
    if not layers or len(images) < 2:
        model.eval()
        return False
    momenta = [m.momentum for m in layers]
    model.eval()
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
        m.train()
    # Equal-sized chunks, none of a single image (train-mode batch norm refuses it).
    chunks = max(1, min(int(np.ceil(len(images) / batch_size)), len(images) // 2))
    for part in np.array_split(np.arange(len(images)), chunks):
        x = images[int(part[0]) : int(part[-1]) + 1]
        if isinstance(x, torch.Tensor):
            x = x.to(device).float()
        else:
            x = torch.from_numpy(np.asarray(x, dtype=np.float32)).to(device)
        model(x)
    for m, momentum in zip(layers, momenta, strict=True):
        m.momentum = momentum
        m.eval()
    return True
