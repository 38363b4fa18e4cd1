"""Steady-state pretraining throughput (images/s) of ``medcontrast pretrain``, its pipeline
efficiency, its share of the device's peak, and lightly's SimCLR on the same workload.

    python benchmarks/bench_throughput.py --device cuda

SimCLR with ResNet-18 at 2D 64x64 and 224x224 and a MONAI 3D ResNet-18 at 96^3, on synthetic
images written as a MedMNIST-style .npz and indexed like any archive. Steady state: the data set
holds one batch more than the whole run, so no epoch boundary (and no DataLoader restart) falls
inside it; the run is cut into windows of ``--window`` steps, the first ``--warmup`` windows are
dropped (start-up, cuDNN autotuning, caches) and the median of the others is reported with its
spread, (max - min) / median.

Rows per workload:
- ``medcontrast live``: the real trainer, augmentation on the device (``views.path=batched``;
  ``--views-compile on graphs``: one row per ``views.compile`` setting; ``--on-device on off``:
  one row per ``data.on_device``, the set held on the GPU or read by loader workers);
- ``medcontrast views in memory``: the same with augmentation off (the cached images are the
  views); live / in memory is the pipeline efficiency (target, issue 5: >= 0.9 on a GPU);
- ``lightly``: lightly's SimCLRTransform, projection head and NT-Xent in its best setting
  (DataLoader with persistent workers, pinned memory, ``--workers`` = all cores by default), the
  same timm ResNet-18 (3 input channels: lightly's transform makes RGB), batch, bf16 autocast,
  channels_last, AdamW and gradient clipping as our trainer; the same windows. 3D: n/a.

``gflop_per_image`` is one training step's FLOPs per image (two views, forward and backward, by
torch's FlopCounterMode); ``peak_pct`` the achieved share of the device's peak (bf16 data sheet
for known GPUs, else a measured matmul rate; the source is in the JSON line).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import (
    NotApplicableError,
    Table,
    add_common_args,
    device_peak,
    failure,
    smooth_images,
    steady_rate,
    sync,
    train_flops_per_image,
)

from medcontrast.archive.index import build_index, write_index
from medcontrast.config import PretrainConfig, load_config
from medcontrast.pretrain import method_from_config, pretrain

WORKLOADS = {
    "2d-64": dict(ndim=2, size=64, encoder="timm:resnet18", preset="radiograph", batch=256),
    "2d-224": dict(ndim=2, size=224, encoder="timm:resnet18", preset="radiograph", batch=256),
    "3d-96": dict(ndim=3, size=96, encoder="monai:resnet18", preset="mri", batch=16),
}
QUICK = {
    "2d-64": dict(size=32, batch=4),
    "2d-224": dict(size=48, batch=4),
    "3d-96": dict(size=16, batch=2),
}
COLUMNS = [
    "workload",
    "pipeline",
    "batch",
    "images_per_s",
    "spread_pct",
    "gflop_per_image",
    "tflop_per_s",
    "peak_pct",
    "pipeline_efficiency",
    "medcontrast_vs_lightly",
]


def synthetic_images(ndim: int, size: int, n: int) -> np.ndarray:
    """(n, *size) uint8 images: a few hundred distinct ones, repeated (content does not change
    the speed; making 15,000 224^2 images would)."""
    distinct = smooth_images(min(n, 512), (size,) * ndim).numpy()[:, 0]
    images = (distinct * 255).astype(np.uint8)
    return np.resize(images, (n, *images.shape[1:]))


def synthetic_manifest(folder: Path, images: np.ndarray) -> Path:
    stem = f"synthetic{images.ndim - 1}d{images.shape[1]}"
    np.savez(
        folder / f"{stem}.npz",
        train_images=images,
        train_labels=np.zeros((len(images), 1), np.uint8),
    )
    result = build_index(folder / f"{stem}.npz", salt_file=folder / "salt", progress=False)
    write_index(result, folder / f"{stem}.csv", folder / "npz")
    return folder / f"{stem}.csv"


def config(
    manifest: Path,
    folder: Path,
    w: dict,
    preset: str,
    args,
    name: str,
    compile: str = "auto",
    on_device: str = "auto",
) -> PretrainConfig:
    overrides = [
        f"views.compile={compile}",
        f"data.on_device={on_device}",
        f"data.manifest={manifest}",
        f"data.ndim={w['ndim']}",
        f"data.size={[w['size']] * w['ndim']}",
        "data.splits=[train]",
        f"data.cache_dir={folder / 'cache'}",
        "data.cache=memory",
        f"out_dir={folder / 'runs'}",
        f"name={name}",
        f"model.encoder={w['encoder']}",
        f"views.preset={preset}",
        "views.path=batched",
        f"train.batch_size={w['batch']}",
        f"train.max_steps={args.steps}",
        f"train.log_every={args.window}",
        f"train.num_workers={args.workers}",
        f"train.device={args.device}",
        "train.checkpoint_every=1000000",
        f"train.channels_last={'on' if w['ndim'] == 2 and args.device != 'cpu' else 'off'}",
    ]
    if w["ndim"] == 3:
        overrides.append("views.flip_axes=[0]")
    return load_config(PretrainConfig, None, overrides)


def ours(cfg: PretrainConfig, args) -> dict:
    """The trainer's own images/s per window of ``--window`` steps (metrics.csv)."""
    pretrain(cfg, progress=False)
    metrics = pd.read_csv(Path(cfg.out_dir) / cfg.name / "metrics.csv")
    if metrics["epoch"].nunique() > 1:  # the data set is sized so that this cannot happen
        raise RuntimeError("an epoch boundary fell inside the run")
    return steady_rate(list(metrics["images_per_s"].iloc[args.warmup :]))


