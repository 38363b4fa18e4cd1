"""Full fine-tuning of an encoder with a linear head, on a label budget.

Augmentation (the batched views on the device), class-weighted cross-entropy for imbalance,
AdamW with a cosine schedule over a budget of optimiser steps and a larger learning rate for the
head, a validation check every few steps and early stopping on the validation split's metric,
restoring the best check before predicting the test split. Every candidate (mode x learning
rate) is trained so, and the one best on validation kept. Batch norm takes its statistics from
unlabelled training images before each check and prediction (:mod:`.norm_stats`).

Two modes, by default both candidates. ``plain``: a new head and the encoder trained together from the first step.
``lpft``: LP-FT (Kumar et al., "Fine-Tuning can Distort Pretrained Features and Underperform
Out-of-Distribution", ICLR 2022): a linear probe on the frozen encoder's features first, its
weights copied into the head, then everything fine-tuned. With a random head, the first steps'
large gradients rewrite the pretrained features to fit the head; starting from a fitted head,
fine-tuning only refines them. The probe itself is step 0 of early stopping, so fine-tuning is
kept only where it beats the probe on the validation split. With ``wise_alphas`` the weights
between the two are tried too (WiSE-FT: Wortsman et al., "Robust fine-tuning of zero-shot
models", CVPR 2022): (1 - a) x probe + a x fine-tuned, a chosen on the validation split.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from medcontrast.augment.batched import BatchedViews
from medcontrast.augment.params import AugmentParams
from medcontrast.checks import check_choices, check_ranges
from medcontrast.data.resident import held
from medcontrast.errors import MedContrastError
from medcontrast.evaluation.metrics import point_metrics
from medcontrast.evaluation.norm_stats import recalibrate_norm
from medcontrast.evaluation.probes import extract_features, linear_probe
from medcontrast.evaluation.weights_kept import EarlyStop, weight_ensemble
from medcontrast.models.encoders import Encoder
from medcontrast.optim import layer_decay_groups
from medcontrast.seeding import Stream, draw_seed

FinetuneMode = Literal["both", "lpft", "plain"]
Precision = Literal["auto", "bf16", "fp32"]
MODES = {"both": ("lpft", "plain"), "lpft": ("lpft",), "plain": ("plain",)}


@dataclass
class FinetuneConfig:
    """The ``finetune:`` section of an evaluation config: how one fine-tuning run goes, and
    which runs an evaluation does. Checked when it is built (so at load time).

    A run trains each candidate (mode x learning rate) until validation stops improving, within
    a budget of optimiser steps, and keeps the candidate best on validation: every
    initialisation gets the same candidates, the same maximum and the same stopping rule. A
    random network needs many more steps than a pretrained one, so equal epochs are not fair.
    """

    # plain: encoder and a new head trained together from the start. lpft: a linear probe on the
    # frozen features first, then everything with a lower encoder learning rate (Kumar et al.).
    # both: each is a candidate, chosen on validation (LP-FT on degenerate features is no
    # baseline, plain fine-tuning can distort good features).
    mode: FinetuneMode = "both"
    steps: int = 1000  # at most this many optimiser steps per candidate (cosine schedule)
    eval_every: int = 25  # optimiser steps between validation checks
    patience: int = 8  # validation checks without improvement before a candidate stops
    batch_size: int = 64
    lr: float = 1e-3
    lr_factors: list[float] = field(default_factory=lambda: [0.3, 1.0, 3.0])  # lr x each tried
    head_lr_mult: float = 10.0
    weight_decay: float = 1e-4
    class_weighting: bool = True
    layer_decay: float = 1.0  # encoder learning rate x this per layer below the last; 1: off
    frozen_norm: bool = False  # batch norm keeps its running statistics while fine-tuning
    # lpft: mixtures (1 - a) x probe + a x fine-tuned weights tried on validation (WiSE-FT,
    # Wortsman et al. 2022), e.g. [0.25, 0.5, 0.75]; empty: off.
    wise_alphas: list[float] = field(default_factory=list)
    augment: bool = True
    precision: Precision = "auto"  # auto: bf16 on a GPU, else fp32
    budgets: list[str] = field(default_factory=list)  # budget names to fine-tune on; empty: all
    # Fine-tuning runs at once, each in its own process on the device: a small network leaves a
    # GPU mostly idle. Results do not depend on it.
    parallel: int = 1

    def __post_init__(self) -> None:
        check_choices("finetune", self)
        check_ranges(
            "finetune",
            self,
            above={"lr": 0, "head_lr_mult": 0, "layer_decay": 0},
            at_least={
                "steps": 1,
                "eval_every": 1,
                "batch_size": 1,
                "patience": 1,
                "parallel": 1,
                "weight_decay": 0,
            },
            within={"layer_decay": (0.0, 1.0)},
        )
        if not all(0 <= a <= 1 for a in self.wise_alphas):
            raise MedContrastError(
                f"finetune.wise_alphas must lie in [0, 1], not {self.wise_alphas}"
            )
        if not self.lr_factors or not all(f > 0 for f in self.lr_factors):
            raise MedContrastError(
                f"finetune.lr_factors must hold one or more values above 0, not {self.lr_factors}"
            )

    def candidates(self) -> list[tuple[str, float]]:
        """(mode, learning rate) of every candidate, in the order they are tried (on a tie in
        validation the first is kept)."""
        return [(m, self.lr * f) for m in MODES[self.mode] for f in self.lr_factors]


class _Classifier(nn.Module):
    def __init__(self, encoder: Encoder, n_classes: int) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.num_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(x))


def _batch(images: np.ndarray | torch.Tensor, idx, device: torch.device) -> torch.Tensor:
    """Images ``idx`` (a slice or (B,) indices) as float32 on ``device``, from the cache in
    memory or from a float16 copy already there (:func:`~medcontrast.data.resident.held`)."""
    if isinstance(images, torch.Tensor):
        if not isinstance(idx, slice):
            idx = torch.as_tensor(idx, device=images.device)
        return images[idx].to(device).float()
    return torch.from_numpy(np.asarray(images[idx], dtype=np.float32)).to(device)


@torch.no_grad()
def _predict(
    model: nn.Module, images: np.ndarray | torch.Tensor, device: torch.device, amp, batch: int = 256
) -> np.ndarray:
    model.eval()
    out = []
    for i in range(0, len(images), batch):
        x = _batch(images, slice(i, i + batch), device)
        with torch.autocast(device.type, dtype=amp) if amp else nullcontext():
            out.append(F.softmax(model(x).float(), 1).cpu())
    return torch.cat(out).numpy()


@dataclass
class _Inputs:
    """One fine-tune's arrays: training images (n, C, *size) and labels (n,), validation images
    and labels, and the unlabelled images (m, C, *size) batch norm takes its statistics from;
    images may be float16 copies on the device."""

    train_x: np.ndarray | torch.Tensor
    train_y: np.ndarray
    val_x: np.ndarray | torch.Tensor
    val_y: np.ndarray
    norm_x: np.ndarray | torch.Tensor
    n_classes: int


@dataclass
class _Shared:
    """What every candidate of one fine-tune shares besides its data and learning rate."""

    settings: FinetuneConfig
    views: AugmentParams | None
    device: torch.device
    seed: int
    amp: torch.dtype | None
    select_metric: str
    probe_c_grid: Sequence[float]


@dataclass
class _Candidate:
    """A trained candidate: its model at the best check, validation score and run info."""

    model: nn.Module
    score: float
    info: dict


def finetune(
    make_encoder: Callable[[int], Encoder],
    train_x: np.ndarray,
    train_y: np.ndarray,
    val_x: np.ndarray,
    val_y: np.ndarray,
    test_x: np.ndarray,
    n_classes: int,
    settings: FinetuneConfig,
    views: AugmentParams | None,
    device: torch.device,
    seed: int,
    amp: torch.dtype | None = None,
    features: tuple[np.ndarray, np.ndarray] | None = None,
    select_metric: str = "auroc",
    probe_c_grid: Sequence[float] = (0.01, 0.1, 1.0, 10.0),
    on_progress: Callable[[float, str, float], None] | None = None,
    norm_x: np.ndarray | None = None,
) -> tuple[np.ndarray, dict]:
    """Fine-tune a fresh encoder (``make_encoder(seed)``: random weights differ by seed) on
    images (n, C, *size), once per candidate of ``settings.candidates()`` (mode x learning
    rate), each until validation stops improving; keep the best on validation. Returns test
    probabilities (n_test, C) and run info: the chosen ``mode`` and ``lr``, ``best_step`` (0:
    the lpft probe, before any fine-tuning step), ``last_step``, ``converged`` (False when the
    best check was the last of a run that used all its steps), its validation score
    ``val_score`` and validation probabilities ``val_prob`` (n_val, C), the probe's ``C`` and
    WiSE-FT's ``alpha`` where they apply, and ``candidates``: each one's validation score.

    ``features``: frozen features (n, D) and (n_val, D) of ``make_encoder(seed)`` with its batch
    norm re-estimated on ``norm_x``, when the caller has them (an evaluation extracts them once
    per pretrained encoder); the lpft probe then needs no forward pass of its own.
    ``norm_x``: unlabelled images (m, C, *size) whose statistics batch norm takes before every
    feature extraction and prediction (:mod:`~medcontrast.evaluation.norm_stats`); default the
    training images. ``select_metric``: the validation metric that stopping, the probe's C and
    the candidate maximise. ``on_progress(share done, candidate, validation score)`` after each
    validation check.
    """
    # On a GPU the (small) training and validation images live there for the whole run, as a
    # pretraining set does with data.on_device: no host-to-device copy per step or check.
    data = _Inputs(
        held(train_x, device),
        train_y,
        held(val_x, device),
        val_y,
        held(train_x if norm_x is None else norm_x, device),
        n_classes,
    )
    shared = _Shared(settings, views, device, seed, amp, select_metric, probe_c_grid)
    runs = settings.candidates()
    if features is None and any(mode == "lpft" for mode, _ in runs):
        features = _frozen_features(make_encoder, data, shared)  # once for every lpft candidate
    best: _Candidate | None = None
    scores = []
    for i, (mode, lr) in enumerate(runs):
        name = f"{mode} lr {lr:g}"

        def report(share: float, score: float, i=i, name=name) -> None:
            if on_progress is not None:
                on_progress((i + share) / len(runs), name, score)

        run = _candidate(make_encoder, data, shared, mode, lr, features, report)
        scores.append(f"{name}: {run.score:.4g}")
        if best is None or run.score > best.score:
            best = run
    assert best is not None
    model, info = best.model, dict(best.info, candidates=scores)
    if "alpha" in info and not settings.frozen_norm:  # a mixture's statistics are mixed ones
        recalibrate_norm(model, data.norm_x, device)
    val_prob = _predict(model, data.val_x, device, amp) if len(val_y) else np.zeros((0, n_classes))
    info.update(val_score=float(best.score), val_prob=val_prob)
    return _predict(model, test_x, device, amp), info


def _frozen_features(
    make_encoder: Callable[[int], Encoder], data: _Inputs, shared: _Shared
) -> tuple[np.ndarray, np.ndarray]:
    """Training (n, D) and validation (n_val, D) features of ``make_encoder(seed)``, built as
    :func:`_candidate` builds it, batch norm taken from ``data.norm_x``: the lpft probe's input."""
    torch.manual_seed(shared.seed)
    encoder = make_encoder(shared.seed).to(shared.device)
    recalibrate_norm(encoder, data.norm_x, shared.device)
    return tuple(extract_features(encoder, a, shared.device) for a in (data.train_x, data.val_x))


