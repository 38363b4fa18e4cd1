"""Augmented views per second: per-sample MONAI path vs batched on-device path.

    python benchmarks/bench_views.py --device cuda --workers 8

2D views are 1x224x224 and 3D views 1x96x96x96 (``--size2d``/``--size3d`` to change). The MONAI
path runs in DataLoader workers (``--workers``; 0 = the main process), exactly as in training; the
batched path runs on ``--device``. Target (issue 5): batched >= 3x per-sample on CPU in 2D. Each
(size, path, device) is its own row: a failure (out of memory, ...) costs that row only.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import Table, add_common_args, median_time, smooth_images

from medcontrast.augment.batched import BatchedViews
from medcontrast.augment.monai_views import TwoViewDataset
from medcontrast.augment.params import AugmentParams
from medcontrast.config import views_preset


def monai_views_per_s(
    array: np.ndarray, params: AugmentParams, workers: int, batch: int, n: int
) -> float:
    dataset = TwoViewDataset(array, params, seed=0)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=batch,
        num_workers=workers,
        sampler=torch.utils.data.RandomSampler(dataset, num_samples=n),
    )
    it = iter(loader)
    next(it)  # warm-up: workers start, transforms compile their first kernels
    start, views = time.perf_counter(), 0
    for item in it:
        views += 2 * item["view1"].shape[0]
    return views / (time.perf_counter() - start)


def batched_views_per_s(
    images: torch.Tensor, params: AugmentParams, batch: int, dev: torch.device
) -> float:
    views = BatchedViews(params)
    x = images[:batch].to(dev)
    g = torch.Generator(device=dev).manual_seed(0)
    reps = 5 if dev.type == "cpu" else 20
    return batch / median_time(lambda: views(x, g), dev, warmup=2, reps=reps)


def one_size(
    table: Table, nd: int, size: tuple[int, ...], batch: int, preset: str, args, device
) -> None:
    """The rows of one image size: MONAI per-sample, batched on the CPU and on ``device``."""
    params = AugmentParams.from_config(views_preset(preset, flip_axes=[0]), nd, size)
    images = smooth_images(max(batch, 16), size)
    array = images.numpy().astype(np.float16)
    n = max(batch * 2, args.samples if nd == 2 else args.samples // 8)
    label = {"ndim": nd, "size": "x".join(map(str, size)), "batch": batch}
    monai = table.measure(
        {**label, "path": f"monai per-sample ({args.workers} workers)", "device": "cpu"},
        lambda: {"views_per_s": monai_views_per_s(array, params, args.workers, batch, n)},
    )
    for dev in dict.fromkeys([torch.device("cpu"), device]):
        row = table.measure(
            {**label, "path": "batched", "device": dev.type},
            lambda dev=dev: {"views_per_s": batched_views_per_s(images, params, batch, dev)},
        )
        if row and monai:
            row["vs_monai"] = row["views_per_s"] / monai["views_per_s"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--size2d", type=int, default=224)
    parser.add_argument("--size3d", type=int, default=96)
    parser.add_argument("--batch2d", type=int, default=64)
    parser.add_argument("--batch3d", type=int, default=8)
    parser.add_argument(
        "--samples", type=int, default=256, help="images per MONAI-path measurement"
    )
    parser.add_argument("--preset2d", default="radiograph")
    parser.add_argument("--preset3d", default="mri")
    add_common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.size2d, args.size3d, args.batch2d, args.batch3d, args.samples = 32, 16, 8, 2, 16
    device = torch.device(args.device)
    columns = ["ndim", "size", "path", "device", "batch", "views_per_s", "vs_monai"]
    with Table("views", device, columns, args.fail) as table:
        table.extra = {"workers": args.workers}
        for nd, size, batch, preset in (
            (2, (args.size2d,) * 2, args.batch2d, args.preset2d),
            (3, (args.size3d,) * 3, args.batch3d, args.preset3d),
        ):
            one_size(table, nd, size, batch, preset, args, device)


if __name__ == "__main__":
    main()
