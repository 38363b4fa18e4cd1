"""Each benchmark script runs on a tiny setting (timings are never asserted here)."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

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


def _rows(entry, key):
    return {r[key]: r for r in entry["rows"]}


def test_loss_rows_fail_alone(tmp_path):
    entry = _run(tmp_path, "bench_loss.py", "--device", "cpu", "--quick", "--fail", "lightly")
    rows = entry["rows"]
    assert {r["batch"] for r in rows} == {16, 32}
    for b in (16, 32):
        at = {r["loss"]: r for r in rows if r["batch"] == b}
        assert at["lightly"]["result"] == f"OOM at batch {b}"  # failed on purpose, alone
        assert at["medcontrast"]["result"] == at["monai"]["result"] == "ok"
        assert at["medcontrast"]["value"] == pytest.approx(at["monai"]["value"], rel=1e-4)
        assert at["monai"]["slower_than_medcontrast"] > 0


@pytest.mark.slow  # about 16 s: kornia's pipeline timed beside ours
def test_views(tmp_path):
    entry = _run(tmp_path, "bench_views.py", "--device", "cpu", "--quick", "--fail", "16x16x16")
    rows = entry["rows"]
    assert [r["result"] for r in rows] == ["ok"] * 3 + ["OOM at batch 2"] * 3
    assert [r["path"] for r in rows[1:3]] == ["kornia.augmentation", "batched"]
    assert rows[2]["vs_monai"] > 0 and rows[2]["vs_kornia"] > 0
    assert rows[2]["aten_calls"] <= 100 and rows[2]["mode"] == "plain"


@pytest.mark.slow  # about 19 s
def test_view_share_times_live_memory_and_views_alone(tmp_path):
    entry = _run(tmp_path, "bench_view_share.py", "--device", "cpu", "--quick", "--compile", "off")
    rows = _rows(entry, "run")
    assert set(rows) == {"memory", "live", "views"}
    assert all(r["result"] == "ok" and r["ms_per_step"] > 0 for r in rows.values())
    live, memory = rows["live"]["ms_per_step"], rows["memory"]["ms_per_step"]
    assert rows["live"]["share_pct"] == pytest.approx(100 * (live - memory) / live)


@pytest.mark.slow  # about 45 s: three pipelines, two workloads, lightly beside
def test_throughput_steady_state_with_lightly_beside(tmp_path):
    entry = _run(
        tmp_path,
        "bench_throughput.py",
        *("--device", "cpu", "--workers", "0", "--quick", "--fail", "views in memory"),
        *("--workloads", "2d-64", "3d-96", "--on-device", "auto", "on"),
    )
    rows = {(r["workload"], r["pipeline"].split(",")[0]): r for r in entry["rows"]}
    live = rows[("2d-32", "medcontrast live")]
    assert rows[("2d-32", "medcontrast live (data.on_device=on)")]["result"] == "ok"
    assert live["result"] == "ok" and live["windows"] == 2  # one warm-up window dropped
    assert live["images_per_s"] > 0 and live["spread_pct"] >= 0
    # ResNet-18: 1.82 GMAC forward at 224^2, so (32/224)^2 * 2 * 1.82 = 0.074 GFLOP per view at
    # 32^2; two views, forward and backward (x3): about 0.45.
    assert 0.38 < live["gflop_per_image"] < 0.5 and 0 < live["peak_pct"] < 100
    assert rows[("2d-32", "medcontrast views in memory")]["result"] == "OOM at batch 4"
    assert rows[("3d-16", "medcontrast live")]["result"] == "ok"
    assert rows[("3d-16", "lightly")]["result"] == "n/a: lightly has no 3D augmentation"
    peer = rows[("2d-32", "lightly")]
    if importlib.util.find_spec("lightly") is None:
        assert peer["result"] == "not installed: lightly"
    else:
        assert peer["result"] == "ok" and live["medcontrast_vs_lightly"] > 0
    assert entry["peak"]["tflop_per_s"] > 0 and entry["peak"]["source"]


def test_resume_quick_row_fails_alone(tmp_path):
    entry = _run(tmp_path, "bench_resume.py", "--quick", "--fail", "cpu")
    assert entry["rows"][0]["result"] == "OOM"  # injected; no run was started


def test_run_gpu_script_keeps_to_its_budget(tmp_path):
    script = BENCH / "run_gpu.sh"
    env = {**os.environ, "OUT": str(tmp_path), "WHEELS": str(tmp_path / "none"), "QUICK": "1"}
    done = subprocess.run(
        ["bash", str(script), "loss", "nonsense"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "log.txt").read_text()
    assert "== exit 0" in log and "unknown part: nonsense" in log
    assert json.loads((tmp_path / "loss.jsonl").read_text())["rows"]
    spent = subprocess.run(
        ["bash", str(script), "views"],
        env={**env, "BUDGET": "5"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "skipped, the budget is spent" in spent.stdout


def _quick_on_adrenal(tmp_path, script, *args):
    """``script --quick`` on AdrenalMNIST3D from ../shared/data, working in ``tmp_path``."""
    data = shared_data("medmnist", "adrenalmnist3d.npz").parents[1]
    where = ("--data", str(data), "--work", str(tmp_path / "work"))
    return _run(tmp_path, script, *args, "--quick", *where)


@pytest.mark.slow  # about 45 s: pretraining and evaluation of the quick row
def test_label_efficiency(tmp_path):
    entry = _quick_on_adrenal(tmp_path, "bench_label_efficiency.py", "adrenalmnist3d")
    assert entry["dataset"] == "adrenalmnist3d" and entry["headline"]
    assert {(r["init"], r["result"]) for r in entry["rows"]} == {("simclr", "ok"), ("random", "ok")}


@pytest.mark.slow  # about a minute; side-by-side fine-tuning itself: tests/evaluation
def test_finetune_parallel_one_k_fails_alone(tmp_path):
    entry = _quick_on_adrenal(
        tmp_path, "bench_finetune_parallel.py", "adrenalmnist3d", "--fail", "adrenalmnist3d 1"
    )
    failed, ran = entry["rows"]
    assert (failed["parallel"], failed["result"]) == (1, "OOM")
    assert (ran["parallel"], ran["result"], ran["runs"]) == (2, "ok", 2)
    assert ran["speedup"] == 1 and ran["max_auroc_diff"] == 0  # the reference: the first that ran


@pytest.mark.slow  # about 40 s on two cores
def test_proxy_quick(tmp_path):
    entry = _quick_on_adrenal(tmp_path, "bench_proxy.py")
    (row,) = entry["rows"]
    assert row["result"] == "ok" and row["seeds"] == 2 and row["protocol"] == "linear"


@pytest.mark.slow  # about 110 s: three 2-rank torchrun launches (run_gpu.sh resume on a GPU)
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
    plain = ["--recipe", "plain", "finetune.mode=plain", "finetune.steps=4", *small]
    args = [
        *("--data", str(data), "--work", str(work), "--datasets", "adrenalmnist3d"),
        *("--pretrain", "train.max_steps=2", "train.batch_size=8", "data.size=[16,16,16]"),
    ]
    _run(tmp_path, "bench_proxy.py", *args, *plain)
    # named after the recipe and the tag of the pretraining run its overrides made
    (folder,) = (work / "eval").glob("adrenalmnist3d-plain-*")
    results = folder / "results.csv"
    first = results.read_bytes()
    lpft = ["--recipe", "lpft", "finetune.mode=lpft", "finetune.steps=4", *small]
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
        ("byol", "finetune"): [0.84, 0.86, 0.87],  # a second pretrained run, paired the same way
    }
    folder = tmp_path / "recipe"
    folder.mkdir()
    for (init, protocol), per_seed in values.items():
        for seed, v in enumerate(per_seed):
            base = {"init": init, "protocol": protocol, "budget": "1%", "seed": seed}
            note = f"best step {100 * seed} of {100 * seed + 60} (plain, lr 0.001)"
            append_results(
                folder / "results.csv",
                [
                    {**base, "metric": "auroc", "value": v, "note": note},
                    {**base, "metric": "seconds", "value": 1},
                ],
            )
    rows = {(r["init"], r["protocol"]): r for r in summarise("d", {"a": folder})}
    assert set(rows) == {("pretrained", "linear"), ("pretrained", "finetune"), ("byol", "finetune")}
    ft = rows[("pretrained", "finetune")]
    assert ft["strongest_random"].startswith("a finetune")  # not the weak frozen random probe
    assert ft["minus_strongest_random"] == pytest.approx(0.06)
    sd = np.std([0.05, 0.05, 0.08], ddof=1)
    assert ft["paired_sd"] == pytest.approx(sd)
    half = 4.302653 * sd / np.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert ft["ci95"] == f"[{0.06 - half:+.3f}, {0.06 + half:+.3f}]"
    assert ft["over_2sd"]
    # the learning curve's summary per seed: best step / last step, the random run's beside it
    assert ft["steps"] == ft["random_steps"] == "0/60 100/160 200/260"
    assert rows[("pretrained", "linear")]["minus_strongest_random"] == pytest.approx(-0.04)
    assert rows[("pretrained", "linear")]["steps"] == ""  # a probe has no steps
    assert rows[("byol", "finetune")]["minus_strongest_random"] == pytest.approx(-0.01 / 3)


def test_proxy_summarise_only_records_the_budgets_a_stopped_call_finished(tmp_path):
    """--summarise-only: the folder as it stands, a budget whose random runs are incomplete
    left out, nothing pretrained or evaluated."""
    sys.path.insert(0, str(BENCH))
    from bench_proxy import _folder_name, evaluate_recipe, summarise

    from medcontrast.evaluation.results_file import append_results

    runs = {"simclr": tmp_path / "runs" / "r1", "byol": tmp_path / "runs" / "r2"}  # never made
    with pytest.raises(FileNotFoundError, match="no evaluation to summarise"):
        evaluate_recipe("d", [], tmp_path, runs, ("converged", []), summarise_only=True)
    folder = tmp_path / "eval" / _folder_name("d", "converged", runs)
    folder.mkdir(parents=True)
    done = [("1%", i, s, "finetune") for i in ("simclr", "byol", "random") for s in (0, 1)]
    # stopped in 10% during random's last fine-tune: its probe has every seed, its fine-tune not
    cut = [("10%", i, s, "finetune") for i in ("simclr", "byol") for s in (0, 1)]
    cut += [("10%", "random", s, "linear") for s in (0, 1)] + [("10%", "random", 0, "finetune")]
    for budget, init, seed, protocol in [*done, *cut]:
        row = {"init": init, "protocol": protocol, "budget": budget, "seed": seed}
        finished = [
            {**row, "metric": "auroc", "value": 0.7},
            {**row, "metric": "seconds", "value": 1},
        ]
        append_results(folder / "results.csv", finished)
    found = evaluate_recipe("d", [], tmp_path, runs, ("converged", []), summarise_only=True)
    assert found == folder and not (tmp_path / "runs").exists()
    rows = summarise("d", {"converged": found})
    assert {(r["budget"], r["init"]) for r in rows} == {("1%", "simclr"), ("1%", "byol")}


def _common(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    import _common

    monkeypatch.setattr(_common, "RESULTS", tmp_path)
    return _common


def test_table_keeps_each_failure_in_its_row(monkeypatch, tmp_path):
    common = _common(monkeypatch, tmp_path)
    from medcontrast.errors import MedContrastError

    def trainer_oom() -> dict:  # how the trainer reports it: our error, caused by torch's
        try:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        except torch.cuda.OutOfMemoryError as exc:
            raise MedContrastError("out of GPU memory at train.batch_size=4096") from exc

    def missing() -> dict:
        raise ModuleNotFoundError("No module named 'lightly'", name="lightly")

    with common.Table("t", torch.device("cpu"), ["what"]) as table:
        table.measure({"what": "oom", "batch": 4096}, trainer_oom)
        table.measure({"what": "missing"}, missing)
        table.measure({"what": "broken"}, lambda: 1 / 0)
        table.measure({"what": "fine"}, lambda: {"ms": 1.0})
    (entry,) = [json.loads(line) for line in (tmp_path / "t.jsonl").read_text().splitlines()]
    assert [r["result"] for r in entry["rows"]] == [
        "OOM at batch 4096",
        "not installed: lightly",
        "failed: ZeroDivisionError: division by zero",
        "ok",
    ]


def test_table_writes_finished_rows_when_the_time_limit_stops_it(monkeypatch, tmp_path):
    common = _common(monkeypatch, tmp_path)
    before = signal.getsignal(signal.SIGTERM)

    def killed() -> dict:
        os.kill(os.getpid(), signal.SIGTERM)  # what `timeout` sends
        time.sleep(10)
        return {}

    ran = []
    with common.Table("t", torch.device("cpu"), ["what"]) as table:
        table.measure({"what": "first"}, lambda: {"ms": 1.0})
        table.measure({"what": "second"}, killed)
        ran.append("third")  # never reached
    entry = json.loads((tmp_path / "t.jsonl").read_text())
    assert [r["result"] for r in entry["rows"]] == ["ok", "stopped by the time limit"]
    assert not ran and signal.getsignal(signal.SIGTERM) is before


@pytest.mark.slow  # about a minute: MedNIST's 58,954 files extracted for a 240-image pool
def test_archive_quick(tmp_path):
    data = shared_data("mednist", "MedNIST_resized.tar.gz").parents[1]
    shared_data("medmnist", "pneumoniamnist.npz")
    entry = _run(
        tmp_path, "bench_archive.py", "--quick", "--data", str(data), "--work", str(tmp_path)
    )
    assert {r["task"] for r in entry["rows"]} == {"pneumoniamnist", "mednist"}
    assert {r["result"] for r in entry["rows"]} == {"ok"}
    # PneumoniaMNIST compares the archive encoder with the PneumoniaMNIST-only one, paired
    pneumonia = [r for r in entry["rows"] if r["task"] == "pneumoniamnist"]
    assert {r["init"] for r in pneumonia} == {"archive", "pneumonia-only"}
    assert any("minus_alone" in r for r in pneumonia)
    assert 0 < entry["peak_rss_gib"] < 8


@pytest.mark.slow  # about 30 s: two child processes start torch, MONAI and the DICOM decoders
def test_preprocess_quick(tmp_path):
    data = shared_data("readers", "dicom").parents[1]
    entry = _run(
        tmp_path, "bench_preprocess.py", "--quick", "--data", str(data), "--work", str(tmp_path)
    )
    rows = _rows(entry, "workers")
    assert set(rows) == {1, 2} and all(r["result"] == "ok" for r in rows.values())
    assert rows[1]["images"] == rows[2]["images"] > 0 and rows[2]["speedup"] > 0


def test_docs_mark_proxy_records_before_the_converged_baseline_superseded(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import make_docs

    old = {"rows": [{"dataset": "d", "budget": "1%", "protocol": "finetune", "pretrained": 0.8}]}
    row = {"dataset": "d", "budget": "1%", "recipe": "r", "init": "simclr", "protocol": "finetune"}
    row |= {"pretrained": 0.9, "strongest_random": "r finetune 0.880"}
    row |= {"minus_strongest_random": 0.02, "ci95": "[-0.010, +0.050]"}
    new = {"rows": [row], "commit": "abc"}
    assert make_docs._superseded(old) and not make_docs._superseded(new)
    table = make_docs._converged_table([old, new])
    assert (
        "| d | 1% | simclr | finetune | r | 0.9 | r finetune 0.880 | +0.020 [-0.010, +0.050]"
        in table
    )
    assert table.count("\n| d |") == 1  # the superseded record is not in it


def test_demo_pool_gives_every_pool_the_first_pools_steps_and_warmup(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(BENCH))
    from bench_demo_pool import pool_images, same_schedule

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text("train: {max_steps: 180, warmup_epochs: 3.0, epochs: 30}\n")
    # four times the images: the same 180 steps, and the same warm-up steps (a quarter epoch)
    assert same_schedule(run, 3112, 778) == ["train.max_steps=180", "train.warmup_epochs=0.75"]
    rows = [
        ("ok", "DX", "train"),
        ("ok", "CR", "val"),
        ("ok", "DX", "test"),  # pretraining never sees test
        ("ok", "CT", "train"),  # a volume: not the demo's radiographs
        ("skipped", "DX", ""),
    ]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("status,modality,split\n" + "\n".join(",".join(r) for r in rows) + "\n")
    assert pool_images(manifest) == 2


@pytest.mark.slow  # about 2 min on two cores: two tiny archives, pretraining, linear probes
def test_demo_pool_quick(tmp_path):
    entry = _run(tmp_path, "bench_demo_pool.py", "--quick", "--work", str(tmp_path / "work"))
    assert {r["init"] for r in entry["rows"]} == {"pool20", "pool40"}
    assert all(r["result"] == "ok" and r["seeds"] == 2 for r in entry["rows"])
    steps = [
        yaml.safe_load((tmp_path / "work" / "runs" / f"simclr-pool{n}" / "config.yaml").read_text())
        for n in (20, 40)
    ]
    assert steps[0]["train"]["max_steps"] == steps[1]["train"]["max_steps"]
