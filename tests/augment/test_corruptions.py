"""Models Genesis' corruptions follow their stated distributions, batched and seeded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medcontrast.augment.corruptions import (
    GenesisCorruption,
    bezier_transform,
    box_masks,
    paint,
    shuffle_pixels,
)
from medcontrast.errors import MedContrastError


def _g(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_intensity_curves_are_monotone_half_of_them_inverted():
    n = 2000
    ramp = torch.linspace(0, 1, 64).expand(n, 1, 64).contiguous()
    out = bezier_transform(ramp, 1.0, _g())[:, 0]  # (n, 64)
    step = out.diff(dim=-1)
    rising = (step >= -1e-6).all(-1)
    falling = (step <= 1e-6).all(-1)
    assert bool((rising | falling).all())  # every curve is monotone
    assert float(falling.float().mean()) == pytest.approx(0.5, abs=0.04)
    ends = out[:, [0, -1]]
    torch.testing.assert_close(
        ends[rising & ~falling],
        torch.tensor([0.0, 1.0]).expand_as(ends[rising & ~falling]),
        atol=1e-3,
        rtol=0,
    )
    kept = (bezier_transform(ramp, 0.9, _g(1)) == ramp).all(-1).all(-1)
    assert float(kept.float().mean()) == pytest.approx(0.1, abs=0.02)


@pytest.mark.parametrize("size,cell", [((12, 14), (3, 3)), ((8, 8, 6), (2, 2, 3))])
def test_shuffling_permutes_pixels_within_their_cells(size, cell):
    n = 400
    x = torch.arange(float(np.prod(size))).reshape(size).expand(n, 2, *size).contiguous()
    out = shuffle_pixels(x, 0.5, cell, _g())
    assert torch.equal(out[:, 0], out[:, 1])  # one permutation for every channel
    changed = []
    for i in range(n):  # the slow way: cell by cell
        for corner in np.ndindex(*(s // k for s, k in zip(size, cell, strict=True))):
            box = tuple(slice(c * k, (c + 1) * k) for c, k in zip(corner, cell, strict=True))
            a, b = x[(i, 0, *box)].flatten(), out[(i, 0, *box)].flatten()
            assert torch.equal(a.sort().values, b.sort().values)
            changed.append(not torch.equal(a, b))
        rest = torch.ones(size, dtype=torch.bool)
        rest[tuple(slice(0, s // k * k) for s, k in zip(size, cell, strict=True))] = False
        assert torch.equal(x[i, 0][rest], out[i, 0][rest])  # past the last whole cell: untouched
    # A sample is chosen with probability 0.5, then each of its cells with probability 0.5.
    assert np.mean(changed) == pytest.approx(0.25, abs=0.03)


def _reference_coverage(n, size, side, rng) -> float:
    """Mean covered fraction of 1-5 boxes per sample, one box and one pixel at a time."""
    total = 0.0
    for _ in range(n):
        mask = np.zeros(size, bool)
        for _ in range(rng.integers(1, 6)):
            sides = rng.uniform(*side, len(size)) * np.array(size)
            starts = rng.uniform(0, 1, len(size)) * (np.array(size) - sides)
            for idx in np.ndindex(*size):
                centre = np.array(idx) + 0.5
                if ((centre >= starts) & (centre < starts + sides)).all():
                    mask[idx] = True
        total += mask.mean()
    return total / n


@pytest.mark.parametrize("side", [(1 / 6, 1 / 3), (3 / 7, 4 / 7)])
def test_boxes_cover_what_their_reference_covers(side):
    size = (12, 10)
    masks = box_masks(4000, size, side, _g(), "cpu")[:, 0]
    assert bool(masks.flatten(1).any(1).all())  # at least one box per sample
    ref = _reference_coverage(600, size, side, np.random.default_rng(0))
    assert float(masks.float().mean()) == pytest.approx(ref, abs=0.015)
    # Along an axis a box is at least its shortest side long (rounded to pixel centres).
    extent = masks.any(2).sum(1)
    assert int(extent.min()) >= int(side[0] * size[0])


def test_painting_rates_and_noise():
    n, size = 3000, (16, 16)
    x = torch.full((n, 1, *size), -1.0)  # below the noise's range: painted pixels show
    out = paint(x, 0.9, 0.2, _g())
    painted = out >= 0
    assert float(painted.flatten(1).any(1).float().mean()) == pytest.approx(0.9, abs=0.02)
    assert float(out[painted].max()) < 1 and float(out[painted].mean()) == pytest.approx(
        0.5, abs=0.01
    )
    inner = float(paint(x, 1.0, 1.0, _g(1)).ge(0).float().mean())
    outer = float(paint(x, 1.0, 0.0, _g(2)).ge(0).float().mean())
    # In-painting noises the boxes; out-painting everything but the (larger) boxes.
    rng = np.random.default_rng(1)
    assert inner == pytest.approx(_reference_coverage(300, size, (1 / 6, 1 / 3), rng), abs=0.02)
    assert outer == pytest.approx(1 - _reference_coverage(300, size, (3 / 7, 4 / 7), rng), abs=0.02)


@pytest.mark.parametrize("shape", [(6, 1, 20, 18), (3, 2, 12, 12, 10)])
def test_corruption_is_seeded_and_keeps_each_sample_in_its_range(shape):
    x = torch.randn(shape) * torch.arange(1, shape[0] + 1).reshape(-1, *(1,) * (len(shape) - 1))
    corrupt = GenesisCorruption()
    a, b = corrupt(x, _g(3)), corrupt(x, _g(3))
    assert torch.equal(a, b) and not torch.equal(a, corrupt(x, _g(4)))
    assert a.shape == x.shape and a.dtype == x.dtype
    lo, hi = x.flatten(1).min(1).values, x.flatten(1).max(1).values
    assert bool((a.flatten(1).min(1).values >= lo - 1e-4).all())
    assert bool((a.flatten(1).max(1).values <= hi + 1e-4).all())


def test_settings_out_of_range_are_named():
    with pytest.raises(MedContrastError, match=r"method\.paint_prob"):
        GenesisCorruption(paint_prob=1.5)
    with pytest.raises(MedContrastError, match=r"method\.shuffle_cell"):
        GenesisCorruption(shuffle_cell=0)
