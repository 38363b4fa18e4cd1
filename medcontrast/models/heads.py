"""Projection and prediction heads (MLPs with batch norm)."""

from __future__ import annotations

from torch import nn


def mlp(
    in_dim: int, hidden: int, out_dim: int, layers: int = 2, last_bn: bool = False
) -> nn.Sequential:
    """Linear-BN-ReLU blocks then a linear layer: the SimCLR projection head (Chen et al., 2020)
    for ``layers=2``; ``last_bn`` adds the final batch norm used by MoCo v3 (Chen et al., 2021).

    Shapes: (B, in_dim) -> (B, out_dim).
    """
    if layers < 1:
        raise ValueError("an MLP head needs at least one layer")
    blocks: list[nn.Module] = []
    dim = in_dim
    for _ in range(layers - 1):
        blocks += [
            nn.Linear(dim, hidden, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(inplace=True),
        ]
        dim = hidden
    blocks.append(nn.Linear(dim, out_dim, bias=not last_bn))
    if last_bn:
        blocks.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*blocks)
