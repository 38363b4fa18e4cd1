"""Pretraining throughput (images/s) of ``medcontrast pretrain`` and its pipeline efficiency.

    python benchmarks/bench_throughput.py --device cuda --workers 8

Runs the real trainer on synthetic images written as a MedMNIST-style .npz (indexed like any
archive) for SimCLR with ResNet-18 at 2D 64x64 and 224x224 and a MONAI 3D ResNet-18 at 96^3.
Pipeline efficiency = throughput with live augmentation / throughput with augmentation off (the
cached images are the views). Target (issue 5): >= 0.9 on a GPU.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import print_table, record, smooth_images

from medcontrast.archive.index import build_index, write_index
from medcontrast.config import PretrainConfig, load_config
from medcontrast.pretrain import pretrain

WORKLOADS = {
    "2d-64": dict(ndim=2, size=64, encoder="timm:resnet18", preset="radiograph", batch=256),
    "2d-224": dict(ndim=2, size=224, encoder="timm:resnet18", preset="radiograph", batch=256),
    "3d-96": dict(ndim=3, size=96, encoder="monai:resnet18", preset="mri", batch=16),
}


def synthetic_manifest(folder: Path, ndim: int, size: int, n: int) -> Path:
    images = (smooth_images(n, (size,) * ndim).numpy() * 255).astype(np.uint8)[:, 0]
    np.savez(
        folder / f"synthetic{ndim}d{size}.npz",
        train_images=images,
        train_labels=np.zeros((n, 1), np.uint8),
    )
    result = build_index(
        folder / f"synthetic{ndim}d{size}.npz", salt_file=folder / "salt", progress=False
    )
    out = folder / f"manifest{ndim}d{size}.csv"
    write_index(result, out, folder / "npz")
    return out


def run(manifest: Path, folder: Path, w: dict, preset: str, args, name: str) -> float:
    size = [w["size"]] * w["ndim"]
    overrides = [
        f"data.manifest={manifest}",
        f"data.ndim={w['ndim']}",
        f"data.size={size}",
        "data.splits=[train]",
        f"data.cache_dir={folder / 'cache'}",
        "data.cache=memory",
        f"out_dir={folder / 'runs'}",
        f"name={name}",
        f"model.encoder={w['encoder']}",
        f"views.preset={preset}",
        "views.path=batched",
        f"train.batch_size={args.batch or w['batch']}",
        f"train.max_steps={args.steps}",
        "train.log_every=5",
        f"train.num_workers={args.workers}",
        f"train.device={args.device}",
        "train.checkpoint_every=100000",
        f"train.channels_last={'true' if w['ndim'] == 2 and args.device != 'cpu' else 'false'}",
    ]
    if w["ndim"] == 3:
        overrides.append("views.flip_axes=[0]")
    cfg = load_config(PretrainConfig, None, overrides)
    pretrain(cfg, progress=False)
    metrics = pd.read_csv(folder / "runs" / name / "metrics.csv")
    return float(metrics["images_per_s"].iloc[1:].median())  # the first window includes warm-up


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch", type=int, default=0, help="override every workload's batch size")
    parser.add_argument(
        "--images", type=int, default=0, help="synthetic images (default: 4 batches)"
    )
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for key in args.workloads:
            w = WORKLOADS[key]
            batch = args.batch or w["batch"]
            manifest = synthetic_manifest(folder, w["ndim"], w["size"], args.images or 4 * batch)
            live = run(manifest, folder, w, w["preset"], args, f"{key}-live")
            memory = run(manifest, folder, w, "none", args, f"{key}-memory")
            rows.append(
                {
                    "workload": key,
                    "encoder": w["encoder"],
                    "batch": batch,
                    "images_per_s_live": live,
                    "images_per_s_no_aug": memory,
                    "pipeline_efficiency": live / memory,
                }
            )
    device = torch.device(args.device)
    print_table(
        rows,
        [
            "workload",
            "encoder",
            "batch",
            "images_per_s_live",
            "images_per_s_no_aug",
            "pipeline_efficiency",
        ],
    )
    print(
        f"written to {record('throughput', device, rows, {'workers': args.workers, 'steps': args.steps})}"
    )


if __name__ == "__main__":
    main()