def _candidate(
    make_encoder: Callable[[int], Encoder],
    data: _Inputs,
    shared: _Shared,
    mode: str,
    lr: float,
    features: tuple[np.ndarray, np.ndarray] | None,
    report: Callable[[float, float], None],
) -> _Candidate:
    """One candidate: ``mode`` at learning rate ``lr``, trained until ``settings.patience``
    validation checks bring no gain or ``settings.steps`` are spent; the best check restored.
    ``features``: the frozen features of :func:`finetune` (needed by lpft); ``report(share of
    steps, score)`` after each check."""
    settings, device, select_metric = shared.settings, shared.device, shared.select_metric
    amp = shared.amp
    torch.manual_seed(shared.seed)
    model = _Classifier(make_encoder(shared.seed), data.n_classes).to(device)
    recalibrate_norm(model, data.norm_x, device)
    info: dict = {"mode": mode, "lr": lr}
    # The probe competes as step 0 but starts no patience count: fine-tuning first dips below
    # the probe (the encoder moves under a fitted head) and needs a few checks to pass it.
    probe = EarlyStop(0)
    if mode == "lpft":
        assert features is not None  # finetune() extracts them once for every lpft candidate
        info["C"], probe_val = _probe_head(
            model.head, *features, data.train_y, data.val_y, shared.probe_c_grid, select_metric
        )
        probe.update(_score(data.val_y, probe_val, select_metric, 0), 0, model)
    stop, last = _train(model, data, shared, lr, report)
    best = probe if probe.best_score >= stop.best_score else stop
    best.restore(model)
    score = float(best.best_score)
    info.update(best_step=best.best_step, last_step=last)
    # Not converged: the best check was the last one and the run spent every step it had.
    info["converged"] = not (best is stop and best.best_step == last == settings.steps)
    # A mixture needs both ends and a validation split to choose on.
    if (
        settings.wise_alphas
        and len(data.val_y)
        and stop.best_state is not None
        and probe.best_state
    ):
        info["alpha"], score = weight_ensemble(
            model,
            probe,
            stop,
            settings.wise_alphas,
            lambda: _val_score(model, data, select_metric, device, amp, 0, settings.frozen_norm),
        )
    return _Candidate(model, score, info)


