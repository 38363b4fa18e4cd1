"""Augmented views per second: per-sample MONAI path vs batched on-device path.

    python benchmarks/bench_views.py --device cuda --workers 8

2D views are 1x224x224 and 3D views 1x96x96x96 (``--size2d``/``--size3d`` to change). The MONAI
path runs in DataLoader workers (``--workers``; 0 = the main process), exactly as in training; the
batched path runs on ``--device``. Target (issue 5): batched >= 3x per-sample on CPU in 2D.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import median_time, print_table, record, smooth_images

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
    args = parser.parse_args()
    device = torch.device(args.device)
    rows = []
    for nd, size, batch, preset in (
        (2, (args.size2d,) * 2, args.batch2d, args.preset2d),
        (3, (args.size3d,) * 3, args.batch3d, args.preset3d),
    ):
        params = AugmentParams.from_config(views_preset(preset, flip_axes=[0]), nd, size)
        images = smooth_images(max(batch, 16), size)
        array = images.numpy().astype(np.float16)
        n = max(batch * 2, args.samples if nd == 2 else args.samples // 8)
        per_sample = monai_views_per_s(array, params, args.workers, batch, n)
        rows.append(
            {
                "ndim": nd,
                "size": "x".join(map(str, size)),
                "path": f"monai per-sample ({args.workers} workers)",
                "device": "cpu",
                "views_per_s": per_sample,
            }
        )
        views = BatchedViews(params)
        for dev in dict.fromkeys([torch.device("cpu"), device]):
            x = images[:batch].to(dev)
            g = torch.Generator(device=dev).manual_seed(0)
            t = median_time(
                lambda x=x, g=g, views=views: views(x, g),
                dev,
                warmup=2,
                reps=5 if dev.type == "cpu" else 20,
            )
            rows.append(
                {
                    "ndim": nd,
                    "size": "x".join(map(str, size)),
                    "path": "batched",
                    "device": dev.type,
                    "views_per_s": batch / t,
                    "vs_monai": batch / t / per_sample,
                }
            )
    print_table(rows, ["ndim", "size", "path", "device", "views_per_s", "vs_monai"])
    print(f"written to {record('views', device, rows, {'workers': args.workers})}")


if __name__ == "__main__":
    main()
