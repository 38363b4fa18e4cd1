"""Batch norm's statistics taken from the evaluated images: what fixed the random baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medcontrast.evaluation.degenerate import feature_problem
from medcontrast.evaluation.norm_stats import norm_rows, recalibrate_norm
from medcontrast.evaluation.probes import extract_features
from medcontrast.models.encoders import build_encoder
from tests.evaluation.constructed import phantom_images

CPU = torch.device("cpu")


@pytest.mark.parametrize("encoder", ["timm:regnetx_002", "timm:resnet18"])
def test_random_encoders_give_features_that_vary_once_their_statistics_fit(encoder):
    x, _ = phantom_images(48, 32)
    torch.manual_seed(0)
    net = build_encoder(encoder, 2, 1, [32, 32])
    stored = extract_features(net, x, CPU)
    fitted = extract_features(net, x, CPU, norm_images=x)
    assert feature_problem(fitted) is None
    assert (fitted.std(0) > 1e-6).all()  # every column varies across images
    # The stored statistics (mean 0, variance 1) left a third or more of the columns constant
    # (measured 38-48% at 32 px) and the spread across images tens of times smaller.
    assert (stored.std(0) <= 1e-6).mean() > 0.3
    assert fitted.std(0).mean() > 20 * stored.std(0).mean()


def test_statistics_are_those_of_the_images_over_every_batch():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 3, 3), torch.nn.BatchNorm2d(3), torch.nn.ReLU())
    x = np.random.default_rng(0).normal(2.0, 3.0, (12, 1, 8, 8)).astype(np.float32)
    assert recalibrate_norm(net, x, CPU, batch_size=6)  # two equal batches
    with torch.no_grad():
        a = net[0](torch.from_numpy(x))
    bn = net[1]
    torch.testing.assert_close(bn.running_mean, a.mean((0, 2, 3)), atol=1e-5, rtol=1e-5)
    halves = torch.stack([h.var((0, 2, 3)) for h in a.split(6)]).mean(0)  # per-batch, unbiased
    torch.testing.assert_close(bn.running_var, halves, atol=1e-4, rtol=1e-4)
    assert bn.momentum == 0.1 and not net.training and not bn.training


def test_nothing_changes_without_batch_norm_or_images():
    ln = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.GroupNorm(1, 2))
    assert not recalibrate_norm(ln, np.zeros((4, 1, 8, 8), np.float32), CPU)
    bn = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    assert not recalibrate_norm(bn, np.zeros((1, 1, 8, 8), np.float32), CPU)  # one image
    assert torch.equal(bn[1].running_var, torch.ones(2))
    # 5 images in batches of 2 would leave one alone: batches are balanced instead.
    assert recalibrate_norm(bn, np.random.default_rng(0).random((5, 1, 8, 8), np.float32), CPU, 2)


def test_norm_rows_are_evenly_spread_and_capped():
    assert list(norm_rows(np.arange(5), limit=10)) == [0, 1, 2, 3, 4]
    rows = norm_rows(np.arange(1000) * 2, limit=5)
    assert list(rows) == [0, 500, 1000, 1498, 1998]
