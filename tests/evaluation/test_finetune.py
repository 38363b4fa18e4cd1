"""Fine-tuning in both modes: the LP-FT probe stage, learning rates, early stopping."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from medcontrast.config import EvaluateConfig, load_config
from medcontrast.evaluation.degenerate import prediction_problems
from medcontrast.evaluation.finetune import (
    FinetuneConfig,
    _Classifier,
    _optimizer,
    _predict,
    _probe_head,
    finetune,
)
from medcontrast.evaluation.finetune_pool import NOT_CONVERGED, run_notes
from medcontrast.evaluation.probes import extract_features, linear_probe
from medcontrast.evaluation.weights_kept import EarlyStop, mix, weight_ensemble
from medcontrast.models.encoders import build_encoder
from tests.evaluation.constructed import phantom_images

SIZE = 16
GRID = (0.01, 0.1, 1.0, 10.0)  # finetune()'s default probe C grid


def _data(n: int, n_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 1, 16, 16) whose brightness pattern depends on the class."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_classes
    x = rng.normal(0, 1, (n, 1, SIZE, SIZE)).astype(np.float32)
    for c in range(n_classes):
        x[y == c, :, c * 4 : c * 4 + 4] += 2.0
    return x, y


def _make(seed: int):
    torch.manual_seed(seed)
    return build_encoder("timm:resnet18", 2, 1, [SIZE, SIZE])


@pytest.mark.parametrize("n_classes", [2, 3])
def test_probe_stage_leaves_the_encoder_untouched_and_equals_the_linear_probe(n_classes):
    tx, ty = _data(24, n_classes, 0)
    vx, vy = _data(18, n_classes, 1)
    model = _Classifier(_make(0), n_classes)
    before = {k: v.clone() for k, v in model.encoder.state_dict().items()}
    # The probe stage as finetune() runs it: frozen features, then the head fitted to them.
    f_train, f_val = (extract_features(model.encoder, a, torch.device("cpu")) for a in (tx, vx))
    c, probe_val = _probe_head(model.head, f_train, f_val, ty, vy, GRID, "auroc")
    after = model.encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN statistics included
    # The head now gives the linear probe's probabilities on the same frozen features.
    expected, info = linear_probe(f_train, ty, f_val, vy, f_val, n_classes, list(GRID))
    assert info["C"] == c
    got = _predict(model, vx, torch.device("cpu"), None)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    np.testing.assert_allclose(probe_val, expected, atol=1e-6)


def test_features_given_by_the_caller_give_the_same_run():
    """An evaluation hands LP-FT the pretrained encoder's features it extracted once; the run
    must be the one that extracts them itself."""
    tx, ty = _data(24, 2, 0)
    vx, vy = _data(18, 2, 1)
    sx, _ = _data(10, 2, 2)
    settings = FinetuneConfig(mode="lpft", steps=4, eval_every=2, batch_size=8, lr_factors=[1.0])
    cpu = torch.device("cpu")
    enc = _make(0)
    # batch norm re-estimated on the training images (the default unlabelled set), as finetune does
    feats = tuple(extract_features(enc, a, cpu, norm_images=tx) for a in (tx, vx))
    own, info = finetune(_make, tx, ty, vx, vy, sx, 2, settings, None, cpu, 0)
    given, info_given = finetune(_make, tx, ty, vx, vy, sx, 2, settings, None, cpu, 0, None, feats)
    np.testing.assert_allclose(given, own, atol=1e-6)
    assert (info["C"], info["best_step"]) == (info_given["C"], info_given["best_step"])


@pytest.mark.parametrize("layer_decay", [1.0, 0.5])
@pytest.mark.parametrize("encoder", ["timm:resnet18", "monai:resnet10"])
def test_the_encoder_learns_slower_than_the_head(encoder, layer_decay):
    ndim = 2 if encoder.startswith("timm") else 3
    model = _Classifier(build_encoder(encoder, ndim, 1, [SIZE] * ndim), 2)
    settings = FinetuneConfig(head_lr_mult=10.0, layer_decay=layer_decay)
    opt = _optimizer(model, settings, 1e-4)
    head = {id(p) for p in model.head.parameters()}
    lrs = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert len(lrs) == len(list(model.parameters()))  # every parameter once
    assert all(lrs[h] == pytest.approx(1e-3) for h in head)
    encoder_lrs = [lr for k, lr in lrs.items() if k not in head]
    assert max(encoder_lrs) == pytest.approx(1e-4)
    if layer_decay < 1:  # the stem learns slowest
        stem = next(model.encoder.backbone.parameters())
        assert lrs[id(stem)] == pytest.approx(min(encoder_lrs)) and min(encoder_lrs) < 1e-4 / 4


def test_early_stopping_restores_the_best_check():
    model = torch.nn.Linear(2, 1)
    stop = EarlyStop(patience=2)
    states = {}
    for epoch, score in enumerate([0.5, 0.9, 0.6, 0.7, 0.95]):
        with torch.no_grad():
            model.weight.fill_(epoch)
        states[epoch] = model.weight.clone()
        if stop.update(score, epoch, model):
            break
    assert epoch == 3 and stop.best_step == 1  # two checks without a gain after the best
    stop.restore(model)
    assert torch.equal(model.weight, states[1])


def test_lpft_keeps_the_probe_when_fine_tuning_only_harms():
    """A learning rate that wrecks the network: early stopping must return the probe (step 0),
    whose test predictions are the linear probe's."""
    tx, ty = _data(24, 2, 0)
    vx, vy = _data(30, 2, 1)
    sx, _ = _data(20, 2, 2)
    settings = FinetuneConfig(
        mode="lpft", steps=4, eval_every=2, patience=2, lr=50.0, batch_size=8, lr_factors=[1.0]
    )
    prob, info = finetune(_make, tx, ty, vx, vy, sx, 2, settings, None, torch.device("cpu"), 0)
    assert info["best_step"] == 0 and info["converged"]
    enc = _make(0)
    f = [extract_features(enc, a, torch.device("cpu"), norm_images=tx) for a in (tx, vx, sx)]
    expected, _ = linear_probe(f[0], ty, f[1], vy, f[2], 2, list(GRID))
    np.testing.assert_allclose(prob, expected, atol=1e-4)


