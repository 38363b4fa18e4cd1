"""``medcontrast evaluate``: label efficiency of several initialisations on the same budgets.

For every initialisation x protocol x budget x seed: train on the budget's images of the labeled
train split, select settings on the val split, predict the test split, store the predictions
and a row per metric in ``results.csv``. The same budget draws serve every initialisation, so
the differences are paired. A rerun of the same command skips finished rows, so an interrupted
evaluation continues where it stopped. Then :mod:`medcontrast.evaluation.report` summarises.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm

from medcontrast.augment.params import AugmentParams
from medcontrast.config import EvaluateConfig, save_config
from medcontrast.config.resolve import resolve_evaluate
from medcontrast.config.saved import as_saved, read_saved_evaluation
from medcontrast.data.cache import load_selection
from medcontrast.data.selection import class_names, label_codes
from medcontrast.errors import MedContrastError, first_line
from medcontrast.evaluation.budgets import Budget, Selection, budgets_from, patient_order, select
from medcontrast.evaluation.feature_figures import feature_figures
from medcontrast.evaluation.finetune import FinetuneConfig
from medcontrast.evaluation.finetune_pool import (
    FinetuneData,
    FinetuneJob,
    FinetuneOutcome,
    FinetunePool,
)
from medcontrast.evaluation.folder import (
    CONFIG,
    DATASET,
    INITS,
    LABELS,
    RESULTS,
    ReportSettings,
    feature_path,
    prediction_path,
    record_timing,
    resolve_positive,
    save_array,
)
from medcontrast.evaluation.identity import (
    check_same_settings,
    forget_changed,
    recorded_digests,
)
from medcontrast.evaluation.inits import Init, resolve_inits
from medcontrast.evaluation.metrics import point_metrics
from medcontrast.evaluation.probes import extract_features, knn_probe, linear_probe
from medcontrast.evaluation.report import Headline, write_report
from medcontrast.evaluation.results_file import RUN_KEY, append_results
from medcontrast.evaluation.scores import choose_threshold
from medcontrast.runs import write_versions
from medcontrast.runtime import autocast_dtype, resolve_device


class Evaluation:
    """State shared by the runs of one evaluation (data, budgets, features)."""

    def __init__(self, cfg: EvaluateConfig, folder: Path, progress: bool) -> None:
        self.cfg, self.folder, self.progress = cfg, folder, progress
        self.device = resolve_device(cfg.device)
        self.cache, self.manifest_sha256 = load_selection(
            cfg.data, splits=None, labeled=True, progress=progress
        )
        self.classes = class_names(self.cache.rows["label"])
        if len(self.classes) < 2:
            raise MedContrastError(
                f"only one class ({self.classes[0]}) among the labeled rows; need two or more"
            )
        t = self.cache.rows
        _, self.y = label_codes(t["label"], self.classes)
        self.split = {
            s: np.flatnonzero((t["split"] == s).to_numpy()) for s in ("train", "val", "test")
        }
        for s in ("train", "test"):
            if len(self.split[s]) == 0:
                raise MedContrastError(
                    f"no labeled images in the {s} split; the manifest's splits "
                    f"hold {t['split'].value_counts().to_dict()}"
                )
        missing = set(range(len(self.classes))) - set(self.y[self.split["train"]])
        if missing:
            raise MedContrastError(
                f"class(es) {[self.classes[i] for i in missing]} have no labeled training image"
            )
        # Sensitivity refers to this class; by default the last in sorted order.
        self.positive = resolve_positive(
            cfg.positive_class, self.classes, len(self.classes) - 1, ""
        )
        self.train_rows = t.iloc[self.split["train"]].reset_index(drop=True)
        self.budgets: list[Budget] = budgets_from(cfg.budgets.fractions, cfg.budgets.shots)
        self.selections: dict[tuple[str, int], Selection] = {}
        for s in cfg.budgets.seeds:
            strata = patient_order(self.train_rows, self.classes, s, cfg.budgets.group)
            for b in self.budgets:
                self.selections[(b.name, s)] = select(
                    self.train_rows, self.classes, b, s, cfg.budgets.group, strata
                )
        self._features: dict[str, np.ndarray] = {}

    def features(self, init: Init) -> np.ndarray:
        """Frozen features (N, D) of every labeled image (computed once per init, kept on
        disk; a file that a kill left damaged, or of another length, is recomputed)."""
        if init.name not in self._features:
            path = feature_path(self.folder, init.name)
            feats = _load_features(path, len(self.cache))
            if feats is None:
                encoder = init.make(0)
                feats = extract_features(
                    encoder, self.cache.array, self.device, self.cfg.batch_size
                )
                if not np.isfinite(feats).all():
                    raise MedContrastError(f"initialisation {init.name} gives NaN features")
                save_array(path, feats)
            self._features[init.name] = feats
        return self._features[init.name]

    def write_labels(self) -> None:
        """What the report needs of the data, without a patient identifier: labels of the
        validation and test splits, test patients as integer codes, counts per split and class.
        """
        t = self.cache.rows
        te = self.split["test"]
        groups = pd.factorize(t["patient"].iloc[te])[0]
        np.savez(
            self.folder / LABELS,
            y_val=self.y[self.split["val"]],
            y_test=self.y[te],
            test_groups=groups,
        )
        table = []
        for split in ("train", "val", "test"):
            s = t[t["split"] == split]
            row = {"split": split}
            for c in self.classes:
                sc = s[s["label"] == c]
                row[c] = f"{len(sc)} ({sc['patient'].nunique()})"
            row["total"] = f"{len(s)} ({s['patient'].nunique()})"
            table.append(row)
        dataset = {
            "classes": self.classes,
            "positive": self.positive,
            "manifest": Path(self.cfg.data.manifest).name,
            "manifest_sha256": self.manifest_sha256,
            "failed": len(self.cache.failed),
            "table": table,
        }
        (self.folder / DATASET).write_text(json.dumps(dataset, indent=2))


def _load_features(path: Path, n: int) -> np.ndarray | None:
    """Saved features (n, D), or None (with a note) when absent, unreadable or of another shape."""
    if not path.exists():
        return None
    try:
        feats = np.load(path)
    except (ValueError, OSError, EOFError) as exc:
        reason = first_line(exc)
    else:
        if feats.ndim == 2 and len(feats) == n and np.isfinite(feats).all():
            return feats
        reason = f"shape {feats.shape}, expected ({n}, D) finite values"
    print(f"note: {path} is damaged ({reason}); recomputing it", file=sys.stderr)
    return None


def evaluate(cfg: EvaluateConfig, progress: bool = True) -> Path:
    """Run (or continue) an evaluation and write its report; returns the evaluation folder."""
    cuda = torch.cuda.is_available()
    cfg = resolve_evaluate(cfg, cuda)
    folder = Path(cfg.out_dir) / cfg.name
    saved = folder / CONFIG
    # the saved config as it would resolve on this machine (an older folder saved "auto")
    previous = resolve_evaluate(read_saved_evaluation(saved), cuda) if saved.exists() else None
    check_same_settings(folder, previous and as_saved(previous), as_saved(cfg))
    before = recorded_digests(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_config(cfg, folder / CONFIG)
    write_versions(folder)
    ev = Evaluation(cfg, folder, progress)
    inits = resolve_inits(cfg.inits, cfg.data.ndim, cfg.data.size)
    valid = forget_changed(folder, before, inits, ev.manifest_sha256, cfg.on_change)
    ev.write_labels()
    (folder / INITS).write_text(
        json.dumps(
            [
                {
                    "name": i.name,
                    "kind": i.kind,
                    "source": i.source,
                    "encoder": asdict(i.spec),
                    "notes": i.notes,
                    "sha256": i.digest,
                }
                for i in inits
            ],
            indent=2,
        )
    )
    done = set(zip(*(valid[k] for k in RUN_KEY), strict=True))
    ft_only = set(cfg.finetune.budgets)  # fine-tuning is the costly protocol: maybe fewer budgets
    # Smallest budgets first, every init and protocol side by side: an evaluation stopped part
    # way still holds complete, paired comparisons for the budgets it reached.
    jobs = [
        (i, p, b, s)
        for b in ev.budgets
        for s in cfg.budgets.seeds
        for i in inits
        for p in cfg.protocols
        if (i.name, p, b.name, s) not in done
        and not (p == "finetune" and ft_only and b.name not in ft_only)
    ]
    views = AugmentParams.from_config(cfg.views, cfg.data.ndim, tuple(cfg.data.size))
    settings = cfg.finetune
    data = FinetuneData(
        ev.cache.array,
        ev.y,
        ev.split["val"],
        ev.split["test"],
        len(ev.classes),
        settings,
        views if cfg.finetune.augment else None,
        str(ev.device),
        autocast_dtype(cfg.finetune.precision),
        cfg.headline_metric,
        tuple(cfg.linear.c_grid),
    )
    started, wall = datetime.now(UTC), time.time()
    bar = tqdm(total=len(jobs), desc="evaluate", unit="run", disable=not progress, file=sys.stderr)
    # Frozen-feature probes are deterministic given the labeled subset; a budget that draws the
    # same subset for every seed (100%, or a class smaller than k) is computed once.
    frozen: dict[tuple, tuple[np.ndarray, np.ndarray, list[str], int]] = {}
    with FinetunePool(data, cfg.finetune.parallel) as pool:
        for run in jobs:
            init, protocol, budget, seed = run
            idx = ev.split["train"][ev.selections[(budget.name, seed)].indices]
            if protocol == "finetune":
                for done in pool.submit(run, _finetune_job(ev, init, idx, settings, seed)):
                    _record(ev, *done, bar)
                continue
            start = time.time()
            key = (init.name, protocol, tuple(np.sort(idx)))
            if key in frozen:
                val_prob, prob, extra, first = frozen[key]
                notes = [*extra, f"same labeled subset as seed {first}: probe reused"]
            else:
                val_prob, prob, notes = _probe(ev, init, protocol, idx)
                frozen[key] = (val_prob, prob, notes, seed)
            _record(ev, run, FinetuneOutcome(val_prob, prob, notes, time.time() - start), bar)
        for done in pool.finish():
            _record(ev, *done, bar)
    bar.close()
    record_timing(folder, started, time.time() - wall, len(jobs), cfg.finetune.parallel, ev.device)
    feature_figures(
        ev.features,
        ev.cache.array,
        ev.y,
        ev.split,
        ev.classes,
        inits,
        folder,
        cfg.embedding_plot,
        cfg.retrieval_queries,
    )
    write_report(folder, report_settings(cfg))
    return folder


def report_settings(cfg: EvaluateConfig) -> ReportSettings:
    """What the report reads of an evaluation's settings."""
    return ReportSettings(
        protocols=list(cfg.protocols),
        metrics=list(cfg.metrics),
        headline_metric=cfg.headline_metric,
        threshold=cfg.threshold,
        positive_class=cfg.positive_class,
        bootstrap=cfg.bootstrap,
        seeds=list(cfg.budgets.seeds),
        finetune_mode=cfg.finetune.mode,
        wise_alphas=list(cfg.finetune.wise_alphas),
    )


