"""Runs that did not learn are flagged, the report says so, and nothing crashes on them."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd

from medcontrast.evaluate import report as write_report
from medcontrast.evaluation.degenerate import (
    failed_runs,
    feature_problem,
    prediction_problems,
)
from medcontrast.evaluation.feature_figures import feature_figures
from medcontrast.evaluation.folder import EMBEDDINGS, RESULTS, RETRIEVAL
from tests.evaluation.constructed import write_folder


def test_constant_and_saturated_predictions_are_named():
    rng = np.random.default_rng(0)
    varied = rng.dirichlet([1, 1], 50)
    assert prediction_problems(varied, "test") == []
    assert prediction_problems(np.tile([[0.0, 1.0]], (50, 1)), "test") == [
        "constant predictions on test"
    ]
    saturated = np.eye(2)[rng.integers(0, 2, 50)]  # 0 or 1 for every image, both classes
    assert prediction_problems(saturated, "val") == ["saturated predictions on val"]
    confident = saturated * 0.998 + 0.001  # sure, but not at the float limit: a trained net
    assert prediction_problems(confident, "val") == []
    assert prediction_problems(varied[:1], "test") == []  # one image says nothing


def test_features_without_variance_are_named():
    assert feature_problem(np.random.default_rng(0).normal(size=(20, 8))) is None
    assert "without variance" in feature_problem(np.full((20, 8), 0.25))
    assert "without variance" in feature_problem(np.zeros((20, 8)))


def _flag(folder, init, budget, note):
    table = pd.read_csv(folder / RESULTS, dtype={"note": str})
    rows = (table["init"] == init) & (table["budget"] == budget) & (table["metric"] == "seconds")
    table.loc[rows & (table["seed"] < 2), "note"] = note
    table.to_csv(folder / RESULTS, index=False)


def test_a_baseline_that_failed_to_learn_gets_no_saving_and_the_report_is_written(tmp_path):
    curves = {
        ("ssl", "finetune"): {10: 0.90, 20: 0.92, 40: 0.94},
        ("random", "finetune"): {10: 0.50, 20: 0.80, 40: 0.90},
    }
    folder = write_folder(tmp_path / "e", curves)
    _flag(
        folder,
        "random",
        "10-shot",
        "best step 40 of 60 (lpft, lr 0.001); constant predictions on test",
    )
    assert failed_runs(pd.read_csv(folder / RESULTS), ("random", "finetune", "10-shot")) == (2, 5)
    head = write_report(folder)
    assert not head.saved  # no labels-saved figure against a broken baseline
    assert any("failed to learn at 10-shot" in line for line in head.lines)
    first = head.comparisons[0]
    assert first.baseline_failed == (2, 5) and first.verdict.startswith("no verdict")
    report = (folder / "report.md").read_text()
    assert "failed to learn in 2 of 5 runs" in report and (folder / "report.html").exists()
    assert "constant predictions on test" in report  # listed among the notes


def test_an_interval_reaching_no_saving_prints_no_multiplier(tmp_path):
    curves = {
        ("ssl", "finetune"): {10: 0.84, 20: 0.86, 40: 0.88},
        ("random", "finetune"): {10: 0.83, 20: 0.855, 40: 0.90},
    }
    head = write_report(write_folder(tmp_path / "e", curves, spread=0.05))
    (saved,) = head.saved
    assert saved.interval_allows_none
    text = saved.sentence()
    assert text.startswith("no measurable saving") and "x" not in text.split("(95% CI")[0][-8:]
    assert "x the labels" not in text and "x as many" not in text


def test_embedding_figures_skip_features_that_do_not_vary(tmp_path, capsys):
    """The input that crashed t-SNE (a random encoder's all-zero features) is left out with a
    note; the other encoder is still drawn, and with none left nothing is drawn."""
    rng = np.random.default_rng(0)
    n = 40
    y, images = np.arange(n) % 2, rng.random((n, 1, 8, 8)).astype(np.float32)
    split = {"train": np.arange(20), "val": np.arange(20, 24), "test": np.arange(24, n)}
    feats = {"ssl": rng.normal(size=(n, 6)), "random": np.zeros((n, 6))}
    inits = [
        SimpleNamespace(name="ssl", kind="pretrained"),
        SimpleNamespace(name="random", kind="random"),
    ]
    feature_figures(lambda i: feats[i.name], images, y, split, ["a", "b"], inits, tmp_path, True, 2)
    assert (tmp_path / EMBEDDINGS).exists() and (tmp_path / RETRIEVAL).exists()
    assert "random left out of the embedding and retrieval figures" in capsys.readouterr().out
    alone = tmp_path / "alone"
    alone.mkdir()
    feature_figures(lambda i: feats["random"], images, y, split, ["a", "b"], inits[1:], alone)
    assert not (alone / EMBEDDINGS).exists() and not (alone / RETRIEVAL).exists()
