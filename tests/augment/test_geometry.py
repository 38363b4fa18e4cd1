"""Batched geometry against MONAI's resampling layer."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from monai.networks.layers import AffineTransform

from medcontrast.augment import geometry as geo


@pytest.mark.parametrize("nd", [2, 3])
def test_xy_matrices_resample_as_monai_reads_array_order(nd):
    g = torch.Generator().manual_seed(0)
    size = (12, 10) if nd == 2 else (8, 10, 6)
    x = torch.rand(3, 2, *size, generator=g)
    theta = torch.eye(nd, nd + 1).repeat(3, 1, 1) + 0.2 * torch.randn(3, nd, nd + 1, generator=g)
    monai = AffineTransform(
        normalized=True, reverse_indexing=True, padding_mode="zeros", align_corners=False
    )
    expected = monai(x, theta, spatial_size=size)
    cols = [*range(nd - 1, -1, -1), nd]
    xy = theta.flip(1)[:, :, cols]  # the same maps in (x, y[, z]) order
    assert torch.allclose(geo.resample(x, xy), expected, atol=1e-5)


@pytest.mark.parametrize("nd", [2, 3])
def test_rotations_compose_the_planes_in_monai_order(nd):
    planes = geo.PLANES[nd]
    angles = torch.tensor([[0.3, -0.2, 0.5][: len(planes)]])
    mats = geo.rotations(angles, geo.plane_basis(nd, planes, torch.device("cpu")))
    out = mats[0]
    for m in mats[1:]:
        out = out @ m
    expected = torch.eye(nd)
    for (a, b), angle in zip(planes, angles[0].tolist(), strict=True):
        r = torch.eye(nd)
        i, j = nd - 1 - a, nd - 1 - b  # array axes in (x, y[, z]) order
        r[i, i] = r[j, j] = math.cos(angle)
        r[i, j], r[j, i] = -math.sin(angle), math.sin(angle)
        expected = expected @ r
    assert torch.allclose(out[0], expected, atol=1e-6)
    assert torch.allclose(out[0] @ out[0].T, torch.eye(nd), atol=1e-6)


def test_a_window_zeroes_what_lies_outside_the_crop():
    x = torch.ones(1, 1, 16, 16)
    shift = torch.tensor([[[1.0, 0.0, 0.8], [0.0, 1.0, 0.0]]])  # half the grid leaves [-1, 1]
    window = (torch.tensor([[0.5, 0.5]]), torch.tensor([[0.0, 0.0]]))
    out = geo.resample(x, shift, window=window)
    assert out[0, 0, :, :9].eq(1).all() and out[0, 0, :, 10:].eq(0).all()
    folded = torch.tensor([[[0.5, 0.0, 0.4], [0.0, 0.5, 0.0]]])  # the crop in the matrix
    assert geo.resample(x, folded).eq(1).all()  # one resampling: the image around the window


@pytest.mark.parametrize("size", [(6, 9), (4, 5, 7)])
def test_separable_grid_equals_torchs_affine_grid(size):
    nd = len(size)
    theta = torch.randn(3, nd, nd + 1, generator=torch.Generator().manual_seed(0))
    expected = F.affine_grid(theta, [3, 1, *size], align_corners=False)
    got = geo.affine_grid(theta, geo.grid_coordinates(size, torch.device("cpu")))
    assert got.shape == expected.shape and torch.allclose(got, expected, atol=1e-6)
