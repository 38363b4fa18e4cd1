"""``medcontrast evaluate``: label efficiency of several initialisations on the same budgets.

For every initialisation x protocol x budget x seed: train on the budget's images of the labeled
train split, select settings on the val split, predict the test split, store the predictions
and a row per metric in ``results.csv``. The same budget draws serve every initialisation, so
the differences are paired. A rerun of the same command skips finished rows, so an interrupted
evaluation continues where it stopped. Then :mod:`medcontrast.evaluation.report` summarises.
"""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medcontrast._version import __version__
from medcontrast.augment.params import AugmentParams
from medcontrast.config import EvaluateConfig, save_config
from medcontrast.config.resolve import evaluation_name, resolve_evaluate
from medcontrast.config.saved import as_saved, read_saved_evaluation
from medcontrast.data.manifest import read_manifest
from medcontrast.data.preprocessing import PreprocessSpec
from medcontrast.data.selection import select_rows
from medcontrast.errors import MedContrastError, first_line
from medcontrast.evaluation.budgets import Budget, budgets_from
from medcontrast.evaluation.context import EvalData
from medcontrast.evaluation.degenerate import prediction_problems
from medcontrast.evaluation.feature_figures import feature_figures
from medcontrast.evaluation.findings import Headline
from medcontrast.evaluation.finetune import FinetuneConfig
from medcontrast.evaluation.finetune_pool import (
    FinetuneData,
    FinetuneJob,
    FinetuneOutcome,
    FinetunePool,
)
from medcontrast.evaluation.folder import (
    CONFIG,
    INITS,
    LOG,
    RESULTS,
    ReportSettings,
    feature_path,
    holds_results,
    prediction_path,
    record_timing,
    save_array,
)
from medcontrast.evaluation.identity import (
    check_same_settings,
    forget_changed,
    recorded_digests,
)
from medcontrast.evaluation.inits import Init, resolve_inits
from medcontrast.evaluation.job_cost import WeightedProgress, finetune_cost, probe_cost
from medcontrast.evaluation.metrics import point_metrics
from medcontrast.evaluation.probes import knn_probe, linear_probe
from medcontrast.evaluation.provenance import pretrained_on, test_fingerprints
from medcontrast.evaluation.report import write_report
from medcontrast.evaluation.results_file import RUN_KEY, append_results
from medcontrast.evaluation.scores import choose_threshold
from medcontrast.evaluation.tasks import write_tasks_report
from medcontrast.preemption import RaiseOnSignal
from medcontrast.progress import progress_bar
from medcontrast.run_log import RunLog, log_line
from medcontrast.runs import RunLock, write_versions
from medcontrast.runtime import autocast_dtype, resolve_device


def evaluate(cfg: EvaluateConfig, progress: bool = True) -> Path:
    """Run (or continue) an evaluation and write its report; returns the evaluation folder.

    The folder is locked while it runs (a second ``evaluate`` of it is refused, naming the
    process); a SIGTERM or Ctrl-C stops it with a line in ``evaluate.log``, keeping every
    finished run for the rerun that continues it.
    """
    cuda = torch.cuda.is_available()
    cfg = resolve_evaluate(cfg, cuda)
    inits = _inits(cfg)  # before anything is written: a refused start leaves its name free
    folder = Path(cfg.out_dir) / cfg.name
    lock = RunLock(folder)
    lock.acquire()
    try:
        before = _open_folder(cfg, cuda)
        title = f"medcontrast {__version__} evaluate {folder.name}"
        stop = RaiseOnSignal(f"evaluate {folder.name}", "rerun the same command to continue")
        with RunLog(folder / LOG, title), stop:
            _evaluate_in(folder, before, cfg, inits, progress)
    finally:
        lock.release()
    return folder