def _train(
    model: _Classifier,
    data: _Inputs,
    shared: _Shared,
    lr: float,
    report: Callable[[float, float], None],
) -> tuple[EarlyStop, int]:
    """The optimiser steps of one candidate, a validation check every ``eval_every`` steps and
    at the last; returns the early stop (its best check's weights) and the last step run."""
    settings, device, amp, seed = shared.settings, shared.device, shared.amp, shared.seed
    views, select_metric = shared.views, shared.select_metric
    total = settings.steps
    opt = _optimizer(model, settings, lr)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))
    )
    n, n_classes = len(data.train_y), data.n_classes
    counts = np.bincount(data.train_y, minlength=n_classes).astype(np.float64)
    weight = None
    if settings.class_weighting:
        w = np.where(counts > 0, counts.sum() / (n_classes * np.maximum(counts, 1)), 0.0)
        weight = torch.tensor(w, dtype=torch.float32, device=device)
    # Not compiled: fine-tunes are short and many, each would pay the compilation.
    augment = BatchedViews(views, compile="off") if views is not None else None
    rng = np.random.default_rng(draw_seed(seed, Stream.FINETUNE_ORDER))
    g = torch.Generator(device=device)
    g.manual_seed(draw_seed(seed, Stream.FINETUNE_AUGMENT))
    labels = torch.from_numpy(data.train_y.astype(np.int64))
    bs = min(settings.batch_size, max(n, 2))
    stop = EarlyStop(settings.patience)
    _train_mode(model, settings.frozen_norm)
    for step in range(1, total + 1):
        idx = (
            rng.integers(0, n, bs) if n < settings.batch_size else rng.choice(n, bs, replace=False)
        )
        x = _batch(data.train_x, idx, device)
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
        if step % settings.eval_every and step < total:
            continue
        score = _val_score(model, data, select_metric, device, amp, step, settings.frozen_norm)
        report(step / total, score)
        if stop.update(score, step, model):
            break
        _train_mode(model, settings.frozen_norm)
    return stop, step


