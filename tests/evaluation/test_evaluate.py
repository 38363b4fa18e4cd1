"""End to end: a tiny pretrained run against random init, report files, resume, bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from medcontrast.cli import main
from medcontrast.config import EvaluateConfig, FinetuneConfig, load_config
from medcontrast.config.resolve import evaluation_name
from medcontrast.errors import MedContrastError
from medcontrast.evaluate import evaluate
from medcontrast.runs import flatten


def _eval_cfg(manifest, root, run, *extra) -> EvaluateConfig:
    return load_config(
        EvaluateConfig,
        None,
        [
            f"data.manifest={manifest}",
            "data.modalities=[CR,DX]",
            "data.size=[32,32]",
            f"data.cache_dir={root / 'cache'}",
            f"out_dir={root / 'eval'}",
            "name=e",
            f"inits=[{{name: ssl, source: '{run}'}}]",
            "protocols=[linear,knn,finetune]",
            "budgets.shots=[2]",
            "budgets.fractions=[1.0]",
            "budgets.seeds=[0,1]",
            "bootstrap=50",
            "finetune.steps=1",
            "finetune.eval_every=1",
            "finetune.lr_factors=[1.0]",
            "retrieval_queries=2",
            *extra,
        ],
    )


def test_report_and_resume(phantom_manifest, tiny_run):
    run, root = tiny_run
    folder = evaluate(_eval_cfg(phantom_manifest, root, run))  # with its progress bar
    for name in (
        "report.md",
        "report.html",
        "results.csv",
        "summary.csv",
        "config.yaml",
        "embeddings.png",
        "retrieval.png",
        "label_efficiency_auroc.png",
        "inits.json",
    ):
        assert (folder / name).exists(), name
    saved = flatten(yaml.safe_load((folder / "config.yaml").read_text()))
    assert [k for k, v in saved.items() if v == "auto" and k != "data.intensity"] == []
    assert (saved["device"], saved["finetune.precision"]) == ("cpu", "fp32")
    results = pd.read_csv(folder / "results.csv")
    assert list(results.columns) == [
        "init",
        "protocol",
        "budget",
        "budget_kind",
        "budget_value",
        "labels_used",
        "patients_used",
        "seed",
        "metric",
        "value",
        "note",
    ]
    assert set(results["init"]) == {"ssl", "random"}  # random added automatically
    # 2 inits x 3 protocols x 2 budgets x 2 seeds runs, 6 metrics + threshold + seconds each
    assert len(results) == 2 * 3 * 2 * 2 * 8
    assert (results["metric"] == "threshold").sum() == 2 * 3 * 2 * 2
    # 100% is the same subset for both seeds: the frozen probes are computed once and reused.
    full = results[(results["budget"] == "100%") & (results["protocol"] == "linear")]
    auroc = full[full["metric"] == "auroc"].sort_values("seed")
    assert auroc.groupby("init")["value"].nunique().eq(1).all()
    assert auroc[auroc["seed"] == 1]["note"].str.contains("probe reused").all()
    assert not auroc[auroc["seed"] == 0]["note"].str.contains("probe reused").any()
    summary = pd.read_csv(folder / "summary.csv")
    ssl = summary[(summary["init"] == "ssl") & (summary["metric"] == "auroc")]
    assert ssl["diff_vs_random"].notna().all() and (ssl["ci_low"] <= ssl["ci_high"]).all()
    report = (folder / "report.md").read_text()
    assert "## Headline" in report and "random initialisation" in report
    assert "- Compute: " in report and "in 24 runs (fine-tuning" in report
    assert "LP-FT" in report and "plain" in report  # the default candidates are named
    tuned = results[(results["protocol"] == "finetune") & (results["metric"] == "auroc")]
    # Each fine-tune names its chosen candidate and best step, and tried both modes.
    assert tuned["note"].str.contains(r"best step \d+ of 1 \((?:lpft|plain), lr 0.001\)").all()
    assert tuned["note"].str.contains("candidates lpft lr 0.001: .*, plain lr 0.001: ").all()
    lpft = tuned["note"].str.contains(r"\(lpft,")
    assert tuned.loc[lpft, "note"].str.contains("probe C=").all()
    # A chosen fine-tune whose best step was its only one is marked, in the report too.
    marked = tuned["note"].str.contains("may not have converged")
    assert marked.any() and "may not have converged" in report
    assert "pat-" not in report and "pat-" not in (folder / "report.html").read_text()
    html = (folder / "report.html").read_text()
    assert "data:image/png;base64," in html
    assert (folder / "predictions" / "ssl" / "linear" / "2-shot_seed0_val.npy").exists()
    # The report rebuilds from the folder alone, without rerunning anything.
    (folder / "report.md").unlink()
    assert main(["report", str(folder)]) == 0
    assert "## Headline" in (folder / "report.md").read_text()
    assert len(pd.read_csv(folder / "results.csv")) == len(results)
    # Interrupted part-way: drop the last runs, rerun the same command, nothing else recomputed.
    kept = results.iloc[: len(results) - 16]
    kept.to_csv(folder / "results.csv", index=False)
    evaluate(_eval_cfg(phantom_manifest, root, run), progress=False)
    # evaluate.log: one line per finished run, the rerun appended after the first call's
    log = (folder / "evaluate.log").read_text()
    assert "\r" not in log and "pat-" not in log
    assert log.count("=== finished") == 2 and log.count(" done: ") == 24 + 2
    assert " done: ssl finetune 100% seed 1: auroc " in log
    # the bar counted image passes (runs weighted by their cost), and the runs beside them
    (last,) = [x for x in log.splitlines() if " evaluate: 100% " in x]
    assert "img/s" in last and "24/24 runs" in last
    again = pd.read_csv(folder / "results.csv")
    assert len(again) == len(results)
    pd.testing.assert_frame_equal(again.iloc[: len(kept)], kept)
    # Narrowing the schedule (protocols, fine-tuned budgets) continues the same folder.
    narrow = ("protocols=[linear]", "finetune.budgets=[2-shot]")
    evaluate(_eval_cfg(phantom_manifest, root, run, *narrow), progress=False)
    assert len(pd.read_csv(folder / "results.csv")) == len(results)
    # A folder of the previous version (no threshold settings, four metrics, no validation
    # predictions, no labels.npz) is continued, and its report says what it lacks.
    config = yaml.safe_load((folder / "config.yaml").read_text())
    del config["threshold"], config["positive_class"]
    config["metrics"] = ["auroc", "accuracy", "balanced_accuracy", "macro_f1"]
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    for old in [*folder.glob("predictions/**/*_val.npy"), folder / "labels.npz"]:
        old.unlink()
    kept.to_csv(folder / "results.csv", index=False)
    evaluate(_eval_cfg(phantom_manifest, root, run), progress=False)
    assert len(pd.read_csv(folder / "results.csv")) == len(results)
    assert "runs have no validation predictions" in (folder / "report.md").read_text()


def test_bad_inputs_are_clear(phantom_manifest, tiny_run, tmp_path):
    run, root = tiny_run
    with pytest.raises(MedContrastError, match="other settings"):
        evaluate(_eval_cfg(phantom_manifest, root, run, "knn.k=3"), progress=False)
    unlabeled = tmp_path / "m.csv"
    t = pd.read_csv(phantom_manifest, dtype=str, keep_default_na=False)
    t["label"] = ""
    t.to_csv(unlabeled, index=False)
    (tmp_path / "m.json").write_text((phantom_manifest.with_suffix(".json")).read_text())
    with pytest.raises(MedContrastError, match="Labels come from"):
        evaluate(_eval_cfg(unlabeled, root, run, "name=u"), progress=False)
    with pytest.raises(MedContrastError, match=r"3D encoder|2D"):
        evaluate(
            _eval_cfg(
                phantom_manifest,
                root,
                run,
                "name=w",
                "data.ndim=3",
                "data.size=[16,16,16]",
                "data.modalities=[CT,MR]",
            ),
            progress=False,
        )


def test_fine_tuning_side_by_side_gives_the_same_results(phantom_manifest, tiny_run):
    """finetune.parallel=2 runs in two worker processes (one CPU thread each); with one thread
    here too (the frozen features and batch-norm statistics are sums whose order follows the
    threads), every run is the same computation, so rows and predictions must agree."""
    run, root = tiny_run
    base = ("protocols=[finetune]", "budgets.fractions=[]", "bootstrap=20")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = evaluate(_eval_cfg(phantom_manifest, root, run, *base, "name=s"), progress=False)
        side = evaluate(
            _eval_cfg(phantom_manifest, root, run, *base, "name=p", "finetune.parallel=2"),
            progress=False,
        )
    finally:
        torch.set_num_threads(threads)
    key = ["init", "budget", "seed", "metric"]
    a, b = (
        pd.read_csv(f / "results.csv").query("metric != 'seconds'").sort_values(key)
        for f in (serial, side)
    )
    assert len(a) == 2 * 2 * 7  # 2 inits x 2 seeds, 6 metrics + threshold
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))
    for p in serial.glob("predictions/**/*.npy"):
        np.testing.assert_array_equal(np.load(p), np.load(side / p.relative_to(serial)))
    timing = [json.loads(line) for line in (side / "timing.jsonl").read_text().splitlines()]
    assert timing[0]["runs"] == 4 and timing[0]["finetune_parallel"] == 2
    assert "up to 2 fine-tuning run(s) at once" in (side / "report.md").read_text()
    # The same command with another parallel count continues the same folder.
    evaluate(_eval_cfg(phantom_manifest, root, run, *base, "name=p"), progress=False)
    assert len((side / "timing.jsonl").read_text().splitlines()) == 2


def test_the_parallel_count_does_not_name_the_folder():
    one, three = EvaluateConfig(), EvaluateConfig(finetune=FinetuneConfig(parallel=3))
    assert evaluation_name(one) == evaluation_name(three)
