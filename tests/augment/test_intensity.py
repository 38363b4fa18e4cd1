"""Batched intensity steps against the per-sample definitions they replace."""

from __future__ import annotations

import itertools

import pytest
import torch
from monai.networks.layers import GaussianFilter
from monai.networks.layers.convutils import gaussian_1d

from medcontrast.augment import intensity as ops


def test_hist_curves_equal_the_sequential_draw():
    g = torch.Generator().manual_seed(0)
    n, most = 50, 10
    keep = 1 - torch.rand(n, most - 2, generator=g)
    last = torch.randint(2, most, (n, 1), generator=g).float()
    index = torch.arange(most + 1, dtype=torch.float32)
    values = ops.hist_curves(keep, last, (index, index + 2))
    for s in range(n):
        points = int(last[s]) + 1
        f = torch.linspace(0, 1, points)  # MONAI's loop: f_i ~ U(f_{i-1}, f_{i+1})
        for i in range(1, points - 1):
            f[i] = f[i - 1] + (1 - keep[s, i - 1]) * (f[i + 1] - f[i - 1])
        assert torch.allclose(values[s, :points], f, atol=1e-5)
        assert values[s, points:].eq(1).all()
    identity = ops.hist_curves(torch.full((n, most - 2), 0.5), last, (index, index + 2))
    assert torch.allclose(identity, (index / last).clamp_max(1))


def _edges(s: int) -> torch.Tensor:
    return (torch.arange(s + 1)[None, :] - torch.arange(s)[:, None]).float() - 0.5


@pytest.mark.parametrize("sigma", [0.3, 0.8, 1.5])
def test_blur_matrices_hold_monais_erf_kernels(sigma):
    reference = gaussian_1d(torch.tensor(sigma), truncated=4.0, approx="erf")
    radius = len(reference) // 2
    (matrix,) = ops.blur_matrices(torch.tensor([[sigma]]), [_edges(20)])
    row = matrix[0, 10]  # pixel 10: the kernel centred there
    assert torch.allclose(row[10 - radius : 11 + radius], reference, atol=1e-6)
    assert row.sum() == pytest.approx(1.0, abs=1e-4)
    (identity,) = ops.blur_matrices(torch.zeros(1, 1), [_edges(20)])
    assert torch.equal(identity[0], torch.eye(20))  # sigma 0: the image unchanged


@pytest.mark.parametrize("size", [(12, 12), (9, 12), (8, 8, 8), (6, 8, 7)])
def test_separable_blur_is_monais_gaussian_filter_per_sample(size):
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3, 2, *size, generator=g)
    sigma = torch.tensor([[0.5] * len(size), [1.2] * len(size), [0.0] * len(size)])
    edges = [_edges(s) for s in size] if len(set(size)) > 1 else [_edges(size[0])]
    out = ops.separable_blur(x, ops.blur_matrices(sigma, edges))
    for i, s in enumerate(sigma[:2, 0].tolist()):
        filt = GaussianFilter(len(size), s, truncated=4.0, approx="erf")
        assert torch.allclose(out[i], filt(x[i : i + 1])[0], atol=1e-4)
    assert torch.allclose(out[2], x[2], atol=1e-6)


@pytest.mark.parametrize("size", [(7, 9), (5, 4, 6)])
def test_box_union_is_the_union_of_the_boxes(size):
    g = torch.Generator().manual_seed(1)
    n, holes, nd = 4, 3, len(size)
    extent = torch.tensor(size).repeat(holes)
    start = (torch.rand(n, holes * nd, generator=g) * extent).floor()
    end = start + torch.randint(0, 4, (n, holes * nd), generator=g)
    constants = (torch.arange(max(size)) + 0.5, torch.ones(1))
    got = ops.box_union(start, end, size, constants)
    assert got.shape == (n, 1, *size)
    for s in range(n):
        want = torch.zeros(size, dtype=torch.bool)
        for h in range(holes):
            lo, hi = start[s, h * nd : (h + 1) * nd], end[s, h * nd : (h + 1) * nd]
            for p in itertools.product(*map(range, size)):
                if all(lo[a] <= p[a] < hi[a] for a in range(nd)):
                    want[p] = True
        assert torch.equal(got[s, 0], want)
