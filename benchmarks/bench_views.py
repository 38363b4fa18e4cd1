"""Augmented views: per-sample MONAI path, batched on-device path (plain, compiled, compiled in
a CUDA graph) and kornia.augmentation's closest equivalent pipeline, in one run.

    python benchmarks/bench_views.py --device cuda --workers 8 --batch2d 256 --batch3d 32

2D views are 1x224x224 (radiograph preset) and 3D views 1x96x96x96 (MRI preset); ``--size2d``,
``--size3d`` to change. The MONAI path runs in DataLoader workers (``--workers``; 0 = the main
process), exactly as in training; the batched and kornia paths run on the CPU and on
``--device``, timed as back-to-back calls (one view per sample each) with one synchronisation at
the end: the steady-state cost in a training loop. ``aten_calls``: top-level PyTorch operators
one batched call dispatches (counted on the CPU: for the CPU rows the sparse path a CPU runs,
for the others the dense path every sample goes through; see ``BatchedViews``).

kornia's pipeline (issue 22: our path has to earn its place against it): RandomResizedCrop
(area 0.25-1, aspect 1/2-2), a flip, RandomAffine (10 degrees, zoom 0.9-1.1, shift 5%), RandomGamma,
RandomContrast and RandomBrightness (scale and shift), RandomLinearIllumination (for the bias
field), RandomGaussianNoise, RandomGaussianBlur (9 taps) and three RandomErasing (the dropout
holes), each with the preset's probability; it has no histogram shift. In 3D kornia has spatial
steps only (flip, RandomAffine3D; no crop-and-resize): its 2D intensity steps run on each volume
viewed as (B, C*D, H, W) (per-volume parameters; blur and erasing in-plane).
Each (size, path, device) is its own row: a failure (out of memory, a missing package) costs
that row only.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import Table, add_common_args, smooth_images, sync

from medcontrast.augment.batched import BatchedViews
from medcontrast.augment.monai_views import TwoViewDataset
from medcontrast.augment.params import AugmentParams
from medcontrast.config import views_preset
from medcontrast.profiling import top_level_aten_calls


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


def per_call(fn, dev: torch.device, reps: int) -> float:
    """Seconds per call of ``fn``, ``reps`` calls back to back after three of warm-up."""
    for _ in range(3):
        fn()
    sync(dev)
    start = time.perf_counter()
    for _ in range(reps):
        fn()
    sync(dev)
    return (time.perf_counter() - start) / reps


def batched_row(
    images: torch.Tensor, params: AugmentParams, batch: int, dev: torch.device, compile: str
) -> dict:
    views = BatchedViews(params, compile=compile)
    x = images[:batch].to(dev)
    g = torch.Generator(device=dev).manual_seed(0)
    if compile != "off":
        start = time.perf_counter()
        views(x, g)  # the first call compiles
        sync(dev)
        compile_s = time.perf_counter() - start
    seconds = per_call(lambda: views(x, g), dev, 5 if dev.type == "cpu" else 50)
    row = {"views_per_s": batch / seconds, "ms_per_call": 1e3 * seconds, "mode": views.mode}
    if compile != "off":
        row["compile_s"] = compile_s
    return row


def aten_calls(images: torch.Tensor, params: AugmentParams, batch: int, sparse: bool) -> int:
    views = BatchedViews(params, compile="off", sparse=sparse)
    g = torch.Generator().manual_seed(0)
    x = images[:batch]
    views(x, g)
    return sum(top_level_aten_calls(lambda: views(x, g)).values())


def kornia_pipeline(params: AugmentParams):
    """kornia.augmentation's closest equivalent of the preset (see the module docstring): a
    callable (B, C, *size) -> (B, C, *size)."""
    import kornia.augmentation as K

    v, nd, size = params.views, params.ndim, params.size
    side = size[-1]
    holes = [
        K.RandomErasing(
            scale=(v.dropout_size[0] ** 2, v.dropout_size[1] ** 2), value=0.0, p=v.dropout_prob
        )
        for _ in range(v.dropout_holes)
    ]
    intensity = K.AugmentationSequential(
        K.RandomGamma(gamma=tuple(v.gamma), p=v.contrast_prob),
        K.RandomContrast(
            (1 - v.scale_intensity, 1 + v.scale_intensity),
            clip_output=False,
            p=v.scale_intensity_prob,
        ),
        K.RandomBrightness(
            (1 - v.shift_intensity, 1 + v.shift_intensity),
            clip_output=False,
            p=v.shift_intensity_prob,
        ),
        K.RandomLinearIllumination(gain=(0.01, v.bias_field_coeff), p=v.bias_field_prob),
        K.RandomGaussianNoise(std=v.noise_std, p=v.noise_prob),
        K.RandomGaussianBlur(9, tuple(v.blur_sigma), p=v.blur_prob),
        *holes,
    )
    affine = dict(translate=(v.translate,) * nd, scale=(1 - v.scale, 1 + v.scale), p=v.affine_prob)
    if nd == 2:
        crop = K.RandomResizedCrop(
            (side, side), scale=(v.crop_scale[0] ** 2, 1.0), ratio=(0.5, 2.0)
        )
        spatial = K.AugmentationSequential(
            crop, K.RandomVerticalFlip(p=v.flip_prob), K.RandomAffine(v.rotate_deg, **affine)
        )
        return lambda x: intensity(spatial(x))
    spatial = K.AugmentationSequential(
        K.RandomDepthicalFlip3D(p=v.flip_prob), K.RandomAffine3D(v.rotate_deg, **affine)
    )

    def volumes(x: torch.Tensor) -> torch.Tensor:
        y = spatial(x)
        b, c, d, h, w = y.shape
        return intensity(y.reshape(b, c * d, h, w)).reshape(b, c, d, h, w)

    return volumes


def kornia_row(images: torch.Tensor, params: AugmentParams, batch: int, dev: torch.device) -> dict:
    pipeline, x = kornia_pipeline(params), images[:batch].to(dev)
    seconds = per_call(lambda: pipeline(x), dev, 3 if dev.type == "cpu" else 20)
    return {"views_per_s": batch / seconds, "ms_per_call": 1e3 * seconds}


def one_size(
    table: Table, nd: int, size: tuple[int, ...], batch: int, preset: str, args, device
) -> None:
    """The rows of one image size: MONAI per-sample; batched (plain, and compiled on CUDA) and
    kornia on the CPU and on ``device``."""
    params = AugmentParams.from_config(views_preset(preset, flip_axes=[0]), nd, size)
    images = smooth_images(max(batch, 16), size)
    array = images.numpy().astype(np.float16)
    n = max(batch * 2, args.samples if nd == 2 else args.samples // 8)
    label = {"ndim": nd, "size": "x".join(map(str, size)), "batch": batch}
    monai = table.measure(
        {**label, "path": f"monai per-sample ({args.workers} workers)", "device": "cpu"},
        lambda: {"views_per_s": monai_views_per_s(array, params, args.workers, batch, n)},
    )
    # a CPU runs the sparse path (steps on the samples that take them), a GPU the dense one
    calls = {sparse: aten_calls(images, params, batch, sparse) for sparse in (False, True)}
    for dev in dict.fromkeys([torch.device("cpu"), device]):
        kornia = table.measure(
            {**label, "path": "kornia.augmentation", "device": dev.type},
            lambda dev=dev: kornia_row(images, params, batch, dev),
        )
        for compile in ["off"] + (["on", "graphs"] if dev.type == "cuda" else []):
            path = {"off": "batched", "on": "batched, torch.compile"}.get(
                compile, "batched, torch.compile + CUDA graph"
            )
            row = table.measure(
                {**label, "path": path, "device": dev.type},
                lambda dev=dev, compile=compile: {
                    **batched_row(images, params, batch, dev, compile),
                    "aten_calls": calls[dev.type == "cpu"],
                },
            )
            if row and monai:
                row["vs_monai"] = row["views_per_s"] / monai["views_per_s"]
            if row and kornia:
                row["vs_kornia"] = row["views_per_s"] / kornia["views_per_s"]


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
    columns = [
        "ndim",
        "size",
        "path",
        "device",
        "batch",
        "views_per_s",
        "ms_per_call",
        "aten_calls",
        "vs_monai",
        "vs_kornia",
    ]
    with Table("views", device, columns, args.fail) as table:
        table.extra = {"workers": args.workers}
        for nd, size, batch, preset in (
            (2, (args.size2d,) * 2, args.batch2d, args.preset2d),
            (3, (args.size3d,) * 3, args.batch3d, args.preset3d),
        ):
            one_size(table, nd, size, batch, preset, args, device)


if __name__ == "__main__":
    main()
