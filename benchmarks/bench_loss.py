"""Forward + backward time of NT-Xent: medcontrast vs monai.losses.ContrastiveLoss vs lightly.

    python benchmarks/bench_loss.py --device cuda --batch 256 1024 --dim 128

Target (issue 5): at least 50x faster than MONAI's at batch 1024, on par with lightly's.
"""

from __future__ import annotations

import argparse
from functools import partial

import torch
from _common import median_time, print_table, record

from medcontrast.losses import nt_xent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, nargs="+", default=[256, 1024])
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=0.1)
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args()
    device = torch.device(args.device)
    from monai.losses import ContrastiveLoss

    try:
        from lightly.loss import NTXentLoss
    except ImportError:
        NTXentLoss = None  # noqa: N806
    rows = []
    for b in args.batch:
        g = torch.Generator(device="cpu").manual_seed(b)
        z1 = torch.randn(b, args.dim, generator=g).to(device).requires_grad_()
        z2 = torch.randn(b, args.dim, generator=g).to(device).requires_grad_()
        monai_loss = ContrastiveLoss(temperature=args.temperature)
        losses = {
            "medcontrast": partial(nt_xent, temperature=args.temperature, gather=False),
            "monai": monai_loss,
        }
        if NTXentLoss is not None:
            losses["lightly"] = NTXentLoss(temperature=args.temperature)
        values, times = {}, {}
        for name, fn in losses.items():
            values[name] = float(fn(z1, z2).detach())

            def step(fn=fn, z1=z1, z2=z2) -> None:
                z1.grad = z2.grad = None
                fn(z1, z2).backward()

            times[name] = median_time(step, device, warmup=2, reps=args.reps)
        for name, t in times.items():
            rows.append(
                {
                    "batch": b,
                    "dim": args.dim,
                    "loss": name,
                    "ms": t * 1000,
                    "value": values[name],
                    "slower_than_medcontrast": t / times["medcontrast"],
                }
            )
    print_table(rows, ["batch", "dim", "loss", "ms", "value", "slower_than_medcontrast"])
    print(f"written to {record('loss', device, rows)}")


if __name__ == "__main__":
    main()