def lightly(images: np.ndarray, w: dict, args, device: torch.device) -> dict:
    """lightly's SimCLR pipeline in its best setting on the same images (see the module doc)."""
    if w["ndim"] != 2:
        raise NotApplicableError("lightly has no 3D augmentation")
    import timm
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform
    from PIL import Image

    class Images(torch.utils.data.Dataset):
        def __init__(self) -> None:
            self.transform = SimCLRTransform(input_size=w["size"], cj_prob=0.8, min_scale=0.5)

        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int):
            return self.transform(Image.fromarray(images[i]).convert("RGB"))

    loader = torch.utils.data.DataLoader(
        Images(),
        batch_size=w["batch"],
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
        prefetch_factor=4 if args.workers else None,
    )
    backbone = timm.create_model("resnet18", pretrained=False, num_classes=0)
    model = torch.nn.Sequential(backbone, SimCLRProjectionHead(512, 512, 128)).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    loss_fn = NTXentLoss(temperature=0.1)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    batches, rates = iter(loader), []  # one epoch holds the whole run
    sync(device)
    start = time.perf_counter()
    for _ in range(args.steps // args.window):
        for _ in range(args.window):
            x0, x1 = (v.to(device, non_blocking=True) for v in next(batches))
            with amp:
                z = model(torch.cat([x0, x1]))
            loss = loss_fn(z[: len(x0)].float(), z[len(x0) :].float())
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 3.0)
            opt.step()
        loss.item()  # waits for the device, as our trainer's logged row does
        now = time.perf_counter()
        rates.append(args.window * w["batch"] / (now - start))
        start = now
    return steady_rate(rates[args.warmup :])


def compute(cfg: PretrainConfig, device: torch.device) -> float:
    """FLOPs per image of one training step, counted on two images of the workload's size."""
    method = method_from_config(cfg).to(device)
    size = (2, cfg.model.in_channels, *cfg.data.size)
    views = {"view1": torch.rand(size, device=device), "view2": torch.rand(size, device=device)}
    return train_flops_per_image(method, views)


