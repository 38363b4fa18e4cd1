"""``medcontrast pretrain``: one plain PyTorch loop, no hidden framework.

    config -> run folder -> data cache -> views -> method (encoder + head + loss) -> AdamW/LARS
    with warm-up + cosine -> bf16 autocast on GPU -> checkpoints -> encoder export

Single process or ``torchrun`` DDP (negatives gathered across processes, rank 0 writes). Every
random draw is a function of (seed, epoch, sample) or (seed, step, rank), so ``--resume`` after a
crash or a kill continues exactly where the last checkpoint left off.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from contextlib import ExitStack, nullcontext
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from medcontrast import checkpoint as ckpt
from medcontrast.augment.batched import BatchedViews
from medcontrast.augment.monai_views import TwoViewDataset, draw_seed
from medcontrast.augment.params import AugmentParams
from medcontrast.config import PretrainConfig, save_config, to_dict
from medcontrast.data.batches import BatchSampler, RawPairDataset
from medcontrast.data.cache import ImageCache, build_cache
from medcontrast.data.manifest import read_manifest
from medcontrast.data.preprocessing import PreprocessSpec
from medcontrast.data.selection import class_names, select_rows
from medcontrast.distributed import DistInfo, all_reduce_mean, init_distributed
from medcontrast.errors import MedContrastError
from medcontrast.export import export_encoder
from medcontrast.methods import METHODS, Method, build_method
from medcontrast.models.encoders import build_encoder
from medcontrast.optim import build_optimizer, warmup_cosine
from medcontrast.preemption import PreemptedError, StopOnSignal
from medcontrast.runinfo import resolve_device, resolve_precision, versions
from medcontrast.runs import RunLock, check_resumable, check_same_data, decide_start, record_resume


def preprocess_spec(data) -> PreprocessSpec:
    """The cache-defining part of a DataConfig."""
    return PreprocessSpec(
        ndim=data.ndim,
        size=tuple(data.size),
        spacing=tuple(data.spacing) if data.spacing else None,
        intensity=data.intensity,
        window=tuple(data.window),
        percentiles=tuple(data.percentiles),
        resize=data.resize,
    )


def _run_dir(cfg: PretrainConfig, resume: bool) -> Path:
    if not cfg.name:
        if resume:
            raise MedContrastError("--resume needs the run's name: add name=<run folder name>")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        cfg.name = f"{cfg.method.name}-{cfg.model.encoder.replace(':', '-')}-{stamp}"
    run = Path(cfg.out_dir) / cfg.name
    if resume and not run.exists():
        raise MedContrastError(
            f"nothing to resume: there is no run folder {run} (check out_dir= and name=)"
        )
    return run


def _group_codes(values: pd.Series) -> tuple[np.ndarray, list[np.ndarray]]:
    codes, uniques = pd.factorize(values)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    groups = [order[bounds[i] : bounds[i + 1]] for i in range(len(uniques))]
    return codes.astype(np.int64), groups


def _load_data(
    cfg: PretrainConfig, info: DistInfo, needs_labels: bool, progress: bool = True
) -> ImageCache:
    manifest = read_manifest(cfg.data.manifest) if cfg.data.manifest else None
    if manifest is None:
        raise MedContrastError("data.manifest is not set (make one with `medcontrast index`)")
    rows = select_rows(
        manifest,
        cfg.data.ndim,
        cfg.data.modalities,
        cfg.data.splits,
        labeled=needs_labels,
        max_samples=cfg.data.max_samples,
        seed=cfg.train.seed,
    )
    spec = preprocess_spec(cfg.data)
    kw = dict(
        cache_dir=cfg.data.cache_dir or None,
        in_memory=cfg.data.cache == "memory",
        workers=cfg.data.workers,
    )
    if info.enabled and not info.is_main:
        torch.distributed.barrier()  # rank 0 builds the cache first
    cache = build_cache(manifest, rows, spec, progress=progress and info.is_main, **kw)
    if info.enabled and info.is_main:
        torch.distributed.barrier()
    return cache


def _build(cfg: PretrainConfig) -> Method:
    encoder = build_encoder(
        cfg.model.encoder,
        cfg.data.ndim,
        cfg.model.in_channels,
        cfg.data.size,
        cfg.model.stem_stride,
    )
    m = cfg.method
    return build_method(
        m.name,
        encoder,
        proj_hidden=cfg.model.proj_hidden,
        proj_dim=cfg.model.proj_dim,
        proj_layers=cfg.model.proj_layers,
        pred_hidden=cfg.model.pred_hidden,
        temperature=m.temperature,
        mask_same_patient=m.mask_same_patient,
        queue_size=m.queue_size,
        momentum=m.momentum,
    )


def _check(cfg: PretrainConfig) -> None:
    METHODS.get(cfg.method.name)  # fails early with "did you mean"
    if cfg.train.batch_size < 2:
        raise MedContrastError(
            "train.batch_size must be at least 2 (contrastive pairs need negatives)"
        )
    if cfg.views.path not in ("auto", "monai", "batched"):
        raise MedContrastError(f"views.path must be auto, monai or batched, got {cfg.views.path!r}")
    if cfg.method.positive_group not in ("patient", "study"):
        raise MedContrastError("method.positive_group must be patient or study")


class _MetricsLog:
    """metrics.csv (rank 0), truncated to the resumed step so rows are never duplicated."""

    def __init__(self, path: Path, resume_step: int, enabled: bool) -> None:
        self.path, self.enabled, self.fields = path, enabled, None
        if enabled and resume_step and path.exists():
            old = pd.read_csv(path)
            old[old["step"] <= resume_step].to_csv(path, index=False)
            self.fields = list(old.columns)
        elif enabled and path.exists():
            path.unlink()

    def write(self, row: dict) -> None:
        if not self.enabled:
            return
        new = not self.path.exists()
        if self.fields is None:
            self.fields = list(row)
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=self.fields, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


def pretrain(
    cfg: PretrainConfig, resume: bool = False, stop_after: int | None = None, progress: bool = True
) -> Path:
    """Run (or resume) self-supervised pretraining; returns the run folder.

    Args:
        stop_after: stop (as if killed) after this optimizer step, right after its checkpoint
            would be written; a testing aid for resume.
    """
    _check(cfg)
    device = resolve_device(cfg.train.device)
    info = init_distributed(device.type)
    if device.type == "cuda" and info.enabled:
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    amp_dtype = resolve_precision(cfg.train.precision, device)
    run = _run_dir(cfg, resume)
    lock = RunLock(run)
    if info.is_main:
        lock.acquire()
    try:
        return _pretrain(cfg, run, resume, device, info, amp_dtype, stop_after, progress)
    finally:
        lock.release()


def _pretrain(cfg, run, resume, device, info, amp_dtype, stop_after, progress) -> Path:
    start = decide_start(run, resume, run / "checkpoints", say=info.is_main)
    changes = {}
    if start.state is not None:
        changes = check_resumable(run, start.state["config"], to_dict(cfg))
    method_cls = METHODS.get(cfg.method.name)
    torch.manual_seed(cfg.train.seed)
    np.random.seed(cfg.train.seed % 2**32)
    cache = _load_data(cfg, info, method_cls.needs_labels, progress)
    n = len(cache)
    if start.state is not None:
        saved = start.state.get("samples_sha256", start.state.get("manifest_sha256"))
        check_same_data(run, saved, _rows_digest(cache), n)
    sampler = BatchSampler(n, cfg.train.batch_size, cfg.train.seed, info.rank, info.world_size)
    steps_per_epoch = sampler.steps_per_epoch()
    total = cfg.train.max_steps or steps_per_epoch * cfg.train.epochs
    if start.state is not None and start.state["step"] >= total and (run / "encoder.pth").exists():
        if info.is_main:
            print(
                f"run {run} is finished (step {start.state['step']} of {total}): nothing to do. "
                "Raise train.max_steps or train.epochs to train it further",
                file=sys.stderr,
            )
        return run
    if info.is_main:
        (run / "checkpoints").mkdir(parents=True, exist_ok=True)
        save_config(cfg, run / "config.yaml")
        (run / "versions.json").write_text(
            json.dumps({**versions(), "world_size": info.world_size}, indent=2)
        )
        if start.state is not None:
            record_resume(run, start.state["step"], start.source, changes)
    if info.is_main:
        manifest = read_manifest(cfg.data.manifest)
        (run / "data.json").write_text(
            json.dumps(
                {
                    "manifest": str(Path(cfg.data.manifest).resolve()),
                    "manifest_sha256": manifest.digest(),
                    "samples": n,
                    "patients": int(cache.rows["patient"].nunique()),
                    "splits": cache.rows["split"].value_counts().to_dict(),
                    "failed": [{"sample_id": s, "reason": r} for s, r in cache.failed],
                },
                indent=2,
            )
        )
        if cache.failed:
            print(
                f"note: {len(cache.failed)} samples could not be loaded and are left out "
                f"(listed in {run / 'data.json'})",
                file=sys.stderr,
            )
    global_batch = cfg.train.batch_size * info.world_size
    if n < global_batch:
        raise MedContrastError(
            f"train.batch_size {cfg.train.batch_size} x {info.world_size} process(es) = {global_batch} "
            f"is larger than the {n} training samples; lower train.batch_size"
        )
    patients, _ = _group_codes(cache.rows["patient"])
    group_of, groups = (None, None)
    if cfg.method.patient_positives:
        group_of, groups = _group_codes(cache.rows[cfg.method.positive_group])
    labels = None
    if method_cls.needs_labels:
        names = class_names(cache.rows["label"])
        labels = cache.rows["label"].map({c: i for i, c in enumerate(names)}).to_numpy()

    params = AugmentParams.from_config(cfg.views, cfg.data.ndim, tuple(cfg.data.size))
    path = (
        cfg.views.path
        if cfg.views.path != "auto"
        else ("batched" if device.type == "cuda" else "monai")
    )
    workers = cfg.train.num_workers
    loader_kw = dict(
        num_workers=workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
        prefetch_factor=4 if workers else None,
    )
    if path == "monai":
        dataset = TwoViewDataset(
            cache.array, params, cfg.train.seed, patients, groups, group_of, labels
        )
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=sampler, **loader_kw)
        batched = None
    else:
        dataset = RawPairDataset(cache.array, patients, cfg.train.seed, groups, group_of, labels)
        loader = torch.utils.data.DataLoader(dataset, sampler=sampler, batch_size=None, **loader_kw)
        batched = BatchedViews(params)

    model = _build(cfg).to(device)
    if cfg.train.channels_last and cfg.data.ndim == 2:
        model = model.to(memory_format=torch.channels_last)
    lr = cfg.train.lr * global_batch / 256
    optimizer = build_optimizer(cfg.train.optimizer, model, lr, cfg.train.weight_decay)
    warmup = round(cfg.train.warmup_epochs * steps_per_epoch)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(total, min(warmup, total // 2), cfg.train.min_lr_ratio)
    )
    step = 0
    if start.state is not None:
        # Loaded on the CPU: load_state_dict copies weights and optimizer moments to the device;
        # random states stay on the host (see checkpoint.py).
        state = start.state
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        ckpt.set_rng_state(state["rng"][min(info.rank, len(state["rng"]) - 1)], device)
    if info.enabled:
        if device.type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ddp = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    else:
        ddp = model
    net = ddp.module if info.enabled else ddp
    forward = torch.compile(ddp) if cfg.train.compile else ddp

    log = _MetricsLog(run / "metrics.csv", step, info.is_main)
    tb = _tensorboard(run, cfg, info)
    bar = tqdm(
        total=total,
        initial=step,
        desc="pretrain",
        unit="step",
        disable=not (progress and info.is_main),
        file=sys.stderr,
        dynamic_ncols=True,
    )
    last_good = start.source
    saved_step = step
    seen, t_window = 0, time.time()
    model.train()
    stack = ExitStack()
    try:
        stop = stack.enter_context(StopOnSignal())
        while step < total:
            epoch, start = divmod(step, steps_per_epoch)
            sampler.set_epoch(epoch, start)
            dataset.set_epoch(epoch)
            for batch in loader:
                batch = _to_device(batch, device, cfg, batched, step, info)
                ctx = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
                with ctx:
                    out = forward(batch)
                loss = out["loss"]
                # One all-reduce per step: every rank agrees on a NaN and on a signal.
                finite, stopping = all_reduce_mean(
                    torch.stack(
                        [
                            torch.isfinite(loss.detach()).float(),
                            torch.tensor(float(stop.requested), device=loss.device),
                        ]
                    )
                ).tolist()
                if stopping > 0:
                    if saved_step != step:
                        last_good = _save(
                            run, model, optimizer, scheduler, step, cfg, cache, info, device
                        )
                    raise PreemptedError(
                        f"pretraining stopped by {stop.name or 'a signal on another rank'} at "
                        f"step {step} of {total}; checkpoint {last_good}. Continue with the same "
                        f"command and --resume (name={cfg.name})",
                        stop.signum or 15,
                    )
                if finite < 1.0:
                    where = f"; the last good checkpoint is {last_good}" if last_good else ""
                    raise MedContrastError(
                        f"loss became NaN or infinite at step {step + 1}{where}. Lower train.lr "
                        f"(now {cfg.train.lr}), raise method.temperature, or use precision=fp32"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.train.clip_grad > 0:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_grad)
                optimizer.step()
                scheduler.step()
                step += 1
                net.after_step(step / total)
                seen += batch["view1"].shape[0] * info.world_size
                bar.update()
                if step % cfg.train.log_every == 0 or step == total:
                    elapsed = max(time.time() - t_window, 1e-9)
                    row = {
                        "step": step,
                        "epoch": epoch,
                        "loss": float(all_reduce_mean(loss.detach().float())),
                        "lr": scheduler.get_last_lr()[0],
                        "images_per_s": seen / elapsed,
                        "time": time.time(),
                    }
                    row.update({k: float(v) for k, v in out.items() if k != "loss"})
                    log.write(row)
                    if tb is not None:
                        for k, v in row.items():
                            if k not in ("step", "time"):
                                tb.add_scalar(k, v, step)
                    bar.set_postfix(loss=f"{row['loss']:.3f}", img_s=f"{row['images_per_s']:.0f}")
                    seen, t_window = 0, time.time()
                if step % cfg.train.checkpoint_every == 0 or step == total:
                    last_good = _save(
                        run, model, optimizer, scheduler, step, cfg, cache, info, device
                    )
                    saved_step = step
                if stop_after is not None and step >= stop_after:
                    return run
                if step >= total:
                    break
    except torch.cuda.OutOfMemoryError as exc:
        raise MedContrastError(
            f"out of GPU memory at train.batch_size={cfg.train.batch_size} and data.size="
            f"{cfg.data.size}: lower train.batch_size, or data.size, or use precision=bf16"
        ) from exc
    finally:
        stack.close()
        bar.close()
        if tb is not None:
            tb.close()
    if info.is_main:
        export_encoder(net.encoder, run)
    if info.enabled:
        torch.distributed.barrier()
    return run


def _to_device(
    batch: dict,
    device: torch.device,
    cfg: PretrainConfig,
    batched: BatchedViews | None,
    step: int,
    info: DistInfo,
) -> dict[str, torch.Tensor]:
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if batched is not None:
        g = torch.Generator(device=device)
        g.manual_seed(draw_seed(cfg.train.seed, step, info.rank, 99))
        x1 = batch.pop("x1")
        x2 = batch.pop("x2", x1)
        batch["view1"] = batched(x1, g)
        batch["view2"] = batched(x2, g)
    if cfg.train.channels_last and cfg.data.ndim == 2:
        batch["view1"] = batch["view1"].contiguous(memory_format=torch.channels_last)
        batch["view2"] = batch["view2"].contiguous(memory_format=torch.channels_last)
    return batch


def _save(
    run: Path,
    model: nn.Module,
    optimizer,
    scheduler,
    step: int,
    cfg: PretrainConfig,
    cache: ImageCache,
    info: DistInfo,
    device: torch.device,
) -> Path:
    rng = [ckpt.rng_state(device)]
    if info.enabled:
        gathered = [None] * info.world_size
        torch.distributed.all_gather_object(gathered, rng[0])
        rng = gathered
    path = run / "checkpoints" / ckpt.LAST
    if info.is_main:
        state = {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": step,
            "rng": rng,
            "config": to_dict(replace(cfg)),
            "samples_sha256": _rows_digest(cache),
            "versions": versions(),
        }
        ckpt.save_rotating(state, path.parent)
    return path


def _rows_digest(cache: ImageCache) -> str:
    import hashlib

    return hashlib.sha256("\n".join(cache.rows["sample_id"]).encode()).hexdigest()


def _tensorboard(run: Path, cfg: PretrainConfig, info: DistInfo):
    if not (cfg.train.tensorboard and info.is_main):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:
        raise MedContrastError("train.tensorboard=true needs the tensorboard package") from exc
    return SummaryWriter(str(run / "tensorboard"))
