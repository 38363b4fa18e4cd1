"""Batched geometry: per-sample affine matrices built in a few tensor operations and one
resampling of the whole batch (an affine grid + ``grid_sample``), 2D and 3D.

Matrices map output to input coordinates in normalised units ([-1, 1] from the first pixel's
outer edge to the last's, ``align_corners=False``) in torch's (x, y[, z]) order, the last array
axis first: they are built in that order from the start, so nothing is permuted per call. MONAI's
``AffineTransform(normalized=True, reverse_indexing=True)`` takes them in array order and
re-indexes them on every call (a dozen small kernels); we call torch's grid functions directly.
Ground floor: torch only.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

PLANES = {2: ((0, 1),), 3: ((1, 2), (0, 2), (0, 1))}  # the order MONAI composes rotations in


def plane_basis(nd: int, planes, dev: torch.device) -> tuple[torch.Tensor, ...]:
    """Constants for rotations in ``planes`` (pairs of array axes), in torch's (x, y[, z])
    order: the angle offsets (0, pi/2) that turn a cosine into a sine, the identity off each
    plane (P, nd, nd) and the cosine and sine parts in it (2, P, nd, nd), so that
    ``R_p = off_p + cos(a_p) C_p + sin(a_p) S_p``."""
    off = torch.zeros(len(planes), nd, nd, device=dev)
    cs = torch.zeros(2, len(planes), nd, nd, device=dev)
    for p, (a, b) in enumerate(planes):
        i, j = nd - 1 - a, nd - 1 - b
        off[p] = torch.eye(nd, device=dev)
        off[p, i, i] = off[p, j, j] = 0
        cs[0, p, i, i] = cs[0, p, j, j] = 1
        cs[1, p, i, j], cs[1, p, j, i] = -1, 1
    return torch.tensor([0.0, math.pi / 2], device=dev), off, cs


def rotations(
    angles: torch.Tensor, basis: tuple[torch.Tensor, ...], exact: bool = False
) -> tuple[torch.Tensor, ...]:
    """(n, P) angles in radians, one per plane of ``basis`` (:func:`plane_basis`) -> P rotation
    matrices (n, nd, nd), to be composed in that order. ``exact``: cosines and sines rounded
    (multiples of 90 degrees)."""
    quarter, off, cs_basis = basis
    cs = torch.cos(angles.unsqueeze(-1) - quarter)  # (n, P, 2): cos, sin
    if exact:
        cs = cs.round()
    per_plane = torch.einsum("npk,kpij->npij", cs, cs_basis)
    if off.shape[-1] > 2:  # in 2D the one plane is the whole matrix: nothing is off it
        per_plane = per_plane + off
    return per_plane.unbind(1)


def grid_coordinates(size: tuple[int, ...], dev: torch.device) -> tuple[torch.Tensor, ...]:
    """The pixel centres along each axis in normalised units (``align_corners=False``), in
    (x, y[, z]) order, each shaped to broadcast over a (B, *size, nd) grid: x (1, [1,] 1, W, 1),
    y (1, [1,] H, 1, 1)[, z (1, D, 1, 1, 1)]."""
    nd, out = len(size), []
    for axis in reversed(range(nd)):
        shape = [1] * (nd + 2)
        shape[1 + axis] = size[axis]
        centres = (2 * torch.arange(size[axis], device=dev, dtype=torch.float32) + 1) / size[axis]
        out.append((centres - 1).view(shape))
    return tuple(out)


def affine_grid(theta: torch.Tensor, coords: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """``F.affine_grid(theta, align_corners=False)`` as a sum of one outer product per axis:
    (B, nd, nd+1) matrices and :func:`grid_coordinates` -> (B, *size, nd). The point at pixel
    (..., y, x) is theta @ (x, y, [z,] 1), and x only varies along the last axis: nd
    broadcast multiply-adds. affine_grid does it as one batched matrix product with an inner
    dimension of nd + 1, which a CPU runs at a small fraction of its speed (130 ms of a 480 ms
    call at 8 x 96^3)."""
    b, nd = theta.shape[:2]
    *columns, shift = theta.reshape(b, *(1,) * nd, nd, nd + 1).unbind(-1)
    grid = shift
    for column, coord in zip(reversed(columns), reversed(coords), strict=True):
        grid = torch.addcmul(grid, coord, column)  # z, y (small) first: the last is full size
    return grid


def resample(
    x: torch.Tensor,
    theta: torch.Tensor,
    field: torch.Tensor | None = None,
    window: tuple[torch.Tensor, torch.Tensor] | None = None,
    half: bool = False,
    coords: tuple[torch.Tensor, ...] | None = None,
) -> torch.Tensor:
    """x (B, C, *size) sampled through ``theta`` (B, nd, nd+1, (x, y[, z]) order) with bilinear
    interpolation and zero padding; ``field`` (B, *size, nd), an optional displacement in
    normalised (x, y[, z]) units added to the output grid before ``theta`` maps it (an elastic
    deformation folded into the same single resampling). ``window``: (side, centre), each
    (B, nd), a crop applied after ``theta``: grid points outside [-1, 1] (outside the window)
    give zeros, as if the window had been cut out first. ``half``: the grid and the sampling in
    float16 (about 0.1 pixel of coordinate error at 224 px; the result back in x's dtype).
    ``coords``: :func:`grid_coordinates` of x's size (made here when not given)."""
    b, _, *size = x.shape
    if coords is None:
        coords = grid_coordinates(tuple(size), x.device)
    grid = affine_grid(theta, coords)
    if field is not None:
        grid = grid + torch.einsum("n...j,nij->n...i", field, theta[..., :-1])
    if window is not None:
        side, centre = (t.view(b, *(1,) * len(size), len(size)) for t in window)
        # A coordinate outside the window is sent far outside the image, where grid_sample
        # pads with zeros: the same as masking the output, without a pass over it. In place:
        # at 8 x 96^3 the grid is 85 MB, and a fresh one costs its page faults on a CPU.
        grid.masked_fill_(grid.abs() > 1, 1e3)
        grid = torch.addcmul(centre, grid, side, out=grid)
    if half:
        return F.grid_sample(
            x.half(), grid.half(), mode="bilinear", padding_mode="zeros", align_corners=False
        ).to(x.dtype)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def elastic_field(coarse: torch.Tensor, on: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    """A smooth displacement field from a coarse random one, as MONAI's ``RandSmoothDeform``:
    coarse (B, nd, *grid), channel k the displacement along torch's k-th (x, y[, z]) axis,
    upsampled (bicubic in 2D, trilinear in 3D) and rescaled to the coarse field's range, zero
    where ``on`` (B, 1) is 0. Returns (B, *size, nd)."""
    b, nd = coarse.shape[:2]
    mode = "bicubic" if nd == 2 else "trilinear"
    field = F.interpolate(coarse, size=size, mode=mode, align_corners=False)
    cmin, cmax = torch.aminmax(coarse.flatten(1), dim=1, keepdim=True)
    fmin, fmax = torch.aminmax(field.flatten(1), dim=1, keepdim=True)
    scale = (cmax - cmin) / (fmax - fmin).clamp_min(1e-12) * on
    flat = (field.flatten(1) - fmin) * scale + cmin * on
    return flat.view(b, nd, *size).movedim(1, -1)