def _optimizer(model: _Classifier, settings: FinetuneConfig, lr: float) -> torch.optim.Optimizer:
    """AdamW with the head at ``lr x head_lr_mult`` and the encoder at ``lr`` (its lower
    layers lower still with ``layer_decay`` < 1)."""
    return torch.optim.AdamW(
        [
            *layer_decay_groups(model.encoder, lr, settings.layer_decay),
            {"params": model.head.parameters(), "lr": lr * settings.head_lr_mult},
        ],
        weight_decay=settings.weight_decay,
    )


def _val_score(
    model: nn.Module,
    data: _Inputs,
    metric: str,
    device: torch.device,
    amp,
    step: int,
    frozen_norm: bool,
) -> float:
    """The model's validation score (see :func:`_score`), batch norm's statistics first
    re-estimated on the unlabelled images (kept fixed with ``frozen_norm``)."""
    if not len(data.val_y):
        return _score(data.val_y, None, metric, step)
    if not frozen_norm:
        recalibrate_norm(model, data.norm_x, device)
    return _score(data.val_y, _predict(model, data.val_x, device, amp), metric, step)


def _score(val_y: np.ndarray, val_prob: np.ndarray | None, metric: str, step: int) -> float:
    """``metric`` of validation probabilities (n_val, C) (NaN counts as -inf); without a
    validation split the step number, so that the last check is kept."""
    if not len(val_y):
        return float(step)
    value = point_metrics(val_y, val_prob, [metric])[metric]
    return -np.inf if np.isnan(value) else value


