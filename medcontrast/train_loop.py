"""The pretraining loop: one ``train_step``, logging, checkpoints, and stopping on a signal.

``train.pretrain`` sets the run up and hands this loop a method, its data and the number of steps;
the loop knows nothing of configs files or run-folder decisions.
"""

from __future__ import annotations

import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn
from tqdm import tqdm

from medcontrast import checkpoint as ckpt
from medcontrast.augment.batched import BatchedViews
from medcontrast.config import PretrainConfig, to_dict
from medcontrast.data.cache import ImageCache
from medcontrast.data.resident import DeviceBatches
from medcontrast.data.sampling import BatchSampler
from medcontrast.distributed import DistInfo, all_reduce_mean
from medcontrast.errors import MedContrastError
from medcontrast.methods import Method
from medcontrast.optim import build_optimizer, warmup_cosine
from medcontrast.preemption import PreemptedError, StopOnSignal
from medcontrast.progress import progress_bar
from medcontrast.run_log import log_line
from medcontrast.runs import MetricsLog, versions
from medcontrast.seeding import Stream, draw_seed
from medcontrast.trackers import Trackers


@dataclass
class PretrainData:
    """The cached samples and what turns them into batches of two views."""

    cache: ImageCache
    sampler: BatchSampler
    loader: torch.utils.data.DataLoader | DeviceBatches  # DeviceBatches: data.on_device=on
    batched: BatchedViews | None  # on-device views; None when MONAI makes them in the loader
    samples_sha256: str  # the selected sample ids, in order: what a resume must train on again
    manifest_sha256: str  # the whole manifest file's rows, for data.json
    on_device: str = "off"  # data.on_device as resolved: "on" when ``loader`` is DeviceBatches


