"""``medcontrast pretrain``: one plain PyTorch loop, no hidden framework.

    config -> run folder -> data cache -> views -> method (encoder + head + loss) -> AdamW/LARS
    with warm-up + cosine -> bf16 autocast on GPU -> checkpoints -> encoder export

Single process or ``torchrun`` DDP (negatives gathered across processes, rank 0 writes). Every
random draw is a function of (seed, epoch, sample) or (seed, step, rank), so ``--resume`` after a
crash, a kill or a preemption continues exactly where the last checkpoint left off.

Read :func:`pretrain` first: it is the flow, and each step below it is one short function.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medcontrast._version import __version__
from medcontrast.augment.batched import BatchedViews
from medcontrast.augment.monai_views import TwoViewDataset
from medcontrast.augment.params import AugmentParams
from medcontrast.config import PretrainConfig, from_dict, save_config, to_dict
from medcontrast.config.renamed import upgrade_saved
from medcontrast.config.resolve import resolve_pretrain, resolve_steps
from medcontrast.config.schema import method_config
from medcontrast.data.cache import ImageCache, load_selection
from medcontrast.data.fingerprints import POOL_FINGERPRINTS, save_pool
from medcontrast.data.pairs import PairBatchDataset, check_partners, codes_and_members
from medcontrast.data.preprocessing import PreprocessSpec
from medcontrast.data.resident import DeviceBatches, choose_placement
from medcontrast.data.sampling import BatchSampler
from medcontrast.data.selection import label_codes
from medcontrast.distributed import DistInfo, init_distributed
from medcontrast.errors import MedContrastError
from medcontrast.export import WEIGHTS, export_encoder
from medcontrast.methods import METHODS, Method, build_method
from medcontrast.models.encoders import build_encoder
from medcontrast.models.weights import file_digest, load_weights, weights_path
from medcontrast.preemption import PreemptedError, ignore_stop_signals
from medcontrast.run_log import RunLog
from medcontrast.runs import (
    TRAIN_LOG,
    RunLock,
    Start,
    check_resumable,
    check_same_data,
    decide_start,
    flatten,
    record_resume,
    refuse_foreign,
    write_versions,
)
from medcontrast.runtime import autocast_dtype, resolve_device
from medcontrast.trackers import Trackers, TrackerSettings, check_trackers, open_trackers
from medcontrast.train_loop import PretrainData, TrainLoop


def pretrain(
    cfg: PretrainConfig, resume: bool = False, stop_after: int | None = None, progress: bool = True
) -> Path:
    """Run (or resume) self-supervised pretraining; returns the run folder.

    Args:
        stop_after: stop (as if killed) after this optimizer step, right after its checkpoint
            would be written; a testing aid for resume.
    """
    if resume and not cfg.name:
        raise MedContrastError("--resume needs the run's name: add name=<run folder name>")
    device, info = _runtime(cfg.train.device)
    facts = dict(
        cuda=device.type == "cuda",
        world_size=info.world_size,
        stamp=datetime.now().strftime("%Y%m%d-%H%M%S"),
    )
    cfg = resolve_pretrain(cfg, **facts)
    # Built once and dropped: a method the encoder or the input size cannot take, or a
    # model.init file that does not fit, is refused before any folder is written or image read
    # (the data seeds the weights' draw anew).
    init_lines: list[str] = []
    method_from_config(cfg, init_lines)
    check_trackers(cfg.train.loggers)  # not after hours of cache building
    amp_dtype = autocast_dtype(cfg.train.precision)
    run = _run_dir(cfg, resume)
    lock = RunLock(run)
    if info.is_main:
        lock.acquire()
    title = f"medcontrast {__version__} pretrain {run.name}" + (" --resume" if resume else "")
    try:
        refuse_foreign(run)
        with RunLog(run / TRAIN_LOG, title, info.is_main):
            if init_lines and info.is_main:
                print("model.init: " + "; ".join(init_lines), file=sys.stderr)
            start = decide_start(run, resume, run / "checkpoints", say=info.is_main)
            changes = {}
            if start.state is not None:
                saved = _saved_config(run, start.state["config"], facts)
                if cfg.data.on_device == "auto":  # resolved from the data's size: as the run did
                    cfg = replace(cfg, data=replace(cfg.data, on_device=saved["data"]["on_device"]))
                changes = check_resumable(run, saved, to_dict(cfg), _defaults(cfg))
            data = _build_data(cfg, info, device, progress)
            if start.state is not None:
                saved = start.state.get("samples_sha256", start.state.get("manifest_sha256"))
                check_same_data(run, saved, data.samples_sha256, len(data.cache))
            cfg = resolve_steps(cfg, data.sampler.steps_per_epoch())
            cfg = replace(cfg, data=replace(cfg.data, on_device=data.on_device))  # what ran
            total = cfg.train.max_steps
            _refuse_shortening(run, start, total)
            if _finished(run, start, total, info):
                return run
            _write_run_files(run, cfg, info, data, start, changes)
            if info.is_main and cfg.model.init and start.state is None:
                _write_init(run, cfg.model.init, init_lines)
            loop = TrainLoop(
                cfg,
                run,
                info,
                device,
                amp_dtype,
                data,
                total,
                start.source,
                method_from_config(cfg),
            )
            _train_and_export(
                loop, start, _open_trackers(cfg, run, start, info), stop_after, progress
            )
            return run
    finally:
        lock.release()


def _open_trackers(cfg: PretrainConfig, run: Path, start: Start, info: DistInfo) -> Trackers:
    """The run's ``train.loggers`` (rank 0), given the resolved config when the run starts."""
    resume_step = start.state["step"] if start.state is not None else 0
    settings = TrackerSettings(
        cfg.train.experiment,
        run.name,
        cfg.train.tracking_uri,
        Path(cfg.out_dir) / "mlruns",
        resume_step,
    )
    trackers = open_trackers(cfg.train.loggers, run, settings, info.is_main)
    if start.state is None:  # a resume keeps the parameters it started with
        trackers.log_params(flatten(to_dict(cfg)))
    return trackers