@pytest.mark.parametrize("mode", ["plain", "lpft"])
def test_both_modes_learn_a_separable_task(mode):
    tx, ty = _data(32, 2, 0)
    vx, vy = _data(32, 2, 1)
    sx, sy = _data(32, 2, 2)
    settings = FinetuneConfig(mode=mode, steps=6, eval_every=2, batch_size=16, lr_factors=[1.0])
    said = []  # what the progress bar is told after each validation check
    prob, info = finetune(
        _make, tx, ty, vx, vy, sx, 2, settings, None, torch.device("cpu"), 0,
        on_progress=lambda share, name, score: said.append((share, name, score)),
    )  # fmt: skip
    assert [round(d, 3) for d, _, _ in said] == [0.333, 0.667, 1.0]
    assert all(n == f"{mode} lr 0.001" and 0 <= s <= 1 for _, n, s in said)
    assert prob.shape == (32, 2) and np.allclose(prob.sum(1), 1, atol=1e-5)
    assert ((prob.argmax(1) == sy).mean()) > 0.8
    assert ("C" in info) == (mode == "lpft")


def _net() -> torch.nn.Module:
    return torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.BatchNorm1d(3))


def _stop_at(net: torch.nn.Module, value: float, score: float) -> EarlyStop:
    """An early stop whose best state has every float tensor at ``value``."""
    with torch.no_grad():
        for t in net.state_dict().values():
            t.fill_(value) if t.is_floating_point() else t.fill_(int(value * 10))
    stop = EarlyStop(1)
    stop.update(score, 0, net)
    return stop