def saved_report_settings(folder: str | Path) -> ReportSettings:
    """The report settings of an evaluation folder's ``config.yaml`` (edited by hand, for
    example ``threshold``, they are checked as at load)."""
    saved = Path(folder) / CONFIG
    if not saved.exists():
        raise MedContrastError(f"{folder} is not a finished evaluation folder: {CONFIG} is missing")
    return report_settings(read_saved_evaluation(saved))


def report(folder: str | Path) -> Headline:
    """(Re)write the report of an evaluation folder from its files and saved settings."""
    return write_report(folder, saved_report_settings(folder))


def _probe(
    ev: Evaluation, init: Init, protocol: str, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A frozen-feature probe: validation and test probabilities, and notes."""
    cfg, f, y = ev.cfg, ev.features(init), ev.y
    va, te = ev.split["val"], ev.split["test"]
    n_classes = len(ev.classes)
    if protocol == "linear":
        prob, info = linear_probe(
            f[idx],
            y[idx],
            f[va],
            y[va],
            f[te],
            n_classes,
            cfg.linear.c_grid,
            cfg.linear.max_iter,
            cfg.headline_metric,
        )
        return info["val_prob"], prob, [f"C={info['C']:g}"]
    both = knn_probe(
        f[idx], y[idx], f[np.concatenate([va, te])], n_classes, cfg.knn.k, cfg.knn.temperature
    )
    return both[: len(va)], both[len(va) :], []


def _finetune_job(
    ev: Evaluation, init: Init, idx: np.ndarray, settings: FinetuneConfig, seed: int
) -> FinetuneJob:
    """A fine-tuning run on the training rows ``idx``. LP-FT's probe of an encoder that is the
    same for every seed (pretrained weights) takes the features extracted once for the probes."""
    order = np.sort(idx)
    features = None
    if settings.mode == "lpft" and not init.seeded:
        f = ev.features(init)
        features = (f[order], f[ev.split["val"]])
    return FinetuneJob(init, order, seed, features)


def _record(
    ev: Evaluation,
    run: tuple[Init, str, Budget, int],
    outcome: FinetuneOutcome,
    bar: tqdm,
) -> None:
    """Save a finished run's predictions and append its rows to ``results.csv``."""
    init, protocol, budget, seed = run
    bar.set_postfix_str(f"{init.name} {protocol} {budget.name} seed {seed}")
    bar.update(1)
    cfg, folder = ev.cfg, ev.folder
    sel = ev.selections[(budget.name, seed)]
    for split, p in (("test", outcome.prob), ("val", outcome.val_prob)):
        path = prediction_path(folder, init.name, protocol, budget.name, seed, split)
        save_array(path, p.astype(np.float32))
    # Hard decisions use a threshold chosen on this run's validation predictions.
    y_val = ev.y[ev.split["val"]]
    threshold = choose_threshold(cfg.threshold, y_val, outcome.val_prob, ev.positive)
    values = point_metrics(
        ev.y[ev.split["test"]], outcome.prob, cfg.metrics, threshold, ev.positive
    )
    if threshold is not None:
        values["threshold"] = threshold
    values["seconds"] = outcome.seconds
    base = {
        "init": init.name,
        "protocol": protocol,
        "budget": budget.name,
        "budget_kind": budget.kind,
        "budget_value": budget.value,
        "labels_used": len(sel.indices),
        "patients_used": ev.train_rows.iloc[sel.indices]["patient"].nunique(),
        "seed": seed,
        "note": "; ".join([*sel.notes, *outcome.notes]),
    }
    append_results(folder / RESULTS, [{**base, "metric": m, "value": v} for m, v in values.items()])