def _train_mode(model: nn.Module, frozen_norm: bool) -> None:
    """Training mode; with ``frozen_norm`` batch norm layers stay in eval mode, normalising with
    their pretrained running statistics (small, augmented batches give noisy ones)."""
    model.train()
    if frozen_norm:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


@torch.no_grad()
def _probe_head(
    head: nn.Linear,
    train_f: np.ndarray,
    val_f: np.ndarray,
    train_y: np.ndarray,
    val_y: np.ndarray,
    c_grid: Sequence[float],
    select_metric: str,
) -> tuple[float, np.ndarray]:
    """LP-FT's first stage: the linear probe of :func:`linear_probe` (standardised features,
    C chosen on the validation split) on the frozen encoder's features (n, D) and (n_val, D),
    folded into ``head`` (w' = w / sd, b' = b - w' . mean); returns the chosen C and the
    probe's validation probabilities (n_val, C), which the folded head reproduces."""
    n_classes = head.out_features
    _, info = linear_probe(
        train_f,
        train_y,
        val_f,
        val_y,
        val_f,
        n_classes,
        list(c_grid),
        select_metric=select_metric,
    )
    probe, scaler = info["model"], info["scaler"]
    coef, bias = probe.coef_, probe.intercept_
    if len(probe.classes_) == 2 and coef.shape[0] == 1:  # sigmoid = softmax over (0, z)
        coef, bias = np.concatenate([0 * coef, coef]), np.concatenate([0 * bias, bias])
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    w = np.zeros((n_classes, coef.shape[1]))
    b = np.full(n_classes, bias.min() - 10.0)  # a class the budget lacks: never predicted
    w[probe.classes_] = coef / scale
    b[probe.classes_] = bias - (coef / scale) @ scaler.mean_
    head.weight.copy_(torch.as_tensor(w, dtype=torch.float32))
    head.bias.copy_(torch.as_tensor(b, dtype=torch.float32))
    return float(info["C"]), info["val_prob"]