def test_mix_is_the_straight_line_between_the_weights():
    net = _net()
    start, end = _stop_at(net, 0.0, 0).best_state, _stop_at(net, 2.0, 0).best_state
    for alpha, expected in ((0.0, 0.0), (0.25, 0.5), (1.0, 2.0)):
        mixed = mix(start, end, alpha)
        assert all(
            torch.allclose(v, torch.full_like(v, expected))
            for v in mixed.values()
            if v.is_floating_point()
        )
        assert mixed["1.num_batches_tracked"] == end["1.num_batches_tracked"]  # end's count


@pytest.mark.parametrize(
    ("probe_score", "tuned_score", "expected"),
    [(0.5, 0.6, 0.25), (0.5, 0.95, 1.0), (0.95, 0.6, 0.0)],
)
def test_wise_ft_keeps_the_mixture_best_on_validation(probe_score, tuned_score, expected):
    """Validation score peaks at weights 0.5 (a = 0.25 between 0 and 2, 0.9): a mixture is kept
    only where it beats both ends, and the model holds the chosen weights."""
    net = _net()
    probe, tuned = _stop_at(net, 0.0, probe_score), _stop_at(net, 2.0, tuned_score)

    def score() -> float:
        return 0.9 - abs(float(net[0].weight.detach()[0, 0]) - 0.5)

    alpha, got = weight_ensemble(net, probe, tuned, [0.0, 0.25, 0.5, 0.75, 1.0], score)
    assert alpha == expected
    assert got == pytest.approx(max(probe_score, tuned_score, 0.9))
    assert float(net[0].weight.detach()[0, 0]) == pytest.approx(2.0 * expected)


def test_finetune_with_wise_ft_says_which_mixture_it_kept():
    tx, ty = _data(24, 2, 0)
    vx, vy = _data(18, 2, 1)
    settings = FinetuneConfig(
        mode="lpft", steps=4, eval_every=2, batch_size=8, lr_factors=[1.0], wise_alphas=(0.5,)
    )
    cpu = torch.device("cpu")
    _, info = finetune(_make, tx, ty, vx, vy, tx, 2, settings, None, cpu, 0)
    assert info["alpha"] in (0.0, 0.5, 1.0)
    # Without a validation split there is nothing to choose on: no mixture.
    empty = np.zeros((0, 1, SIZE, SIZE), np.float32)
    _, info = finetune(_make, tx, ty, empty, ty[:0], tx, 2, settings, None, cpu, 0)
    assert "alpha" not in info


def test_images_held_on_the_device_fine_tune_as_those_read_from_the_cache(monkeypatch):
    """On a GPU the training and validation images are held there as float16 (``held``); the
    same run with them held (forced here, on the CPU) gives the same predictions."""
    tx, ty = _data(24, 2, 0)
    vx, vy = _data(18, 2, 1)
    tx, vx = tx.astype(np.float16), vx.astype(np.float16)  # as the cache holds them
    settings = FinetuneConfig(steps=4, eval_every=2, batch_size=8, lr_factors=[1.0])
    cpu = torch.device("cpu")
    plain, plain_info = finetune(_make, tx, ty, vx, vy, tx, 2, settings, None, cpu, 0)
    taken = []

    def held(array, device, share=0.25):
        taken.append(len(array))
        return torch.from_numpy(np.array(array, dtype=np.float16)).to(device)

    monkeypatch.setattr("medcontrast.evaluation.finetune.held", held)
    kept, kept_info = finetune(_make, tx, ty, vx, vy, tx, 2, settings, None, cpu, 0)
    assert taken == [24, 18, 24]  # training, validation and the unlabelled (batch norm) images
    np.testing.assert_array_equal(plain, kept)
    np.testing.assert_array_equal(plain_info["val_prob"], kept_info["val_prob"])