class TrainLoop:
    """The method, its optimizer and schedule, and the loop that trains them."""

    def __init__(
        self,
        cfg: PretrainConfig,
        run: Path,
        info: DistInfo,
        device: torch.device,
        amp_dtype: torch.dtype | None,
        data: PretrainData,
        total: int,
        last_good: Path | None,
        method: Method,
    ) -> None:
        self.cfg, self.run, self.info = cfg, run, info
        self.device, self.amp_dtype = device, amp_dtype
        self.data, self.total, self.last_good = data, total, last_good
        self.method = method.to(device)
        if cfg.train.channels_last == "on" and cfg.data.ndim == 2:
            self.method = self.method.to(memory_format=torch.channels_last)
        steps_per_epoch = data.sampler.steps_per_epoch()
        if cfg.train.lr_scaling != "none":
            raise ValueError("TrainLoop needs a resolved config (config.resolve_pretrain)")
        self.optimizer = build_optimizer(
            cfg.train.optimizer,
            self.method,
            cfg.train.lr,
            cfg.train.weight_decay,
            fused=cfg.train.fused_optimizer == "on",
        )
        warmup = min(round(cfg.train.warmup_epochs * steps_per_epoch), total // 2)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, warmup_cosine(total, warmup, cfg.train.min_lr_ratio)
        )
        self.forward: nn.Module = self.method

    def restore(self, state: dict[str, Any] | None) -> int:
        """Load a checkpoint (read on the CPU) and wrap for DDP; returns the step to start at.

        ``load_state_dict`` copies weights and optimizer moments to the device; random states
        stay on the host and each rank restores its own (see checkpoint.py). The views'
        generators and the sampler position are functions of (seed, step, rank), so the step
        restores them.
        """
        step = 0
        if state is not None:
            self.method.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            step = state["step"]
            rng = state["rng"]
            ckpt.set_rng_state(rng[min(self.info.rank, len(rng) - 1)], self.device)
        if self.info.enabled:
            model = self.method
            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = nn.parallel.DistributedDataParallel(model, device_ids=ids)
            self.method = self.forward.module
        if self.cfg.train.compile:
            self.forward = torch.compile(self.forward)
        return step

    def train(
        self, start: int, stop_after: int | None, progress: bool, trackers: Trackers | None = None
    ) -> bool:
        """Train from step ``start`` to the end; False when ``stop_after`` cut it short. Each
        logged row goes to ``metrics.csv``/``.jsonl``, the run's log and ``trackers``."""
        cfg, saved_step = self.cfg.train, start
        log = MetricsLog(self.run / "metrics.csv", start, self.info.is_main)
        trackers = trackers or Trackers(self.run, {})
        bar = progress_bar(
            total=self.total,
            initial=start,
            desc="pretrain",
            unit="step",
            disable=not (progress and self.info.is_main),
            file=sys.stderr,
            dynamic_ncols=True,
        )
        meter = _Throughput()
        self.method.train()
        try:
            with StopOnSignal() as stop:
                for step, epoch, batch in self._batches(start):
                    out, stopping = self.train_step(batch, step, stop)
                    done = step + 1
                    self.method.after_step(done / self.total)
                    meter.add(batch["view1"].shape[0] * self.info.world_size)
                    bar.update()
                    if done % cfg.log_every == 0 or done == self.total:
                        row = self._log_row(done, epoch, out, meter.rate())
                        _write_row(log, trackers, bar, row)
                    if done % cfg.checkpoint_every == 0 or done == self.total:
                        self.last_good, saved_step = self.save(done), done
                    if stopping and done < self.total:  # the last step exports instead
                        self._preempted(stop, done, saved_step)
                    if stop_after is not None and done >= stop_after:
                        return False
        except torch.cuda.OutOfMemoryError as exc:
            raise MedContrastError(
                f"out of GPU memory at train.batch_size={cfg.batch_size} and data.size="
                f"{self.cfg.data.size}: lower train.batch_size, or data.size, or use precision=bf16"
            ) from exc
        finally:
            bar.close()
        return True

    def _batches(self, step: int):
        """(step, epoch, batch on the device with both views) from ``step`` to the last step."""
        data, steps_per_epoch = self.data, self.data.sampler.steps_per_epoch()
        # One span for the whole run: one loader iterator, whose workers prefetch across epoch
        # boundaries (each batch carries its epoch), instead of an iterator (and a refill of
        # the workers' queues) per epoch.
        data.sampler.set_span(step, self.total)
        for batch in data.loader:
            epoch = step // steps_per_epoch
            batch = to_device(
                batch, self.device, self.cfg, data.batched, step, self.info, self.method
            )
            yield step, epoch, batch
            step += 1

    def train_step(
        self, batch: dict[str, torch.Tensor], step: int, stop: StopOnSignal
    ) -> tuple[dict[str, torch.Tensor], bool]:
        """One optimizer step on a batch of two views; returns the method's outputs and whether
        a signal asks every rank to stop once this step is done.

        Every rank agrees, in one all-reduce after the forward pass, on a non-finite loss
        (nothing is updated then) and on a pending signal. A signal never stops a step half
        way: the forward pass has already moved BatchNorm's running statistics and drawn random
        numbers, so the step is completed and the checkpoint then holds exactly the steps it
        names.
        """
        ctx = torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype else None
        with ctx or nullcontext():
            out = self.forward(batch)
        loss = out["loss"]
        flags = torch.stack(
            [
                torch.isfinite(loss.detach()).float(),
                torch.tensor(float(stop.requested), device=loss.device),
            ]
        )
        finite, stopping = all_reduce_mean(flags).tolist()
        if finite < 1.0:
            where = f"; the last good checkpoint is {self.last_good}" if self.last_good else ""
            raise MedContrastError(
                f"loss became NaN or infinite at step {step + 1}{where}. Lower train.lr "
                f"(now {self.cfg.train.lr}), raise method.temperature, or use precision=fp32"
            )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if self.cfg.train.clip_grad > 0:
            nn.utils.clip_grad_norm_(self.method.parameters(), self.cfg.train.clip_grad)
        self.optimizer.step()
        self.scheduler.step()
        return out, stopping > 0

    def _preempted(self, stop: StopOnSignal, step: int, saved_step: int) -> NoReturn:
        if saved_step != step:
            self.last_good = self.save(step)
        raise PreemptedError(
            f"pretraining stopped by {stop.name or 'a signal on another rank'} at step {step} of "
            f"{self.total}; checkpoint {self.last_good}. Continue with the same command and "
            f"--resume (name={self.cfg.name})",
            stop.signum or 15,
        )

    def _log_row(
        self, step: int, epoch: int, out: dict[str, torch.Tensor], images_per_s: float
    ) -> dict[str, float]:
        row = {
            "step": step,
            "epoch": epoch,
            "loss": float(all_reduce_mean(out["loss"].detach().float())),
            "lr": self.scheduler.get_last_lr()[0],
            "images_per_s": images_per_s,
            "time": time.time(),
        }
        row.update({k: float(v) for k, v in out.items() if k != "loss"})
        return row

    def save(self, step: int) -> Path:
        """Checkpoint at ``step``: every rank's random state, rank 0 writes (keeping two)."""
        rng = [ckpt.rng_state(self.device)]
        if self.info.enabled:
            gathered = [None] * self.info.world_size
            torch.distributed.all_gather_object(gathered, rng[0])
            rng = gathered
        folder = self.run / "checkpoints"
        if self.info.is_main:
            epoch, batch = divmod(step, self.data.sampler.steps_per_epoch())
            state = {
                "model": self.method.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "step": step,
                "sampler": {"epoch": epoch, "batch": batch},  # for readers; derived from step
                "rng": rng,
                "config": to_dict(self.cfg),
                "samples_sha256": self.data.samples_sha256,
                "versions": versions(),
            }
            ckpt.save_rotating(state, folder)
        return folder / ckpt.LAST


