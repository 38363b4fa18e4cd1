"""Why a random initialisation failed to learn in evaluations before batch norm was re-estimated,
and what a fine-tune of it does now: measured on an evaluation's own data.

    python benchmarks/diagnose_baseline.py --config evaluate.yaml [--encoder timm:regnetx_002]

For a random encoder (seed 0) it prints, with the stored batch-norm statistics (mean 0, variance
1: what evaluations used until issue 44) and with statistics re-estimated on the unlabelled
training images (what they use now): the frozen features' magnitude, spread across images and
share of constant columns, the last batch-norm layer's running variance against the variance of
its input on the images, the LP-FT probe's folded head weight norm on all labels, and that
probe's logits once the encoder is put in train mode (what fine-tuning's first step sees). Then
it fine-tunes the random encoder at each ``--budgets`` budget with the config's schedule (both
ways: stored statistics forced, and re-estimated) and prints the chosen candidate, best step,
test AUROC and whether the predictions are constant or saturated.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from sklearn.metrics import roc_auc_score

from medcontrast.augment.params import AugmentParams
from medcontrast.config import EvaluateConfig, load_config
from medcontrast.evaluation import finetune as ft
from medcontrast.evaluation.budgets import Budget, patient_order, select
from medcontrast.evaluation.context import EvalData
from medcontrast.evaluation.degenerate import feature_problem, prediction_problems
from medcontrast.evaluation.finetune import _Classifier, _probe_head
from medcontrast.evaluation.probes import extract_features
from medcontrast.models.encoders import build_encoder


def _features_line(name: str, f: np.ndarray) -> str:
    spread = f.std(0)
    return (
        f"{name:>12}: |feature| {np.abs(f).mean():.4f}, spread across images {spread.mean():.4f}, "
        f"constant columns {(spread < 1e-6).mean():.0%}"
        + (f", {feature_problem(f)}" if feature_problem(f) else "")
    )


@torch.no_grad()
def _last_bn(model: torch.nn.Module, images: np.ndarray) -> str:
    """The last batch-norm layer's running variance against its input's variance on images."""
    bn = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)][-1]
    seen = {}
    hook = bn.register_forward_hook(lambda m, i, o: seen.update(x=i[0]))
    model.eval()(torch.from_numpy(np.asarray(images[:256], np.float32)))
    hook.remove()
    batch_var = seen["x"].var((0, 2, 3)).mean().item()
    return f"running var {bn.running_var.mean().item():.4g} vs the images' {batch_var:.4g}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True)
    ap.add_argument("--encoder", default="timm:regnetx_002")
    ap.add_argument("--budgets", nargs="*", default=["all", "25", "5"], help="all, N%% or k-shot")
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cfg = load_config(EvaluateConfig, args.config, args.overrides)
    ev = EvalData(
        cfg.data,
        Path(tempfile.mkdtemp()),
        torch.device("cpu"),
        cfg.positive_class,
        [],
        [],
        "patient",
        256,
    )
    x, y, cpu = ev.cache.array, ev.y, torch.device("cpu")
    tr, va, te = ev.split["train"], ev.split["val"], ev.split["test"]
    size = list(cfg.data.size)
    views = AugmentParams.from_config(cfg.views, cfg.data.ndim, tuple(size))
    views = views if cfg.finetune.augment else None

    def make(seed: int):
        torch.manual_seed(seed)
        return build_encoder(args.encoder, cfg.data.ndim, 1, size)

    print(f"{args.encoder} random (seed 0) on {len(x)} labelled images, {size} px")
    for name, norm in (("stored BN", None), ("re-estimated", x[ev.norm])):
        model = _Classifier(make(0), len(ev.classes))
        f = extract_features(model.encoder, x, cpu, norm_images=norm)
        print(_features_line(name, f), "|", _last_bn(model.encoder, x[tr]))
        _probe_head(model.head, f[tr], f[va], y[tr], y[va], cfg.linear.c_grid, "auroc")
        w = model.head.weight.norm().item()
        with torch.no_grad():
            model.train()
            logits = model(torch.from_numpy(np.asarray(x[tr[:64]], np.float32)))
        print(
            f"{'':>14}LP-FT head weight norm {w:.3g}; logits in train mode: |max| {logits.abs().max():.3g}"
        )
    for b in args.budgets:
        if b == "all" or b.endswith("%"):
            budget = Budget("fraction", 1.0 if b == "all" else float(b[:-1]) / 100)
        else:
            budget = Budget("shots", int(b))
        strata = patient_order(ev.train_rows, ev.classes, 0, "patient")
        idx = tr[np.sort(select(ev.train_rows, ev.classes, budget, 0, "patient", strata).indices)]
        for name, patch in (("stored BN", True), ("re-estimated", False)):
            start = time.time()
            with (
                mock.patch.object(ft, "recalibrate_norm", lambda *a, **k: False)
                if patch
                else nullcontext()
            ):
                prob, info = ft.finetune(
                    make, x[idx], y[idx], x[va], y[va], x[te], len(ev.classes), cfg.finetune,
                    views, cpu, 0, norm_x=x[ev.norm],
                )  # fmt: skip
            auroc = roc_auc_score(y[te] == ev.positive, prob[:, ev.positive])
            print(
                f"{budget.name:>8} {name:>12}: {info['mode']} lr {info['lr']:g}, best step "
                f"{info['best_step']} of {info['last_step']}, test AUROC {auroc:.3f}, "
                f"{time.time() - start:.0f} s; {', '.join(prediction_problems(prob, 'test')) or 'predictions vary'}"
            )


if __name__ == "__main__":
    main()
