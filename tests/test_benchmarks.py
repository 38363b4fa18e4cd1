"""Each benchmark script runs on a tiny setting (timings are never asserted here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import shared_data

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _run(tmp_path, script, *args, env_extra=None):
    env = {**os.environ, "MEDCONTRAST_BENCH_RESULTS": str(tmp_path), **(env_extra or {})}
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        cwd=BENCH,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    name = script.removeprefix("bench_").removesuffix(".py")
    lines = (tmp_path / f"{name}.jsonl").read_text().splitlines()
    entry = json.loads(lines[-1])
    assert entry["rows"] and entry["hardware"]["torch"]
    return entry


def test_loss(tmp_path):
    entry = _run(tmp_path, "bench_loss.py", "--device", "cpu", "--batch", "32", "--reps", "2")
    values = {r["loss"]: r["value"] for r in entry["rows"]}
    assert values["medcontrast"] == pytest.approx(values["monai"], rel=1e-4)


def test_views(tmp_path):
    _run(
        tmp_path,
        "bench_views.py",
        "--device",
        "cpu",
        "--size2d",
        "32",
        "--size3d",
        "16",
        "--samples",
        "16",
        "--batch2d",
        "8",
        "--batch3d",
        "2",
    )


def test_throughput(tmp_path):
    entry = _run(
        tmp_path,
        "bench_throughput.py",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--steps",
        "10",
        "--batch",
        "4",
        "--workloads",
        "2d-64",
    )
    assert entry["rows"][0]["pipeline_efficiency"] > 0


def test_lightly(tmp_path):
    pytest.importorskip("lightly.transforms")
    _run(
        tmp_path,
        "bench_lightly.py",
        "--device",
        "cpu",
        "--workers",
        "0",
        "--sizes",
        "32",
        "--batch",
        "4",
        "--steps",
        "7",
    )


def test_label_efficiency(tmp_path):
    data = shared_data("medmnist", "adrenalmnist3d.npz").parents[1]
    entry = _run(
        tmp_path,
        "bench_label_efficiency.py",
        "adrenalmnist3d",
        "--data",
        str(data),
        "--work",
        str(tmp_path / "work"),
        "--pretrain",
        "train.max_steps=2",
        "train.batch_size=8",
        "train.num_workers=0",
        "data.size=[16,16,16]",
        "model.encoder=monai:resnet10",
        "model.stem_stride=2",
        "--evaluate",
        "budgets.seeds=[0]",
        "budgets.fractions=[0.1]",
        "protocols=[linear]",
        "data.size=[16,16,16]",
        "embedding_plot=false",
    )
    assert entry["dataset"] == "adrenalmnist3d"


def test_resume_after_kill_under_torchrun_two_processes(tmp_path, phantom_manifest):
    """kill -9 of a 2-rank gloo run after a checkpoint, then --resume: equal to a clean run."""
    steps = 12
    entry = _run(
        tmp_path,
        "bench_resume.py",
        *("--nproc", "2", "--device", "cpu", "--encoder", "timm:resnet10t", "--size", "32"),
        *("--batch", "8", "--steps", str(steps), "--checkpoint-every", "3", "--kill-after", "3"),
        *("--manifest", str(phantom_manifest), "--work", str(tmp_path / "work")),
    )
    (row,) = entry["rows"]
    assert row["killed_at_checkpoint"] < steps  # killed mid-run, not after it ended
    assert row["passed"] and row["loss_diff_resumed"] == 0 and row["weights_diff_resumed"] == 0


@pytest.mark.slow  # about 90 s on two cores: two calls, three evaluations of 1,584 volumes
def test_proxy_reuses_pretraining_and_finished_recipes(tmp_path):
    data = shared_data("medmnist", "adrenalmnist3d.npz").parents[1]
    work = tmp_path / "work"
    small = ["data.size=[16,16,16]", "budgets.fractions=[0.1]", "budgets.seeds=[0,1]"]
    plain = ["--recipe", "plain", "finetune.mode=plain", "finetune.epochs=1", *small]
    args = [
        *("--data", str(data), "--work", str(work), "--datasets", "adrenalmnist3d"),
        *("--pretrain", "train.max_steps=2", "train.batch_size=8", "data.size=[16,16,16]"),
    ]
    _run(tmp_path, "bench_proxy.py", *args, *plain)
    results = work / "eval" / "adrenalmnist3d-plain" / "results.csv"
    first = results.read_bytes()
    lpft = ["--recipe", "lpft", "finetune.mode=lpft", "finetune.epochs=1", *small]
    entry = _run(tmp_path, "bench_proxy.py", *args, *plain, *lpft)
    assert len(list((work / "runs").iterdir())) == 1  # one pretraining for both calls
    assert results.read_bytes() == first  # the finished recipe was not run again
    rows = {(r["recipe"], r["protocol"]): r for r in entry["rows"]}
    assert set(rows) == {(r, p) for r in ("plain", "lpft") for p in ("linear", "finetune")}
    # Recipes differ only in fine-tuning: the same linear probe, paired difference exactly 0.
    assert rows[("lpft", "linear")]["minus_first_recipe"] == 0
    assert rows[("lpft", "finetune")]["seeds"] == 2


def test_proxy_summary_pairs_seeds_against_the_strongest_random_init(tmp_path):
    sys.path.insert(0, str(BENCH))
    from bench_proxy import summarise

    from medcontrast.evaluation.results_file import append_results

    values = {  # (init, protocol): AUROC at seeds 0, 1, 2
        ("pretrained", "linear"): [0.80, 0.82, 0.84],
        ("pretrained", "finetune"): [0.90, 0.91, 0.95],
        ("random", "linear"): [0.60, 0.60, 0.60],
        ("random", "finetune"): [0.85, 0.86, 0.87],
    }
    folder = tmp_path / "recipe"
    folder.mkdir()
    for (init, protocol), per_seed in values.items():
        for seed, v in enumerate(per_seed):
            base = {"init": init, "protocol": protocol, "budget": "1%", "seed": seed}
            append_results(
                folder / "results.csv",
                [
                    {**base, "metric": "auroc", "value": v},
                    {**base, "metric": "seconds", "value": 1},
                ],
            )
    rows = {r["protocol"]: r for r in summarise("d", {"a": folder})}
    ft = rows["finetune"]
    assert ft["strongest_random"].startswith("a finetune")  # not the weak frozen random probe
    assert ft["minus_strongest_random"] == pytest.approx(0.06)
    assert ft["paired_sd"] == pytest.approx(np.std([0.05, 0.05, 0.08], ddof=1))
    assert ft["over_2sd"]
    assert rows["linear"]["minus_strongest_random"] == pytest.approx(-0.04)
