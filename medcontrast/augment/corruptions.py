"""The image corruptions of Models Genesis (Zhou et al., "Models Genesis", Medical Image Analysis
2021), drawn on the device for the whole batch, one draw per sample, from a seeded generator.

In the paper's order: local pixel shuffling, a non-linear intensity transform (a random Bezier
curve), then in-painting or out-painting. Each sample is rescaled to [0, 1] by its own minimum and
maximum, corrupted there, and mapped back, so the corruptions mean the same whatever the views'
intensity range.

The paper's code loops over samples in NumPy; here each corruption is a few batched tensor
operations. Where the loop cannot be batched the distribution is changed, as said in each
docstring (pixel shuffling uses a grid of cells instead of 10,000 boxes of random size).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from medcontrast.augment.cells import from_cells, to_cells
from medcontrast.augment.intensity import box_constants, box_union
from medcontrast.errors import MedContrastError

_CURVE_POINTS = 256  # samples of each Bezier curve (the paper: 100,000; linear in between)
_BOXES = 5  # at most this many in- or out-painting boxes per sample, as in the paper


def _uniform(shape: tuple[int, ...], lo: float, hi: float, g: torch.Generator, dev) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(shape, generator=g, device=dev)


def bezier_transform(x: torch.Tensor, prob: float, g: torch.Generator) -> torch.Tensor:
    """A random monotone intensity curve per sample (half of them decreasing: intensities
    inverted), applied with probability ``prob``.

    The cubic Bezier curve runs from (0, 0) to (1, 1) through two control points ~ U([0, 1]^2);
    its x values sorted give the input intensities, its y values (sorted, or in reverse order
    for the decreasing half) the outputs, linearly interpolated. Shapes: x (B, C, *size) in
    [0, 1] -> same.
    """
    b, dev = x.shape[0], x.device
    ctrl = torch.rand(b, 2, 2, generator=g, device=dev)  # (B, point, xy)
    t = torch.linspace(0, 1, _CURVE_POINTS, device=dev)[None, :, None]
    p1, p2 = ctrl[:, None, 0], ctrl[:, None, 1]
    curve = 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3  # p0 = (0, 0), p3 = (1, 1)
    xs = curve[..., 0].sort(-1).values
    ys = curve[..., 1]
    increasing = torch.rand(b, generator=g, device=dev) < 0.5
    ys = torch.where(increasing[:, None], ys.sort(-1).values, ys.flip(-1))
    apply = torch.rand(b, generator=g, device=dev) < prob
    flat = x.reshape(b, -1).contiguous()
    i = torch.searchsorted(xs, flat).clamp(1, _CURVE_POINTS - 1)
    x0, x1 = xs.gather(1, i - 1), xs.gather(1, i)
    y0, y1 = ys.gather(1, i - 1), ys.gather(1, i)
    out = y0 + (flat - x0) / (x1 - x0).clamp_min(1e-6) * (y1 - y0)
    return torch.where(apply[:, None], out, flat).reshape(x.shape)


def shuffle_pixels(
    x: torch.Tensor, prob: float, cell: tuple[int, ...], g: torch.Generator
) -> torch.Tensor:
    """Local pixel shuffling: for a sample chosen with probability ``prob``, each cell of a grid
    of ``cell``-sized cells is shuffled with probability 1/2 (one permutation of its pixels, the
    same for every channel). Pixels past the last whole cell are left alone.

    The paper shuffles 10,000 boxes of random size and position one after another; a grid of
    cells drawn per sample is what batches. Shapes: x (B, C, *size) -> same.
    """
    b, _, *size = x.shape
    dev = x.device
    grid = tuple(s // k for s, k in zip(size, cell, strict=True))
    whole = (slice(None), slice(None), *(slice(0, g * k) for g, k in zip(grid, cell, strict=True)))
    cells = to_cells(x[whole], cell)  # (B, C, cells, pixels)
    perm = torch.rand(b, 1, *cells.shape[2:], generator=g, device=dev).argsort(-1)
    shuffled = cells.gather(-1, perm.expand_as(cells))
    chosen = torch.rand(b, 1, cells.shape[2], 1, generator=g, device=dev) < 0.5
    chosen &= (torch.rand(b, generator=g, device=dev) < prob)[:, None, None, None]
    out = x.clone()
    out[whole] = from_cells(torch.where(chosen, shuffled, cells), grid, cell)
    return out


def box_masks(
    b: int, size: tuple[int, ...], side: tuple[float, float], g: torch.Generator, dev
) -> torch.Tensor:
    """The union of 1 to 5 (uniform count) boxes per sample, each side a fraction ~ U(side) of
    the image's along its axis, at a uniform position inside it. Shape: (B, 1, *size), bool."""
    nd = len(size)
    extent = torch.tensor(size, device=dev, dtype=torch.float32)
    sides = _uniform((b, _BOXES, nd), *side, g, dev) * extent
    starts = torch.rand(b, _BOXES, nd, generator=g, device=dev) * (extent - sides)
    count = torch.randint(1, _BOXES + 1, (b, 1), generator=g, device=dev)
    used = (torch.arange(_BOXES, device=dev)[None] < count).unsqueeze(-1)  # (B, boxes, 1)
    ends = starts + sides * used  # an unused box is empty
    constants = box_constants(tuple(size), dev)
    return box_union(starts.flatten(1), ends.flatten(1), tuple(size), constants)