def test_every_candidate_is_tried_and_the_best_on_validation_kept():
    tx, ty = _data(24, 2, 0)
    vx, vy = _data(18, 2, 1)
    settings = FinetuneConfig(steps=4, eval_every=2, batch_size=8, lr_factors=[1.0, 3.0])
    assert settings.candidates() == [
        ("lpft", 1e-3), ("lpft", pytest.approx(3e-3)), ("plain", 1e-3), ("plain", pytest.approx(3e-3))
    ]  # fmt: skip
    said = []
    _, info = finetune(
        _make, tx, ty, vx, vy, tx, 2, settings, None, torch.device("cpu"), 0,
        on_progress=lambda share, name, score: said.append((share, name)),
    )  # fmt: skip
    names = ["lpft lr 0.001", "lpft lr 0.003", "plain lr 0.001", "plain lr 0.003"]
    assert [n for _, n in said] == [n for n in names for _ in range(2)]  # two checks each
    assert [s for s, _ in said] == sorted(s for s, _ in said) and said[-1][0] == 1.0
    scores = [float(c.split(": ")[1]) for c in info["candidates"]]
    assert [c.split(": ")[0] for c in info["candidates"]] == names
    chosen = scores.index(max(scores))  # the first of the best on a tie
    assert f"{info['mode']} lr {info['lr']:g}" == names[chosen]
    assert info["val_score"] == pytest.approx(max(scores), abs=1e-4)


def test_a_run_whose_best_step_is_its_last_is_marked():
    """Without a validation split every check is better than the one before: the best step is
    the last one the budget allows, which is what 'may not have converged' means."""
    tx, ty = _data(16, 2, 0)
    empty = np.zeros((0, 1, SIZE, SIZE), np.float32)
    settings = FinetuneConfig(mode="plain", steps=4, eval_every=2, batch_size=8, lr_factors=[1.0])
    _, info = finetune(_make, tx, ty, empty, ty[:0], tx, 2, settings, None, torch.device("cpu"), 0)
    assert (info["best_step"], info["last_step"], info["converged"]) == (4, 4, False)
    notes = run_notes(info)
    assert notes[0] == "best step 4 of 4 (plain, lr 0.001)" and NOT_CONVERGED in notes


@pytest.mark.parametrize("seed", [0, 1])
def test_a_random_network_probe_head_explodes_only_with_stored_statistics(seed):
    """The cause of the failed baselines: LP-FT's probe on a random network's eval-mode
    features (batch norm at mean 0, variance 1) needs large weights, and once fine-tuning puts
    batch norm in train mode the logits explode (measured: 235 and 3,629 at seeds 0 and 1).
    With statistics taken from the images they stay moderate (12 and 6). Phantom radiographs,
    a random timm:regnetx_002 (the demo's encoder)."""
    x, y = phantom_images(64, 32)
    cpu, largest = torch.device("cpu"), {}
    for fitted in (False, True):
        torch.manual_seed(seed)
        model = _Classifier(build_encoder("timm:regnetx_002", 2, 1, [32, 32]), 2)
        f = extract_features(model.encoder, x, cpu, norm_images=x if fitted else None)
        _probe_head(model.head, f[:48], f[48:], y[:48], y[48:], GRID, "auroc")
        with torch.no_grad():
            largest[fitted] = model.train()(torch.from_numpy(x[:32])).abs().max().item()
    assert largest[True] < 50 and largest[False] > 10 * largest[True]


@pytest.mark.parametrize("mode", ["plain", "lpft"])
def test_a_random_network_learns_phantom_consolidation_within_the_demo_schedule(mode):
    """A random timm:regnetx_002 fine-tuned with the demo's shipped schedule on phantom chest
    radiographs (consolidation or not, 32 px) does clearly better than chance and its
    predictions vary: the baseline that used to stay at AUROC 0.5 learns."""
    demo = load_config(EvaluateConfig, "phantoms_2d").finetune
    settings = replace(demo, mode=mode)
    x, y = phantom_images(240, 32, seed=1)
    tr, va, te = slice(0, 80), slice(80, 120), slice(120, 240)

    def make(seed: int):
        torch.manual_seed(seed)
        return build_encoder("timm:regnetx_002", 2, 1, [32, 32])

    prob, info = finetune(
        make, x[tr], y[tr], x[va], y[va], x[te], 2, settings, None, torch.device("cpu"), 0
    )
    assert prediction_problems(prob, "test") == []
    # Chance is 0.5 (its 95% interval with 60 + 60 test images reaches about 0.6).
    assert roc_auc_score(y[te], prob[:, 1]) > 0.65, info["candidates"]
