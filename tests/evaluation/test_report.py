"""The report on constructed results whose answer is known (no model is run)."""

from __future__ import annotations

import pandas as pd
import pytest

from medcontrast.cli import main
from medcontrast.errors import MedContrastError
from medcontrast.evaluate import report as write_report
from medcontrast.evaluate import saved_report_settings
from medcontrast.evaluation.findings import build_headline
from medcontrast.evaluation.folder import EvalFolder
from medcontrast.evaluation.headline import sentence
from medcontrast.evaluation.labels_saved import AT_MOST, MATCH, MORE_THAN, crossing
from medcontrast.evaluation.scores import score_folder
from tests.evaluation.constructed import write_folder

# A frozen random encoder under a linear probe: the weak baseline the headline must not use.
WEAK = {10: 0.55, 20: 0.57, 40: 0.59, 80: 0.61}


def _headline(folder):
    f = EvalFolder.read(folder, saved_report_settings(folder))
    return build_headline(f, score_folder(f))


def test_random_needing_four_times_the_labels_reads_as_four_times(tmp_path):
    curves = {
        ("ssl", "linear"): {10: 0.80, 20: 0.85, 40: 0.90, 80: 0.92},
        ("random", "finetune"): {10: 0.70, 20: 0.75, 40: 0.80, 80: 0.85},
        ("random", "linear"): WEAK,
    }
    head = _headline(write_folder(tmp_path / "e", curves))
    (saved,) = head.saved
    assert saved.kind == MATCH and saved.ratio == pytest.approx(4.0, rel=1e-3)
    (lo, _), (hi, _) = saved.ci
    assert lo < 40 < hi
    assert "match 40 without (4.0x as many)" in saved.sentence()
    first = head.comparisons[0]
    assert first.baseline.key == ("random", "finetune", "10-shot")  # the strongest, on validation
    assert first.verdict == "saves labels" and first.diff.mean == pytest.approx(0.10, abs=1e-3)


def test_random_that_never_catches_up_is_more_than_n(tmp_path):
    curves = {
        ("ssl", "linear"): {10: 0.90, 20: 0.92, 40: 0.94},
        ("random", "finetune"): {10: 0.70, 20: 0.75, 40: 0.80},
    }
    head = _headline(write_folder(tmp_path / "e", curves))
    (saved,) = head.saved
    assert saved.kind == MORE_THAN and saved.needed == 40
    assert "more than 4.0x" in saved.sentence()
    assert saved.ci[1] == (40, MORE_THAN)


def test_pretrained_below_random_says_so(tmp_path):
    curves = {
        ("ssl", "linear"): {10: 0.60, 20: 0.65, 40: 0.70},
        ("random", "finetune"): {10: 0.80, 20: 0.85, 40: 0.90},
        ("random", "linear"): WEAK,
    }
    folder = write_folder(tmp_path / "e", curves)
    head = _headline(folder)
    assert all(c.verdict == "worse than random initialisation" for c in head.comparisons)
    (saved,) = head.saved
    assert saved.kind == AT_MOST and "no labels saved" in saved.sentence()
    write_report(folder)
    report = (folder / "report.md").read_text()
    assert "**worse than random initialisation**" in report


def test_an_interval_across_zero_is_no_measurable_gain(tmp_path):
    curves = {
        ("ssl", "linear"): {10: 0.81, 20: 0.85},
        ("random", "finetune"): {10: 0.80, 20: 0.84},
    }
    head = _headline(write_folder(tmp_path / "e", curves, spread=0.05))
    for c in head.comparisons:
        assert c.diff.ci_low < 0 < c.diff.ci_high
        assert c.verdict == "no measurable gain"


def test_missing_baseline_or_seeds_are_said_and_the_rest_is_written(tmp_path, capsys):
    alone = write_folder(tmp_path / "a", {("ssl", "linear"): {10: 0.8, 20: 0.85}})
    head = write_report(alone)
    assert not head.comparisons and "no random-initialisation runs" in head.lines[0]
    assert (alone / "report.html").exists() and (alone / "label_efficiency_auroc.png").exists()
    one = write_folder(
        tmp_path / "b",
        {("ssl", "linear"): {10: 0.8, 20: 0.85}, ("random", "finetune"): {10: 0.7, 20: 0.8}},
        seeds=(0,),
    )
    assert main(["report", str(one)]) == 0
    printed = capsys.readouterr().out
    assert "One seed only" in printed and "Labels saved" in printed


def test_crossing_interpolates_in_log_labels_and_never_extrapolates():
    x = [10.0, 100.0]
    assert crossing(x, [0.5, 0.7], 0.6) == (pytest.approx(10**1.5), MATCH)
    assert crossing(x, [0.5, 0.7], 0.8) == (100.0, MORE_THAN)
    assert crossing(x, [0.5, 0.7], 0.4) == (10.0, AT_MOST)


def test_budgets_where_random_was_not_fine_tuned_are_not_read(tmp_path):
    curves = {
        ("ssl", "linear"): {10: 0.85, 20: 0.88, 40: 0.90},
        ("random", "finetune"): {10: 0.70, 20: 0.80},  # finetune.budgets left 40 out
        ("random", "linear"): {10: 0.60, 20: 0.62, 40: 0.95},
    }
    head = _headline(write_folder(tmp_path / "e", curves))
    (saved,) = head.saved
    assert (saved.needed, saved.kind) == (20, MORE_THAN)
    assert any(
        line.startswith("At 40-shot random initialisation did not run") for line in head.lines
    )


def test_the_report_follows_an_edited_threshold_rule_without_rerunning(tmp_path):
    folder = write_folder(
        tmp_path / "e",
        {("ssl", "linear"): {10: 0.8, 20: 0.85}, ("random", "finetune"): {10: 0.7, 20: 0.8}},
    )
    write_report(folder)
    youden = pd.read_csv(folder / "summary.csv")
    assert youden["threshold_mean"].notna().all()
    config = folder / "config.yaml"
    config.write_text(config.read_text().replace("threshold: youden", "threshold: argmax"))
    write_report(folder)
    assert pd.read_csv(folder / "summary.csv")["threshold_mean"].isna().all()
    config.write_text(config.read_text().replace("positive_class: ''", "positive_class: tumour"))
    with pytest.raises(MedContrastError, match="positive_class 'tumour' is not a label"):
        write_report(folder)


def test_a_frozen_probe_that_beats_fine_tuning_is_the_baseline_and_is_named_so(tmp_path):
    curves = {
        ("ssl", "linear"): {10: 0.80, 20: 0.85},
        ("random", "finetune"): {10: 0.60, 20: 0.65},
        ("random", "linear"): {10: 0.70, 20: 0.75},  # stronger on validation: the honest baseline
    }
    head = _headline(write_folder(tmp_path / "e", curves))
    first = head.comparisons[0]
    assert first.baseline.key == ("random", "linear", "10-shot")
    assert "random, linear probe, which beat fine-tuning on validation" in sentence(first, "AUROC")