def _evaluate_in(
    folder: Path,
    before: tuple[str, dict[str, str]],
    cfg: EvaluateConfig,
    inits: list[Init],
    progress: bool,
) -> None:
    """The evaluation's work in its opened folder: data, runs, figures and report."""
    ev = EvalData(
        cfg.data,
        folder,
        resolve_device(cfg.device),
        cfg.positive_class,
        budgets_from(cfg.budgets.fractions, cfg.budgets.shots),
        cfg.budgets.seeds,
        cfg.budgets.group,
        cfg.batch_size,
        progress,
    )
    valid = forget_changed(folder, before, inits, ev.manifest_sha256, cfg.on_change)
    ev.write_labels()
    _write_inits(folder, inits, ev, PreprocessSpec.from_settings(cfg.data).key())
    jobs = _jobs(ev, cfg, inits, valid)
    started, wall = datetime.now(UTC), time.time()
    _run(ev, cfg, jobs, progress)
    record_timing(folder, started, time.time() - wall, len(jobs), cfg.finetune.parallel, ev.device)
    try:
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
    except Exception as exc:  # a figure is never worth losing the report
        print(f"warning: embedding/retrieval figures not drawn: {first_line(exc)}", file=sys.stderr)
    write_report(folder, report_settings(cfg))


def _inits(cfg: EvaluateConfig, warn: bool = True) -> list[Init]:
    """The config's initialisations, each pretrained one checked against the evaluation's data."""
    data = PreprocessSpec.from_settings(cfg.data)
    return resolve_inits(cfg.inits, data, cfg.data.modalities, cfg.preprocessing_check, warn)


def task_folder(cfg: EvaluateConfig) -> Path:
    """The evaluation folder a task writes (its name, or the default one evaluate gives it)."""
    return Path(cfg.out_dir) / (cfg.name or evaluation_name(cfg))


def evaluate_tasks(
    cfgs: list[EvaluateConfig], sources: list[str], out: Path | None = None, progress: bool = True
) -> tuple[list[Path], Path]:
    """Check every task, evaluate each in turn (each resumes as a single evaluation does), then
    write the combined report; the evaluation folders and the combined report's path.

    Args:
        sources: what each config came from (a file or shipped name), for error messages.
        out: the combined report's folder; default ``<first out_dir>/tasks-<task names>``.
    """
    check_tasks(cfgs, sources)
    folders = [evaluate(cfg, progress) for cfg in cfgs]
    out = out or Path(cfgs[0].out_dir) / ("tasks-" + "-".join(f.name for f in folders))
    settings = [saved_report_settings(f) for f in folders]
    return folders, write_tasks_report(folders, settings, out)


def check_tasks(cfgs: list[EvaluateConfig], sources: list[str]) -> None:
    """Refuse, before any computation, a task whose encoder does not fit its data or whose
    manifest has no labelled image, naming the config; and two tasks sharing a folder."""
    folders = [task_folder(c) for c in cfgs]
    if len(set(folders)) != len(folders):
        raise MedContrastError(
            "two tasks would write the same evaluation folder: give each config its own name "
            f"({', '.join(str(f) for f in folders)})"
        )
    for cfg, source in zip(cfgs, sources, strict=True):
        try:
            _inits(cfg, warn=False)
            manifest = read_manifest(cfg.data.manifest)
            select_rows(manifest, cfg.data.ndim, cfg.data.modalities, None, labeled=True)
        except MedContrastError as exc:
            raise MedContrastError(f"task {source}: {exc}") from exc


def _open_folder(cfg: EvaluateConfig, cuda: bool) -> tuple[str, dict[str, str]]:
    """Save today's config and versions in the evaluation folder, refused when its results were
    computed with other settings; returns the digests its results were computed with."""
    folder = Path(cfg.out_dir) / cfg.name
    saved = folder / CONFIG
    if saved.exists() and holds_results(folder):
        # the saved config as it would resolve on this machine (an older folder saved "auto")
        previous = resolve_evaluate(read_saved_evaluation(saved), cuda)
        check_same_settings(folder, as_saved(previous), as_saved(cfg))
    before = recorded_digests(folder)
    folder.mkdir(parents=True, exist_ok=True)
    save_config(cfg, folder / CONFIG)
    write_versions(folder)
    return before


