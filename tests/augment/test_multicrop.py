"""Multi-crop's local crops: shapes, sources, box sizes and seeding."""

from __future__ import annotations

import pytest
import torch

from medcontrast.augment.multicrop import LocalCrops
from medcontrast.errors import MedContrastError


@pytest.mark.parametrize("size", [(32, 24), (16, 16, 12)])
def test_shapes_and_sources(size):
    crops = LocalCrops(3, 0.5, (0.3, 0.6))
    b = 4
    v1, v2 = torch.zeros(b, 2, *size), torch.ones(b, 2, *size)
    out = crops(v1, v2, torch.Generator().manual_seed(0))
    assert out.shape == (3 * b, 2, *crops.size_of(size))
    assert crops.size_of(size) == tuple(round(s / 2) for s in size)
    # Crop j of every sample comes from view j % 2 (rows j * B .. j * B + B - 1).
    per_crop = out.reshape(3, b, -1)
    for j in range(3):
        torch.testing.assert_close(per_crop[j], torch.full_like(per_crop[j], j % 2))


def test_box_sides_follow_their_distribution_and_stay_inside():
    lo, hi, n = 0.3, 0.7, 2000
    crops = LocalCrops(1, 0.5, (lo, hi))
    ramp = torch.linspace(0, 1, 64)  # the value is the position along the last axis
    view = ramp.expand(n, 1, 8, 64).contiguous()
    out = crops(view, view, torch.Generator().manual_seed(1))[:, 0, 0]  # (n, 32)
    # Output pixel centres span 31/32 of the box (2 * side * 31/32 in normalised units), and the
    # ramp rises 32/63 per normalised unit: the value spread is side * 62/63.
    side = (out[:, -1] - out[:, 0]) * 63 / 62
    assert float(side.min()) >= lo - 0.02 and float(side.max()) <= hi + 0.02
    assert float(side.mean()) == pytest.approx((lo + hi) / 2, abs=0.01)
    assert float(out.min()) >= 0 and float(out.max()) <= 1  # inside the view, never padded
    # The box position is uniform over where it fits: its centre's mean is the view's centre.
    assert float(((out[:, 0] + out[:, -1]) / 2).mean()) == pytest.approx(0.5, abs=0.01)


def test_same_generator_same_crops_and_bad_settings():
    crops = LocalCrops(2, 0.5, (0.3, 0.6))
    x = torch.rand(3, 1, 16, 16)
    a = crops(x, x.flip(-1), torch.Generator().manual_seed(5))
    b = crops(x, x.flip(-1), torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    with pytest.raises(MedContrastError, match=r"method\.local_scale"):
        LocalCrops(2, 0.5, (0.6, 0.3))
    with pytest.raises(MedContrastError, match=r"method\.local_size"):
        LocalCrops(2, 0.0, (0.3, 0.6))
    with pytest.raises(MedContrastError, match=r"method\.local_crops"):
        LocalCrops(-1, 0.5, (0.3, 0.6))
