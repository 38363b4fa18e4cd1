"""The augmentation's share of a SimCLR training step, measured directly (issue 22: at most 5%
at 64^2 on a GPU).

    python benchmarks/bench_view_share.py --device cuda --size 64 --batch 256

``bench_throughput.py`` reads the share off two whole pretraining runs (live views against views
already in memory), each with its own start-up, data loading and windows of a few steps; on an
H200 their spread was 20 to 50%, larger than the share itself. Here one ResNet-18 SimCLR
(bf16 autocast, channels_last, fused AdamW, as the trainer on a GPU) trains on one batch already
on the device, in blocks of ``--block`` steps that alternate between views made by
``BatchedViews`` in every step (``live``) and two fixed views (``memory``); each block ends with
one synchronisation. The share is (live - memory) / live of the median step times; ``views``
rows time the views a step makes (one ``BatchedViews.pair`` call, as the trainer), alone. Rows per ``--compile`` setting.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from _common import Table, add_common_args, smooth_images, sync

from medcontrast.augment.batched import BatchedViews
from medcontrast.augment.params import AugmentParams
from medcontrast.config import PretrainConfig, load_config, views_preset
from medcontrast.pretrain import method_from_config


def training_step(args, device: torch.device):
    """A SimCLR ResNet-18 step on a dict of two views, as the trainer runs it on a GPU."""
    cfg = load_config(
        PretrainConfig,
        None,
        ["model.encoder=timm:resnet18", "data.ndim=2", f"data.size=[{args.size},{args.size}]"],
    )
    method = method_from_config(cfg).to(device)
    cuda = device.type == "cuda"
    if cuda:
        method = method.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(method.parameters(), lr=1e-3, fused=cuda)
    amp = torch.bfloat16 if cuda else None

    def step(view1: torch.Tensor, view2: torch.Tensor) -> None:
        if cuda:
            view1 = view1.contiguous(memory_format=torch.channels_last)
            view2 = view2.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loss = method({"view1": view1, "view2": view2})["loss"]
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def one_setting(table: Table, args, device: torch.device, compile: str) -> None:
    size = (args.size, args.size)
    params = AugmentParams.from_config(views_preset(args.preset), 2, size)
    views = BatchedViews(params, compile=compile)
    x = smooth_images(args.batch, size).to(device)
    g = torch.Generator(device=device).manual_seed(0)
    step = training_step(args, device)
    fixed = views.pair(x, x, g)  # the first call compiles
    for _ in range(3):
        step(*fixed)
    runs = {
        "memory": lambda: step(*fixed),
        "live": lambda: step(*views.pair(x, x, g)),
        "views": lambda: views.pair(x, x, g),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.blocks):  # interleaved: drifts of the machine hit all three alike
        for name, run in runs.items():
            sync(device)
            start = time.perf_counter()
            for _ in range(args.block):
                run()
            sync(device)
            times[name].append(1e3 * (time.perf_counter() - start) / args.block)
    ms = {k: statistics.median(v) for k, v in times.items()}
    label = {"size": f"{args.size}x{args.size}", "batch": args.batch, "mode": views.mode}
    for name in runs:
        row = {"ms_per_step": ms[name]}
        row["spread_pct"] = 100 * (max(times[name]) - min(times[name])) / ms[name]
        if name == "live":
            row["share_pct"] = 100 * (ms["live"] - ms["memory"]) / ms["live"]
        table.measure({**label, "run": name}, lambda row=row: row)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--preset", default="radiograph")
    parser.add_argument("--block", type=int, default=20, help="steps per timed block")
    parser.add_argument("--blocks", type=int, default=10, help="timed blocks per run")
    parser.add_argument("--compile", nargs="+", default=["on"], choices=["on", "off", "graphs"])
    add_common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.size, args.batch, args.block, args.blocks = 32, 4, 2, 2
    device = torch.device(args.device)
    columns = ["size", "batch", "mode", "run", "ms_per_step", "spread_pct", "share_pct"]
    with Table("view_share", device, columns, args.fail) as table:
        table.extra = {"block": args.block, "blocks": args.blocks, "preset": args.preset}
        for compile in args.compile:
            one_setting(table, args, device, compile)


if __name__ == "__main__":
    main()