def _write_inits(folder: Path, inits: list[Init], ev: EvalData, preprocess: str) -> None:
    """``inits.json``: each initialisation's kind, source, encoder and weights digest, and for
    an encoder pretrained here the pool it saw and how many test images it held."""
    test = test_fingerprints(ev.cache.array, ev.split["test"])
    record = [
        {
            "name": i.name,
            "kind": i.kind,
            "source": i.source,
            "encoder": asdict(i.spec),
            "notes": i.notes,
            "sha256": i.digest,
            "pretrained_on": pretrained_on(
                i, ev.manifest_sha256, preprocess, len(ev.split["test"]), test
            ),
        }
        for i in inits
    ]
    (folder / INITS).write_text(json.dumps(record, indent=2))


Run = tuple[Init, str, Budget, int]  # initialisation, protocol, budget, seed


def _jobs(ev: EvalData, cfg: EvaluateConfig, inits: list[Init], valid: pd.DataFrame) -> list[Run]:
    """The runs still to do. Smallest budgets first, every init and protocol side by side: an
    evaluation stopped part way still holds complete, paired comparisons for the budgets it
    reached."""
    done = set(zip(*(valid[k] for k in RUN_KEY), strict=True))
    ft_only = set(cfg.finetune.budgets)  # fine-tuning is the costly protocol: maybe fewer budgets
    return [
        (i, p, b, s)
        for b in ev.budgets
        for s in cfg.budgets.seeds
        for i in inits
        for p in cfg.protocols
        if (i.name, p, b.name, s) not in done
        and not (p == "finetune" and ft_only and b.name not in ft_only)
    ]


def _run(ev: EvalData, cfg: EvaluateConfig, jobs: list[Run], progress: bool) -> None:
    """Do the runs: probes here, fine-tuning in the pool (``finetune.parallel`` at once)."""
    views = AugmentParams.from_config(cfg.views, cfg.data.ndim, tuple(cfg.data.size))
    settings = cfg.finetune
    data = FinetuneData(
        ev.cache.array,
        ev.y,
        ev.split["val"],
        ev.split["test"],
        ev.norm,
        len(ev.classes),
        settings,
        views if settings.augment else None,
        str(ev.device),
        autocast_dtype(settings.precision),
        cfg.headline_metric,
        tuple(cfg.linear.c_grid),
    )
    costs = _costs(ev, cfg, jobs)
    bar = progress_bar(
        total=sum(costs.values()),
        desc="evaluate",
        unit="img",
        unit_scale=True,
        smoothing=0,  # the ETA from the whole run's mean rate: runs of one kind come in bursts
        disable=not progress,
    )
    weighted = WeightedProgress(bar, costs)
    # Frozen-feature probes are deterministic given the labeled subset; a budget that draws the
    # same subset for every seed (100%, or a class smaller than k) is computed once.
    frozen: dict[tuple, tuple[np.ndarray, np.ndarray, list[str], int]] = {}
    with FinetunePool(data, settings.parallel) as pool:
        for run in jobs:
            init, protocol, budget, seed = run
            idx = ev.split["train"][ev.selections[(budget.name, seed)].indices]
            if protocol == "finetune":
                job = _finetune_job(ev, init, idx, settings, seed)
                for done in pool.submit(run, job, _check_reporter(weighted, run, cfg)):
                    _record(ev, cfg, *done, weighted)
                continue
            start = time.time()
            key = (init.name, protocol, tuple(np.sort(idx)))
            if key in frozen:
                val_prob, prob, extra, first = frozen[key]
                notes = [*extra, f"same labeled subset as seed {first}: probe reused"]
            else:
                val_prob, prob, notes = _probe(ev, cfg, init, protocol, idx)
                notes += [ev.feature_notes[init.name]] if init.name in ev.feature_notes else []
                frozen[key] = (val_prob, prob, notes, seed)
            outcome = FinetuneOutcome(val_prob, prob, notes, time.time() - start)
            _record(ev, cfg, run, outcome, weighted)
        for done in pool.finish():
            _record(ev, cfg, *done, weighted)
    bar.close()


