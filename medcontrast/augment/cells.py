"""An image cut into a grid of equal cells and put back: local pixel shuffling shuffles within
cells, MAE's patches are cells. Ground floor: torch only."""

from __future__ import annotations

import math

import torch


def _order(nd: int) -> list[int]:
    # (B, C, n1, k1, n2, k2, ...) -> (B, C, n1, n2, ..., k1, k2, ...)
    return [0, 1, *(2 + 2 * a for a in range(nd)), *(3 + 2 * a for a in range(nd))]


def to_cells(x: torch.Tensor, cell: tuple[int, ...]) -> torch.Tensor:
    """(B, C, *size) with every side a multiple of ``cell`` -> (B, C, cells, pixels): cells in
    row-major grid order, each cell's pixels row-major."""
    b, c, *size = x.shape
    split = [v for s, k in zip(size, cell, strict=True) for v in (s // k, k)]
    cells = x.reshape(b, c, *split).permute(_order(len(size)))
    return cells.reshape(b, c, math.prod(s // k for s, k in zip(size, cell, strict=True)), -1)


def from_cells(cells: torch.Tensor, grid: tuple[int, ...], cell: tuple[int, ...]) -> torch.Tensor:
    """The inverse of :func:`to_cells`: (B, C, cells, pixels) -> (B, C, *(grid * cell))."""
    b, c = cells.shape[:2]
    order = _order(len(grid))
    back = cells.reshape(b, c, *grid, *cell).permute([order.index(i) for i in range(len(order))])
    return back.reshape(b, c, *(g * k for g, k in zip(grid, cell, strict=True)))