class _Throughput:
    """Images per second since the last logged row."""

    def __init__(self) -> None:
        self.seen, self.since = 0, time.time()

    def add(self, images: int) -> None:
        self.seen += images

    def rate(self) -> float:
        now = time.time()
        rate = self.seen / max(now - self.since, 1e-9)
        self.seen, self.since = 0, now
        return rate


def _write_row(log: MetricsLog, trackers: Trackers, bar: tqdm, row: dict[str, float]) -> None:
    log.write(row)
    trackers.log_metrics(row, int(row["step"]))
    # the console shows the row in the bar; the log file gets it as a line of its own
    shown = {k: v for k, v in row.items() if k not in ("step", "time")}
    log_line(
        f"step {row['step']}/{bar.total} " + " ".join(f"{k} {v:.4g}" for k, v in shown.items())
    )
    bar.set_postfix(loss=f"{row['loss']:.3f}", img_s=f"{row['images_per_s']:.0f}")


def to_device(
    batch: dict,
    device: torch.device,
    cfg: PretrainConfig,
    batched: BatchedViews | None,
    step: int,
    info: DistInfo,
    method: Method | None = None,
) -> dict[str, torch.Tensor]:
    """The loader's batch on ``device`` with both views (made here on the batched path) and
    what ``method`` draws on the device (a multi-crop method's local crops, a restoration
    method's corrupted views, MAE's masks), each from a generator of (seed, step, rank)."""
    batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
    if batched is not None:
        g = torch.Generator(device=device)
        g.manual_seed(draw_seed(cfg.train.seed, step, info.rank, Stream.DEVICE_VIEWS))
        x1 = batch.pop("x1")
        x2 = batch.pop("x2", x1)
        batch["view1"], batch["view2"] = batched.pair(x1, x2, g)
    locals_ = method.local_views if method is not None else None
    if locals_ is not None:
        g = torch.Generator(device=device)
        g.manual_seed(draw_seed(cfg.train.seed, step, info.rank, Stream.LOCAL_CROPS))
        batch["local"] = locals_(batch["view1"], batch["view2"], g)
    if cfg.train.channels_last == "on" and cfg.data.ndim == 2:
        for key in ("view1", "view2", "local"):
            if key in batch:
                batch[key] = batch[key].contiguous(memory_format=torch.channels_last)
    if method is not None and method.draws_on_device:
        g = torch.Generator(device=device)
        g.manual_seed(draw_seed(cfg.train.seed, step, info.rank, Stream.METHOD_DRAWS))
        batch.update(method.device_draws(batch, g))
    return batch
