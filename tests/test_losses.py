"""Losses against slow, obviously-correct references and closed-form values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from medcontrast.losses import byol_loss, dino_loss, moco_infonce, nt_xent, supcon, vicreg_loss
from medcontrast.methods.dino import updated_center


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


def slow_vicreg(z1, z2, weights=(25.0, 25.0, 1.0), eps=1e-4):
    """Loops over samples and dimension pairs, in float64."""
    z1, z2 = z1.double(), z2.double()
    n, d = z1.shape
    inv = sum(float(z1[i, k] - z2[i, k]) ** 2 for i in range(n) for k in range(d)) / (n * d)
    var = cov = 0.0
    for z in (z1, z2):
        mean = [sum(float(z[i, k]) for i in range(n)) / n for k in range(d)]
        c = [
            [
                sum((float(z[i, a]) - mean[a]) * (float(z[i, b]) - mean[b]) for i in range(n))
                / (n - 1)
                for b in range(d)
            ]
            for a in range(d)
        ]
        var += sum(max(0.0, 1 - math.sqrt(c[k][k] + eps)) for k in range(d)) / d / 2
        cov += sum(c[a][b] ** 2 for a in range(d) for b in range(d) if a != b) / d
    return weights[0] * inv + weights[1] * var + weights[2] * cov, (inv, var, cov)


@pytest.mark.parametrize("scale", [0.1, 1.0, 3.0])  # below and above the variance hinge
def test_vicreg_matches_reference(scale):
    g = torch.Generator().manual_seed(5)
    z1 = scale * torch.randn(10, 6, generator=g)
    z2 = z1 + 0.3 * torch.randn(10, 6, generator=g)
    loss, terms = vicreg_loss(z1, z2, gather=False)
    want, (inv, var, cov) = slow_vicreg(z1, z2)
    assert float(loss) == pytest.approx(want, rel=1e-5)
    got = [float(terms[k]) for k in ("invariance", "variance", "covariance")]
    assert got == pytest.approx([inv, var, cov], rel=1e-5, abs=1e-7)
    weighted, _ = vicreg_loss(z1, z2, 1.0, 2.0, 3.0, gather=False)
    assert float(weighted) == pytest.approx(inv + 2 * var + 3 * cov, rel=1e-5)


def test_vicreg_closed_forms():
    # Identical views of decorrelated unit-variance dimensions: every term 0 (up to eps).
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]]) * math.sqrt(3 / 4)
    loss, terms = vicreg_loss(z, z, gather=False)
    assert float(terms["invariance"]) == 0 and float(terms["covariance"]) == pytest.approx(0)
    assert float(loss) == pytest.approx(0.0, abs=1e-3)
    # A collapsed batch: the variance term is its largest, 1 per view (weights 25 -> 25).
    _, collapsed = vicreg_loss(torch.ones(4, 3), torch.ones(4, 3), gather=False)
    assert float(collapsed["variance"]) == pytest.approx(1 - math.sqrt(1e-4), rel=1e-6)


def slow_dino(student, teacher, center, ts, tt):
    """Loops over teacher crop, student crop and sample, in float64 (the paper's pseudo-code)."""
    total, pairs = 0.0, 0
    for g in range(teacher.shape[0]):
        for v in range(student.shape[0]):
            if v == g:
                continue
            for i in range(student.shape[1]):
                q = torch.softmax((teacher[g, i].double() - center.double()) / tt, 0)
                log_p = torch.log_softmax(student[v, i].double() / ts, 0)
                total += float(-(q * log_p).sum()) / student.shape[1]
            pairs += 1
    return total / pairs


@pytest.mark.parametrize("crops", [2, 5])  # two global only; two global and three local
def test_dino_loss_matches_reference(crops):
    g = torch.Generator().manual_seed(6)
    student = torch.randn(crops, 7, 12, generator=g)
    teacher, center = torch.randn(2, 7, 12, generator=g), 0.1 * torch.randn(12, generator=g)
    got = float(dino_loss(student, teacher, center, 0.1, 0.04))
    assert got == pytest.approx(slow_dino(student, teacher, center, 0.1, 0.04), rel=1e-5)


def test_dino_centre_update_matches_reference():
    g = torch.Generator().manual_seed(7)
    center, teacher = torch.randn(5, generator=g), torch.randn(2, 3, 5, generator=g)
    want = [
        0.9 * float(center[k])
        + 0.1 * sum(float(teacher[a, i, k]) for a in range(2) for i in range(3)) / 6
        for k in range(5)
    ]
    assert updated_center(center, teacher, 0.9).tolist() == pytest.approx(want, rel=1e-6)
    # Centring makes the teacher's target ignore a shift that every sample shares.
    student = torch.randn(4, 3, 5, generator=g)
    shift = torch.randn(5, generator=g)
    a = dino_loss(student, teacher, center, 0.1, 0.05)
    b = dino_loss(student, teacher + shift, center + shift, 0.1, 0.05)
    assert float(a) == pytest.approx(float(b), rel=1e-5)
