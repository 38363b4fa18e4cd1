"""Losses against slow, obviously-correct references and closed-form values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medcontrast.losses import byol_loss, moco_infonce, nt_xent, supcon


def slow_nt_xent(z1, z2, t, groups=None):
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n = len(z1)
    g = None if groups is None else torch.cat([groups, groups])
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        den = 0.0
        for k in range(2 * n):
            if k == i or (g is not None and k != j and g[k] == g[i]):
                continue
            den += math.exp(float(z[i] @ z[k]) / t)
        total += -(float(z[i] @ z[j]) / t - math.log(den))
    return total / (2 * n)


@pytest.mark.parametrize("t", [0.05, 0.1, 0.5])
def test_nt_xent_matches_reference(t):
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(12, 16, generator=g), torch.randn(12, 16, generator=g)
    assert float(nt_xent(z1, z2, t)) == pytest.approx(slow_nt_xent(z1, z2, t), rel=1e-5)


def test_nt_xent_closed_forms():
    b = 8
    same = torch.ones(b, 4)
    # Every embedding identical: all 2B-1 candidates equally likely.
    assert float(nt_xent(same, same, 0.1)) == pytest.approx(math.log(2 * b - 1), rel=1e-6)
    # Orthogonal samples, identical views: loss = log(1 + (2B - 2) e^{-1/t}).
    eye = torch.eye(b)
    t = 0.5
    assert float(nt_xent(eye, eye, t)) == pytest.approx(
        math.log(1 + (2 * b - 2) * math.exp(-1 / t)), rel=1e-6
    )


def test_same_patient_negatives_are_masked():
    g = torch.Generator().manual_seed(2)
    z1, z2 = torch.randn(10, 8, generator=g), torch.randn(10, 8, generator=g)
    groups = torch.tensor([0, 0, 1, 1, 2, 3, 4, 5, 5, 5])
    got = float(nt_xent(z1, z2, 0.2, groups=groups, mask_same_group=True))
    assert got == pytest.approx(slow_nt_xent(z1, z2, 0.2, groups), rel=1e-5)
    assert got != pytest.approx(float(nt_xent(z1, z2, 0.2)))


def test_nt_xent_is_safe_in_bf16_at_low_temperature():
    g = torch.Generator().manual_seed(3)
    z1, z2 = torch.randn(64, 128, generator=g), torch.randn(64, 128, generator=g)
    full = float(nt_xent(z1, z2, 0.05))
    half = nt_xent(z1.bfloat16().requires_grad_(), z2.bfloat16(), 0.05)
    assert torch.isfinite(half)
    assert float(half) == pytest.approx(full, rel=2e-2)


def slow_supcon(z1, z2, labels, t):
    z = F.normalize(torch.stack([z1, z2], 1).reshape(-1, z1.shape[1]).double(), dim=1)
    lab = labels.repeat_interleave(2)
    total = 0.0
    for i in range(len(z)):
        den = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(len(z)) if k != i)
        pos = [k for k in range(len(z)) if k != i and lab[k] == lab[i]]
        total += -sum(float(z[i] @ z[k]) / t - math.log(den) for k in pos) / len(pos)
    return total / len(z)


def test_supcon_matches_reference():
    g = torch.Generator().manual_seed(4)
    z1, z2 = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g)
    labels = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2])
    assert float(supcon(z1, z2, labels, 0.3)) == pytest.approx(
        slow_supcon(z1, z2, labels, 0.3), rel=1e-5
    )


def test_moco_and_byol_closed_forms():
    q = torch.eye(4)
    queue = -torch.eye(4)  # every negative at cosine -1
    # Row i: positive cosine 1, negative -1 with queue row i, 0 with the three others.
    logits = torch.tensor([1.0, -1.0, 0.0, 0.0, 0.0])
    assert float(moco_infonce(q, q, queue, 1.0)) == pytest.approx(
        float(-torch.log_softmax(logits, 0)[0]), rel=1e-6
    )
    assert float(byol_loss(q, q)) == pytest.approx(0.0, abs=1e-6)
    assert float(byol_loss(q, -q)) == pytest.approx(4.0, abs=1e-6)
