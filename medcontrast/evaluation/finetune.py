"""Full fine-tuning of an encoder with a linear head, on a label budget.

Augmentation (the batched views on the device), class-weighted cross-entropy for imbalance,
AdamW with a cosine schedule and a larger learning rate for the new head, and early stopping on
the validation split's metric, restoring the best epoch before predicting the test split.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medcontrast.augment.batched import BatchedViews
from medcontrast.augment.monai_views import draw_seed
from medcontrast.augment.params import AugmentParams
from medcontrast.evaluation.metrics import point_metrics
from medcontrast.models.encoders import Encoder


@dataclass
class FinetuneSettings:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 1e-3
    head_lr_mult: float = 10.0
    weight_decay: float = 1e-4
    patience: int = 8
    min_steps_per_epoch: int = 10
    class_weighting: bool = True
    select_metric: str = "auroc"


class _Classifier(nn.Module):
    def __init__(self, encoder: Encoder, n_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.num_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


@torch.no_grad()
def _predict(
    model: nn.Module, images: np.ndarray, device: torch.device, amp, batch: int = 256
) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.asarray(images[i : i + batch], dtype=np.float32)).to(device)
        with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
            out.append(F.softmax(model(x).float(), 1).cpu())
    return torch.cat(out).numpy()


def finetune(
    make_encoder: Callable[[int], Encoder],
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    test_x: np.ndarray,
    n_classes: int,
    settings: FinetuneSettings,
    views: AugmentParams | None,
    device: torch.device,
    seed: int,
    amp: torch.dtype | None = None,
) -> tuple[np.ndarray, dict]:
    """Fine-tune a fresh encoder (``make_encoder(seed)``: random weights differ by seed); returns
    test probabilities (n_test, C) and run info (best epoch, its validation score and validation
    probabilities ``val_prob`` (n_val, C))."""
    torch.manual_seed(seed)
    model = _Classifier(make_encoder(seed), n_classes).to(device)
    n = len(train_x)
    steps_per_epoch = max(math.ceil(n / settings.batch_size), settings.min_steps_per_epoch)
    total = steps_per_epoch * settings.epochs
    opt = torch.optim.AdamW(
        [
            {"params": model.encoder.parameters(), "lr": settings.lr},
            {"params": model.head.parameters(), "lr": settings.lr * settings.head_lr_mult},
        ],
        weight_decay=settings.weight_decay,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    counts = np.bincount(train_y, minlength=n_classes).astype(np.float64)
    weight = None
    if settings.class_weighting:
        w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
        weight = torch.tensor(w, dtype=torch.float32, device=device)
    augment = BatchedViews(views) if views is not None else None
    rng = np.random.default_rng(draw_seed(seed, 5))
    g = torch.Generator(device=device)
    g.manual_seed(draw_seed(seed, 6))
    best_score, best_state, best_epoch, bad = -np.inf, None, 0, 0
    images = torch.from_numpy(np.asarray(train_x, dtype=np.float32))
    labels = torch.from_numpy(train_y.astype(np.int64))
    bs = min(settings.batch_size, max(n, 2))
    for epoch in range(settings.epochs):
        model.train()
        for _ in range(steps_per_epoch):
            idx = (
                rng.integers(0, n, bs)
                if n < settings.batch_size
                else rng.choice(n, bs, replace=False)
            )
            x = images[idx].to(device)
            if augment is not None:
                x = augment(x, g)
            y = labels[idx].to(device)
            with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
                logits = model(x)
            loss = F.cross_entropy(logits.float(), y, weight=weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if len(val_y):
            score = point_metrics(
                val_y, _predict(model, val_x, device, amp), [settings.select_metric]
            )
            value = score[settings.select_metric]
            value = -np.inf if np.isnan(value) else value
        else:
            value = float(epoch)  # no validation split: keep the last epoch
        if value > best_score:
            best_score, best_epoch, bad = value, epoch, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            bad += 1
            if bad >= settings.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    val_prob = _predict(model, val_x, device, amp) if len(val_y) else np.zeros((0, n_classes))
    return _predict(model, test_x, device, amp), {
        "best_epoch": best_epoch + 1,
        "val_score": float(best_score),
        "val_prob": val_prob,
    }