def _run_key(run: Run) -> tuple[str, str, str, int]:
    init, protocol, budget, seed = run
    return init.name, protocol, budget.name, seed


def _costs(ev: EvalData, cfg: EvaluateConfig, jobs: list[Run]) -> dict[tuple, float]:
    """Each run's expected cost in image passes (``evaluation.job_cost``), the frozen features
    of an initialisation charged to the first run that needs them unless they are on disk."""
    n_val, n_test, ft = len(ev.split["val"]), len(ev.split["test"]), cfg.finetune
    costs, charged = {}, set()
    for run in jobs:
        init, protocol, budget, seed = run
        n = len(ev.selections[(budget.name, seed)].indices)
        if protocol == "finetune":
            cost = finetune_cost(n, n_val, n_test, len(ev.norm), ft)
            frozen = ft.mode != "plain" and not init.seeded
        else:
            cost = probe_cost(protocol, n, n_val + n_test, len(cfg.linear.c_grid))
            frozen = True
        if frozen and init.name not in charged:
            charged.add(init.name)
            if not feature_path(ev.folder, init.name).exists():
                cost += len(ev.cache)
        costs[_run_key(run)] = cost
    return costs


def _check_reporter(
    weighted: WeightedProgress, run: Run, cfg: EvaluateConfig
) -> Callable[[float, str, float], None]:
    """What a fine-tune in this process says after each validation check: the bar moves by the
    share of the run's steps done and shows the candidate and the validation score."""
    init, _, budget, seed = run
    metric = cfg.headline_metric

    def report(share: float, candidate: str, score: float) -> None:
        what = f"{init.name} finetune {budget.name} seed {seed}: {candidate}"
        said = f"val {metric} {score:.3f}" if math.isfinite(score) else "no validation score"
        weighted.part(_run_key(run), share, f"{what}, {said}")

    return report


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
    ev: EvalData, cfg: EvaluateConfig, init: Init, protocol: str, idx: np.ndarray
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """A frozen-feature probe: validation and test probabilities, and notes."""
    f, y = ev.features(init), ev.y
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
    ev: EvalData, init: Init, idx: np.ndarray, settings: FinetuneConfig, seed: int
) -> FinetuneJob:
    """A fine-tuning run on the training rows ``idx``. LP-FT's probe of an encoder that is the
    same for every seed (pretrained weights) takes the features extracted once for the probes."""
    order = np.sort(idx)
    features = None
    if settings.mode != "plain" and not init.seeded:
        f = ev.features(init)
        features = (f[order], f[ev.split["val"]])
    return FinetuneJob(init, order, seed, features)


def _record(
    ev: EvalData,
    cfg: EvaluateConfig,
    run: Run,
    outcome: FinetuneOutcome,
    weighted: WeightedProgress,
) -> None:
    """Save a finished run's predictions and append its rows to ``results.csv``."""
    init, protocol, budget, seed = run
    weighted.finished(_run_key(run), f"{init.name} {protocol} {budget.name} seed {seed} done")
    folder = ev.folder
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
    problems = [
        *prediction_problems(outcome.val_prob, "val"),
        *prediction_problems(outcome.prob, "test"),
    ]
    base = {
        "init": init.name,
        "protocol": protocol,
        "budget": budget.name,
        "budget_kind": budget.kind,
        "budget_value": budget.value,
        "labels_used": len(sel.indices),
        "patients_used": ev.train_rows.iloc[sel.indices]["patient"].nunique(),
        "seed": seed,
        "note": "; ".join([*sel.notes, *outcome.notes, *problems]),
    }
    append_results(folder / RESULTS, [{**base, "metric": m, "value": v} for m, v in values.items()])
    shown = " ".join(f"{m} {v:.4g}" for m, v in values.items())
    log_line(f"done: {init.name} {protocol} {budget.name} seed {seed}: {shown}")
    if problems:
        print(
            f"warning: {init.name} {protocol} {budget.name} seed {seed}: {', '.join(problems)}",
            file=sys.stderr,
        )