def paint(x: torch.Tensor, prob: float, inpaint_rate: float, g: torch.Generator) -> torch.Tensor:
    """With probability ``prob``, in-painting (with probability ``inpaint_rate``: boxes of 1/6
    to 1/3 of each side filled with uniform noise) or else out-painting (everything but boxes of
    3/7 to 4/7 of each side filled with noise), as in the paper. Shapes: x (B, C, *size) in
    [0, 1] -> same."""
    b, _, *size = x.shape
    dev = x.device
    noise = torch.rand(x.shape, generator=g, device=dev, dtype=x.dtype)
    inner = box_masks(b, tuple(size), (1 / 6, 1 / 3), g, dev)
    outer = box_masks(b, tuple(size), (3 / 7, 4 / 7), g, dev)
    painted = torch.rand(b, generator=g, device=dev) < prob
    inpaint = torch.rand(b, generator=g, device=dev) < inpaint_rate
    shape = (b, *(1,) * (x.ndim - 1))
    noisy = torch.where(inpaint.reshape(shape), inner, ~outer) & painted.reshape(shape)
    return torch.where(noisy, noise, x)


@dataclass(frozen=True)
class GenesisCorruption:
    """Callable: (B, C, *size) images and a generator -> corrupted images of the same range.

    Defaults are the paper's: non-linear transform 0.9, local shuffling 0.5, painting 0.9 of
    which in-painting 0.2 (out-painting 0.8); shuffling cells 1/10 of each side.
    """

    nonlinear_prob: float = 0.9
    shuffle_prob: float = 0.5
    shuffle_cell: float = 0.1
    paint_prob: float = 0.9
    inpaint_rate: float = 0.2

    def __post_init__(self) -> None:
        for key in ("nonlinear_prob", "shuffle_prob", "paint_prob", "inpaint_rate"):
            if not 0 <= getattr(self, key) <= 1:
                raise MedContrastError(f"method.{key} must be in [0, 1], not {getattr(self, key)}")
        if not 0 < self.shuffle_cell <= 0.5:
            raise MedContrastError(
                f"method.shuffle_cell must be in (0, 0.5], not {self.shuffle_cell}"
            )

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        b = x.shape[0]
        flat = x.detach().float().reshape(b, -1)
        lo, hi = flat.min(1).values, flat.max(1).values
        shape = (b, *(1,) * (x.ndim - 1))
        lo, span = lo.reshape(shape), (hi - lo).clamp_min(1e-6).reshape(shape)
        y = (x.detach().float() - lo) / span
        cell = tuple(max(1, round(s * self.shuffle_cell)) for s in x.shape[2:])
        y = shuffle_pixels(y, self.shuffle_prob, cell, g)
        y = bezier_transform(y, self.nonlinear_prob, g)
        y = paint(y, self.paint_prob, self.inpaint_rate, g)
        return (y * span + lo).to(x.dtype)
