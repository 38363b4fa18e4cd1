"""Projection and prediction heads (MLPs with batch norm)."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from medcontrast.checks import check_ranges


@dataclass
class HeadSpec:
    """The ``method.head:`` block: the projection MLP on the encoder's (B, D) features, and the
    predictor of methods that have one (BYOL). Both are discarded after pretraining."""

    hidden: int = 512
    dim: int = 128  # the space the loss compares in
    layers: int = 2
    pred_hidden: int = 512  # BYOL's predictor

    def __post_init__(self) -> None:
        at_least = {"hidden": 1, "dim": 1, "layers": 1, "pred_hidden": 1}
        check_ranges("method.head", self, at_least=at_least)

    def projector(self, in_dim: int) -> nn.Sequential:
        """(B, in_dim) -> (B, dim)."""
        return mlp(in_dim, self.hidden, self.dim, self.layers)

    def predictor(self) -> nn.Sequential:
        """(B, dim) -> (B, dim): two layers, as in BYOL (Grill et al., 2020)."""
        return mlp(self.dim, self.pred_hidden, self.dim, 2)


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
