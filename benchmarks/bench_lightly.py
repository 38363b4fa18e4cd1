"""lightly's SimCLR on the workload of bench_throughput.py, for a same-GPU comparison.

    PYTHONPATH=/path/to/lightly python benchmarks/bench_lightly.py --device cuda --workers 8

lightly is imported from its own environment (it is not a medcontrast dependency). Same model
(timm ResNet-18; 3 input channels, since lightly's SimCLRTransform makes RGB), image size, batch,
optimizer and bf16 autocast; lightly's own transform in DataLoader workers, its projection head
and NT-Xent loss. Images come from memory as PIL images, so disk is not measured.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from _common import print_table, record, smooth_images


class _Images(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, transform) -> None:
        from PIL import Image

        self.images = [Image.fromarray(im) for im in images]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i])


def main() -> None:
    import timm
    from lightly.loss import NTXentLoss
    from lightly.models.modules import SimCLRProjectionHead
    from lightly.transforms import SimCLRTransform

    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 224])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    device = torch.device(args.device)
    amp = torch.bfloat16 if device.type == "cuda" else None
    rows = []
    for size in args.sizes:
        images = (smooth_images(4 * args.batch, (size, size)).numpy()[:, 0] * 255).astype(np.uint8)
        transform = SimCLRTransform(input_size=size, cj_prob=0.8, min_scale=0.5)
        loader = torch.utils.data.DataLoader(
            _Images(images, transform),
            batch_size=args.batch,
            shuffle=True,
            drop_last=True,
            num_workers=args.workers,
            pin_memory=device.type == "cuda",
            persistent_workers=args.workers > 0,
        )
        backbone = timm.create_model("resnet18", pretrained=False, num_classes=0)
        model = torch.nn.Sequential(backbone, SimCLRProjectionHead(512, 512, 128)).to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        loss_fn = NTXentLoss(temperature=0.1)
        step, seen, start = 0, 0, None
        while step < args.steps:
            for views in loader:  # SimCLRTransform gives [view0, view1] per image
                x0 = views[0].to(device, non_blocking=True)
                x1 = views[1].to(device, non_blocking=True)
                with (
                    torch.autocast(device.type, dtype=amp)
                    if amp
                    else torch.autocast("cpu", enabled=False)
                ):
                    z = model(torch.cat([x0, x1]))
                loss = loss_fn(z[: len(x0)].float(), z[len(x0) :].float())
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if step == 5:  # warm-up done
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    start, seen = time.perf_counter(), 0
                elif start is not None:
                    seen += len(x0)
                if step >= args.steps:
                    break
        if device.type == "cuda":
            torch.cuda.synchronize()
        rows.append(
            {
                "workload": f"2d-{size}",
                "library": "lightly",
                "batch": args.batch,
                "images_per_s": seen / (time.perf_counter() - start),
            }
        )
    print_table(rows, ["workload", "library", "batch", "images_per_s"])
    print(f"written to {record('lightly_throughput', device, rows, {'workers': args.workers})}")


if __name__ == "__main__":
    main()
