"""One encoder, several tasks in one call: a combined report; a bad task refused before any
task is computed."""

from __future__ import annotations

import re

import pandas as pd
import yaml

from medcontrast.cli import main


def _task(tmp_path, file: str, manifest, root, **extra) -> str:
    cfg = {
        "name": file,
        "out_dir": str(root / "eval"),
        "data": {
            "manifest": str(manifest),
            "modalities": ["CR", "DX"],
            "size": [32, 32],
            "cache_dir": str(root / "cache"),
            **extra.pop("data", {}),
        },
        "protocols": ["linear"],
        "budgets": {"fractions": [0.5, 1.0], "seeds": [0, 1]},
        "bootstrap": 20,
        "embedding_plot": False,
        "retrieval_queries": 0,
        **extra,
    }
    path = tmp_path / f"{file}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def test_one_encoder_on_two_tasks_gives_one_combined_report(
    phantom_manifest, tiny_run, tmp_path, capsys
):
    run, root = tiny_run
    shared = f"inits=[{{name: ssl, source: '{run}'}}]"  # the one encoder, for every task
    a = _task(tmp_path, "task-a", phantom_manifest, root)
    b = _task(tmp_path, "task-b", phantom_manifest, root, data={"modalities": ["DX"]})
    combined = tmp_path / "combined"
    assert (
        main(["evaluate", "--config", a, "--config", b, "--tasks-out", str(combined), shared]) == 0
    )
    printed = capsys.readouterr().out
    assert "task-a" in printed and "task-b" in printed and str(combined / "tasks.md") in printed
    table = pd.read_csv(combined / "tasks.csv")
    assert set(table["task"]) == {"task-a", "task-b"}
    assert set(table["budget"]) == {"50%", "100%"}
    assert table["pretrained"].str.startswith("ssl").all()
    md = (combined / "tasks.md").read_text()
    assert "## Labels saved" in md and "task-a/report.md" in md
    assert "task-b, ssl: manifest" in md and "0 of" in md  # the pool and its test overlap
    for task in ("task-a", "task-b"):
        assert (root / "eval" / task / "report.md").exists()


def test_a_task_that_cannot_run_stops_all_before_any_computation(
    phantom_manifest, tiny_run, tmp_path, capsys
):
    run, root = tiny_run
    shared = f"inits=[{{name: ssl, source: '{run}'}}]"
    good = _task(tmp_path, "fine", phantom_manifest, root)
    volumes = _task(
        tmp_path,
        "volumes",
        phantom_manifest,
        root,
        data={"ndim": 3, "size": [16, 16, 16], "modalities": ["CT", "MR"]},
    )
    assert main(["evaluate", "--config", good, "--config", volumes, shared]) != 0
    assert re.search(r"error: task .*volumes\.yaml: .*2D encoder", capsys.readouterr().err)
    assert not (root / "eval" / "fine").exists()  # the good task was not started either
    same = _task(tmp_path, "fine2", phantom_manifest, root, name="fine")
    assert main(["evaluate", "--config", good, "--config", same, shared]) != 0
    assert "the same evaluation folder" in capsys.readouterr().err