def add_compute(row: dict | None, flops: float, peak: float) -> None:
    if row is not None and flops:
        row["gflop_per_image"] = flops / 1e9
        row["tflop_per_s"] = row["images_per_s"] * flops / 1e12
        row["peak_pct"] = 100 * row["images_per_s"] * flops / peak


def workload(table: Table, key: str, folder: Path, args, device: torch.device, peak: float):
    w = {**WORKLOADS[key], **(QUICK[key] if args.quick else {})}
    if args.batch:
        w["batch"] = args.batch
    folder.mkdir()
    label = {"workload": f"{w['ndim']}d-{w['size']}", "batch": w["batch"]}
    images = synthetic_images(w["ndim"], w["size"], w["batch"] * (args.steps + 1))
    manifest = synthetic_manifest(folder, images)
    lives = {}
    for compile in args.views_compile:
        for on_device in args.on_device:
            name = f"{key}-live-{compile}-{on_device}"
            cfg = config(manifest, folder, w, w["preset"], args, name, compile, on_device)
            settings = [f"views.compile={compile}"] if compile != "auto" else []
            settings += [f"data.on_device={on_device}"] if on_device != "auto" else []
            pipeline = "medcontrast live" + (f" ({', '.join(settings)})" if settings else "")
            lives[compile, on_device] = table.measure(
                {**label, "pipeline": pipeline}, lambda cfg=cfg: ours(cfg, args)
            )
    try:
        flops = compute(cfg, device)
    except Exception as exc:  # the rows are still worth having, without FLOP columns
        flops = 0.0
        print(f"{label}: FLOP count {failure(exc, w['batch'])}")
    cfg_memory = config(manifest, folder, w, "none", args, f"{key}-memory")
    memory = table.measure(
        {**label, "pipeline": "medcontrast views in memory"}, lambda: ours(cfg_memory, args)
    )
    peer = table.measure(
        {**label, "pipeline": f"lightly, {args.workers} workers"},
        lambda: lightly(images, w, args, device),
    )
    for row in (*lives.values(), memory, peer):
        add_compute(row, flops, peak)
    for live in lives.values():
        if live and memory:
            live["pipeline_efficiency"] = live["images_per_s"] / memory["images_per_s"]
        if live and peer:
            live["medcontrast_vs_lightly"] = live["images_per_s"] / peer["images_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--window", type=int, default=10, help="steps per timed window")
    parser.add_argument("--windows", type=int, default=5, help="timed windows after warm-up")
    parser.add_argument("--warmup", type=int, default=1, help="windows dropped at the start")
    parser.add_argument("--batch", type=int, default=0, help="override every workload's batch size")
    parser.add_argument(
        "--views-compile",
        nargs="+",
        default=["auto"],
        choices=["auto", "on", "off", "graphs"],
        help="views.compile of the live rows, one row each",
    )
    parser.add_argument(
        "--on-device",
        nargs="+",
        default=["auto"],
        choices=["auto", "on", "off"],
        help="data.on_device of the live rows (the set on the GPU, or read by loader workers)",
    )
    add_common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.window, args.windows, args.warmup = 2, 2, 1
    args.steps = args.window * (args.windows + args.warmup)
    device = torch.device(args.device)
    peak, source = device_peak(device)
    with (
        Table("throughput", device, COLUMNS, args.fail) as table,
        tempfile.TemporaryDirectory() as tmp,
    ):
        table.extra = {"workers": args.workers, "steps": args.steps, "window": args.window}
        table.extra["warmup"] = args.warmup
        table.extra["peak"] = {"tflop_per_s": peak / 1e12, "source": source}
        print(f"device peak {peak / 1e12:.1f} TFLOP/s ({source})")
        for key in args.workloads:
            workload(table, key, Path(tmp) / key, args, device, peak)


if __name__ == "__main__":
    main()
