"""Fill every ``auto`` and derived value of a config from the facts of the machine and the data.

What a run folder saves is the resolved config, so it says exactly what ran (device, precision,
view path, learning rate, number of steps, name) and rerunning it elsewhere does not silently
change them. Each function returns a new config and leaves the one it is given untouched
(DINOv2 rewrites ``cfg.optim.lr`` in place; we do not). Resolving a resolved config changes
nothing.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import replace

import yaml

from medcontrast.config.loading import to_dict
from medcontrast.config.schema import DataConfig, EvaluateConfig, PretrainConfig
from medcontrast.data.pool import pool_size
from medcontrast.errors import MedContrastError


def _device(name: str, cuda: bool) -> str:
    return ("cuda" if cuda else "cpu") if name == "auto" else name


def _precision(name: str, device: str) -> str:
    """``auto``: bf16 on a GPU (the speed without the loss scaling fp16 needs), fp32 elsewhere."""
    if name != "auto":
        return name
    return "bf16" if device.startswith("cuda") else "fp32"


def _auto(setting: str, on: bool) -> str:
    return ("on" if on else "off") if setting == "auto" else setting


def resolve_pretrain(
    cfg: PretrainConfig, cuda: bool, world_size: int, stamp: str
) -> PretrainConfig:
    """Device, precision, view path, effective learning rate, the GPU speed settings
    (channels_last, fused optimizer) and run name.

    Args:
        cuda: a GPU is visible.
        world_size: processes that train together (the global batch is ``batch_size`` x this).
        stamp: time of the start, for the default name (``<method>-<encoder>-<stamp>``).
    """
    train = cfg.train
    device = _device(train.device, cuda)
    lr = train.lr
    if train.lr_scaling == "linear":  # the linear scaling rule (Goyal et al., 2017)
        lr = train.lr * train.batch_size * world_size / 256
        if not 0 < lr < math.inf:
            raise MedContrastError(
                f"train.lr={train.lr} scaled by the linear rule (x {train.batch_size * world_size}"
                f"/256, train.lr_scaling=linear) gives {lr}, which cannot train: choose another "
                "train.lr"
            )
    gpu = device.startswith("cuda")
    train = replace(
        train,
        device=device,
        precision=_precision(train.precision, device),
        lr=lr,
        lr_scaling="none",
        channels_last=_auto(train.channels_last, gpu and cfg.data.ndim == 2),
        fused_optimizer=_auto(train.fused_optimizer, gpu and train.optimizer == "adamw"),
    )
    path = cfg.views.path
    if path == "auto":  # the batched path on a GPU; MONAI's per-sample transforms on a CPU
        path = "batched" if device.startswith("cuda") else "monai"
    compile = cfg.views.compile
    if compile == "auto":  # on a GPU the plain batched path is bound by kernel launches
        compile = "on" if device.startswith("cuda") and path == "batched" else "off"
    name = cfg.name or f"{cfg.method.name}-{cfg.model.encoder.replace(':', '-')}-{stamp}"
    views = replace(cfg.views, path=path, compile=compile)
    return replace(cfg, name=name, train=train, views=views, data=_data(cfg.data))


def _data(data: DataConfig) -> DataConfig:
    """``data.workers``: the processes this machine gives the cache (``data.on_device`` depends
    on the cached set's size: resolved once the cache is built)."""
    return replace(data, workers=pool_size(data.workers))


def resolve_steps(cfg: PretrainConfig, steps_per_epoch: int) -> PretrainConfig:
    """The number of optimizer steps, once the data says how many make an epoch."""
    total = cfg.train.max_steps or steps_per_epoch * cfg.train.epochs
    return replace(cfg, train=replace(cfg.train, max_steps=total))


def evaluation_name(cfg: EvaluateConfig) -> str:
    """Default name: a hash of the settings as given, so the same command finds its unfinished
    folder."""
    settings = to_dict(cfg)
    # How many runs go at once, and whether the views are compiled, change no result: the same
    # command with another value finds the same folder (and names stay those of before the
    # settings existed).
    settings["finetune"].pop("parallel")
    settings["views"].pop("compile")
    text = yaml.safe_dump(settings, sort_keys=True)
    return "eval-" + hashlib.sha256(text.encode()).hexdigest()[:10]


def resolve_evaluate(cfg: EvaluateConfig, cuda: bool) -> EvaluateConfig:
    """Name, device, fine-tuning precision and view path (fine-tuning augments on the device,
    with the batched path, whatever the machine)."""
    device = _device(cfg.device, cuda)
    finetune = replace(cfg.finetune, precision=_precision(cfg.finetune.precision, device))
    return replace(
        cfg,
        name=cfg.name or evaluation_name(cfg),
        # evaluation takes its batches from the cache in memory, not from a set on the device
        data=replace(_data(cfg.data), on_device="off"),
        device=device,
        finetune=finetune,
        # Not compiled: fine-tunes are short and many, each would pay the compilation.
        views=replace(cfg.views, path="batched", compile="off"),
    )