def _train_and_export(
    loop: TrainLoop, start: Start, trackers: Trackers, stop_after: int | None, progress: bool
) -> None:
    """Train, export the encoder (rank 0) and hand the run folder's files to the trackers;
    each tracker's run ends finished, failed or killed as the training did."""
    status = "failed"
    try:
        if not loop.train(loop.restore(start.state), stop_after, progress, trackers):
            status = "killed"  # stopped by stop_after, as if killed
            return
        if loop.info.is_main:
            spec = PreprocessSpec.from_settings(loop.cfg.data)
            export_encoder(loop.method.encoder, loop.run, spec)
            trackers.log_artifacts()
        if loop.info.enabled:
            torch.distributed.barrier()
        status = "finished"
    except (PreemptedError, KeyboardInterrupt):
        status = "killed"
        raise
    finally:
        trackers.close(status)


def _runtime(device_name: str) -> tuple[torch.device, DistInfo]:
    """The device (this rank's GPU under torchrun) and the process group."""
    device = resolve_device(device_name)
    info = init_distributed(device.type)
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    return device, info


def _saved_config(run: Path, saved: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """The config a run was trained with, resolved as today's would be (a run of an earlier
    release saved ``auto`` values and keys since renamed)."""
    try:
        cfg = from_dict(PretrainConfig, upgrade_saved(saved))
    except MedContrastError as exc:
        raise MedContrastError(
            f"cannot resume {run}: its saved config is not valid now ({exc})"
        ) from None
    return to_dict(resolve_pretrain(cfg, **facts))


def _defaults(cfg: PretrainConfig) -> dict[str, Any]:
    """The default config of ``cfg``'s method: what a setting the run's release did not have yet
    is taken to be (the default method's settings mean nothing to another method's run)."""
    name = cfg.method.name
    return to_dict(PretrainConfig(method=method_config(name)(name=name)))


def _run_dir(cfg: PretrainConfig, resume: bool) -> Path:
    run = Path(cfg.out_dir) / cfg.name
    if resume and not run.exists():
        raise MedContrastError(
            f"nothing to resume: there is no run folder {run} (check out_dir= and name=)"
        )
    return run


def _refuse_shortening(run: Path, start: Start, total: int) -> None:
    """A run resumed with fewer steps than it has done: refused before its config.yaml is
    rewritten, instead of exporting the later step's encoder under the smaller number."""
    if start.state is None or start.state["step"] <= total:
        return
    raise MedContrastError(
        f"cannot resume {run} with train.max_steps={total}: it is at step "
        f"{start.state['step']} already, and a run is not cut back. Resume with train.max_steps "
        "of that or more, or start a new run with another name="
    )


def _finished(run: Path, start: Start, total: int, info: DistInfo) -> bool:
    """A resumed run that already reached ``total`` and was exported: say so, do nothing."""
    if start.state is None or start.state["step"] < total or not (run / WEIGHTS).exists():
        return False
    if info.is_main:
        print(
            f"run {run} is finished (step {start.state['step']} of {total}): nothing to do. "
            "Raise train.max_steps to train it further (train.epochs counts only where "
            "max_steps is 0, and a run's config.yaml sets max_steps)",
            file=sys.stderr,
        )
    return True


# ---- data ----------------------------------------------------------------------------------


def _build_data(
    cfg: PretrainConfig, info: DistInfo, device: torch.device, progress: bool
) -> PretrainData:
    torch.manual_seed(cfg.train.seed)
    np.random.seed(cfg.train.seed % 2**32)
    needs_labels = METHODS.get(cfg.method.name).needs_labels
    cache, manifest_sha256 = _load_cache(cfg, info, needs_labels, progress)
    n, global_batch = len(cache), cfg.train.batch_size * info.world_size
    if n < global_batch:
        raise MedContrastError(
            f"train.batch_size {cfg.train.batch_size} x {info.world_size} process(es) = {global_batch} "
            f"is larger than the {n} training samples; lower train.batch_size"
        )
    patients, _ = codes_and_members(cache.rows["patient"])
    set_of, partner_sets = (None, None)
    if cfg.pairs.positives != "image":
        set_of, partner_sets = codes_and_members(cache.rows[cfg.pairs.positives])
        check_partners(partner_sets, n, cfg.pairs.positives, info.is_main)
    labels = None
    if needs_labels:
        _, labels = label_codes(cache.rows["label"])
    params = AugmentParams.from_config(cfg.views, cfg.data.ndim, tuple(cfg.data.size))
    sampler = BatchSampler(n, cfg.train.batch_size, cfg.train.seed, info.rank, info.world_size)
    workers = cfg.train.num_workers
    loader_kw: dict[str, Any] = dict(
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
        worker_init_fn=ignore_stop_signals if workers else None,
    )
    nbytes, share = cache.array.nbytes, cfg.data.device_share
    on_device, why = choose_placement(cfg.data.on_device, cfg.views.path, device, nbytes, share)
    if info.is_main:
        reader = f"{workers} loader workers" if workers else "the loader in this process"
        where = "on the device" if on_device == "on" else f"read by {reader}"
        print(f"data: {len(cache)} samples {where} ({why})", file=sys.stderr)
    seed = cfg.train.seed
    if cfg.views.path == "monai":
        views = TwoViewDataset(cache.array, params, seed, patients, partner_sets, set_of, labels)
        loader = torch.utils.data.DataLoader(views, batch_sampler=sampler, **loader_kw)
        batched = None
    else:
        pairs = PairBatchDataset(cache.array, patients, seed, partner_sets, set_of, labels)
        if on_device == "on":
            loader = DeviceBatches(pairs, sampler, device)
        else:
            loader = torch.utils.data.DataLoader(
                pairs, sampler=sampler, batch_size=None, **loader_kw
            )
        batched = BatchedViews(params, compile=cfg.views.compile)
        if info.is_main and cfg.views.compile in ("on", "graphs"):
            graphs = " in a CUDA graph" if cfg.views.compile == "graphs" else ""
            print(
                f"views: batched, compiled with torch.compile{graphs} (views.compile=off: plain)",
                file=sys.stderr,
            )
    digest = hashlib.sha256("\n".join(cache.rows["sample_id"]).encode()).hexdigest()
    return PretrainData(cache, sampler, loader, batched, digest, manifest_sha256, on_device)


def _load_cache(
    cfg: PretrainConfig, info: DistInfo, needs_labels: bool, progress: bool = True
) -> tuple[ImageCache, str]:
    """The selected samples, cached (rank 0 builds the cache first), and the manifest's digest."""
    if info.enabled and not info.is_main:
        torch.distributed.barrier()
    cache, digest = load_selection(
        cfg.data,
        splits=cfg.data.splits,
        labeled=needs_labels,
        seed=cfg.train.seed,
        progress=progress and info.is_main,
    )
    if info.enabled and info.is_main:
        torch.distributed.barrier()
    return cache, digest


def _write_run_files(
    run: Path, cfg: PretrainConfig, info: DistInfo, data: PretrainData, start: Start, changes: dict
) -> None:
    """config.yaml, versions.json, data.json (and resumes.jsonl on a resume); rank 0 only."""
    if not info.is_main:
        return
    (run / "checkpoints").mkdir(parents=True, exist_ok=True)
    save_config(cfg, run / "config.yaml")
    write_versions(run, world_size=info.world_size)
    if start.state is not None:
        record_resume(run, start.state["step"], start.source, changes)
    cache = data.cache
    record = {
        "manifest": str(Path(cfg.data.manifest).resolve()),
        "manifest_sha256": data.manifest_sha256,
        "samples": len(cache),
        "patients": int(cache.rows["patient"].nunique()),
        "splits": cache.rows["split"].value_counts().to_dict(),
        "failed": [{"sample_id": s, "reason": r} for s, r in cache.failed],
        # what an evaluation needs to find its test images in this pool (POOL_FINGERPRINTS)
        "preprocess": PreprocessSpec.from_settings(cfg.data).key(),
    }
    if start.state is None or not (run / POOL_FINGERPRINTS).exists():
        save_pool(run / POOL_FINGERPRINTS, cache.array)
    (run / "data.json").write_text(json.dumps(record, indent=2))
    if cache.failed:
        print(
            f"note: {len(cache.failed)} samples could not be loaded and are left out "
            f"(listed in {run / 'data.json'})",
            file=sys.stderr,
        )


# ---- model and optimisation ----------------------------------------------------------------


def _write_init(run: Path, init: str, lines: list[str]) -> None:
    """``init.json``: the weights file the run started from, its digest and what was loaded."""
    path = weights_path(init).resolve()
    record = {"path": str(path), "sha256": file_digest(path), "loaded": lines}
    (run / "init.json").write_text(json.dumps(record, indent=2))


def method_from_config(cfg: PretrainConfig, said: list[str] | None = None) -> Method:
    """The encoder and method a pretraining config describes, on the CPU: freshly initialised,
    or from the weights file ``model.init`` (what was loaded appended to ``said``)."""
    patch = cfg.model.patch_size
    try:
        encoder = build_encoder(
            cfg.model.encoder,
            cfg.data.ndim,
            cfg.model.in_channels,
            cfg.data.size,
            cfg.model.stem_stride,
            **({"patch_size": patch} if patch else {}),
        )
    except TypeError as err:  # the library's constructor refused the keyword
        raise MedContrastError(
            f"model.patch_size={patch}: model.encoder={cfg.model.encoder} takes no patch size "
            f"(vision transformers do: timm ViTs, monai:vit) ({err})"
        ) from err
    if cfg.model.init:
        # Before the method wraps the encoder: its momentum/teacher copies start from the same.
        loaded = load_weights(encoder, cfg.model.init, f"model.encoder={cfg.model.encoder}")
        if said is not None:
            said.extend(loaded.summary())
    m = cfg.method
    method = build_method(m.name, encoder, m.head, **m.settings())
    method.check_input(tuple(cfg.data.size))
    return method
