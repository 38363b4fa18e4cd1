"""Forward + backward time of NT-Xent: medcontrast vs monai.losses.ContrastiveLoss vs lightly.

    python benchmarks/bench_loss.py --device cuda --batch 256 1024 4096 8192 --dim 128

Each (batch, loss) is its own row: MONAI's loss materialises several (2B, 2B) float32 matrices
and runs out of memory at batch 4096 on an 80 GB card; that row then reads ``OOM at batch 4096``
and the table goes on. ``peak_mib`` is the peak GPU memory of one step. Target (issue 5): at least
50x faster than MONAI's at batch 1024, on par with lightly's; ours must run at 4096 and 8192.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial

import torch
from _common import Table, add_common_args, median_time

from medcontrast.losses import nt_xent

COLUMNS = ["batch", "dim", "loss", "ms", "peak_mib", "value", "slower_than_medcontrast"]


def _losses(temperature: float) -> dict[str, Callable[[], Callable]]:
    """Each loss built on demand, so that a missing package fails its own rows only."""

    def monai() -> Callable:
        from monai.losses import ContrastiveLoss

        return ContrastiveLoss(temperature=temperature)

    def lightly() -> Callable:
        from lightly.loss import NTXentLoss

        return NTXentLoss(temperature=temperature)

    return {
        "medcontrast": lambda: partial(nt_xent, temperature=temperature, gather=False),
        "monai": monai,
        "lightly": lightly,
    }


def time_loss(make: Callable[[], Callable], b: int, args, device: torch.device) -> dict:
    """ms per forward + backward at batch ``b``, the peak memory and the loss value."""
    fn = make()
    g = torch.Generator(device="cpu").manual_seed(b)
    z1 = torch.randn(b, args.dim, generator=g).to(device).requires_grad_()
    z2 = torch.randn(b, args.dim, generator=g).to(device).requires_grad_()

    def step() -> None:
        z1.grad = z2.grad = None
        fn(z1, z2).backward()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    value = float(fn(z1, z2).detach())
    seconds = median_time(step, device, warmup=2, reps=args.reps)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return {"ms": seconds * 1000, "peak_mib": peak, "value": value}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[256, 1024, 4096, 8192])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument("--reps", type=int, default=10)
    names = list(_losses(0.1))
    parser.add_argument("--losses", nargs="+", default=names, choices=names)
    add_common_args(parser)
    args = parser.parse_args()
    if args.quick:
        args.batch, args.reps = [16, 32], 2
    device = torch.device(args.device)
    with Table("loss", device, COLUMNS, args.fail) as table:
        for b in args.batch:
            ours = None
            for name, make in _losses(args.temperature).items():
                if name not in args.losses:
                    continue
                label = {"batch": b, "dim": args.dim, "loss": name}
                row = table.measure(label, lambda make=make, b=b: time_loss(make, b, args, device))
                if row is not None and name == "medcontrast":
                    ours = row["ms"]
                if row is not None and ours is not None:
                    row["slower_than_medcontrast"] = row["ms"] / ours


if __name__ == "__main__":
    main()
