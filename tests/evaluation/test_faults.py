"""An evaluation folder survives faults: a torn results.csv, a half-written feature file and
weights that changed under the same name are redone, never reused or fatal."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from medcontrast.cli import main
from medcontrast.config import EvaluateConfig, load_config
from medcontrast.data.manifest import read_manifest
from medcontrast.data.selection import select_rows
from medcontrast.errors import MedContrastError
from medcontrast.evaluate import evaluate
from medcontrast.export import WEIGHTS


@pytest.fixture(scope="module")
def run(tiny_run):
    return tiny_run[0]


def _args(manifest, run, out, *extra) -> list[str]:
    return [
        f"data.manifest={manifest}",
        "data.modalities=[CR,DX]",
        "data.size=[32,32]",
        f"data.cache_dir={run.parent.parent / 'cache'}",
        f"out_dir={out}",
        "name=f",
        f"inits=[{{name: ssl, source: '{run}'}}]",
        "protocols=[linear,knn]",
        "budgets.shots=[2]",
        "budgets.fractions=[]",
        "budgets.seeds=[0,1]",
        "bootstrap=20",
        "embedding_plot=false",
        "retrieval_queries=0",
        *extra,
    ]


def _cfg(manifest, run, out, *extra) -> EvaluateConfig:
    return load_config(EvaluateConfig, None, _args(manifest, run, out, *extra))


def _auroc(folder, init: str) -> pd.Series:
    t = pd.read_csv(folder / "results.csv")
    t = t[(t["init"] == init) & (t["metric"] == "auroc")]
    return t.set_index(["protocol", "seed"])["value"].sort_index()


def test_torn_results_and_damaged_features_are_redone(phantom_manifest, run, tmp_path, capsys):
    folder = evaluate(_cfg(phantom_manifest, run, tmp_path), progress=False)
    full = pd.read_csv(folder / "results.csv")
    # A kill inside the last run's rows: the rerun drops that run and redoes it.
    text = (folder / "results.csv").read_text()
    (folder / "results.csv").write_text(text[: len(text) - 25])
    evaluate(_cfg(phantom_manifest, run, tmp_path), progress=False)
    assert "cut short" in capsys.readouterr().err
    again = pd.read_csv(folder / "results.csv")
    assert len(again) == len(full) and again["value"].notna().all()
    order = ["init", "protocol", "seed", "metric"]
    same = [again, full]
    for i, t in enumerate(same):  # timings differ; everything else is the same
        same[i] = t[t["metric"] != "seconds"].drop(columns="note").sort_values(order)
    pd.testing.assert_frame_equal(*(t.reset_index(drop=True) for t in same))
    # A feature file cut in half by a kill is recomputed, not loaded.
    feats = folder / "features" / "ssl.npy"
    good = np.load(feats)
    feats.write_bytes(feats.read_bytes()[: feats.stat().st_size // 2])
    full[full["init"] != "ssl"].to_csv(folder / "results.csv", index=False)
    evaluate(_cfg(phantom_manifest, run, tmp_path), progress=False)
    assert "ssl.npy is damaged" in capsys.readouterr().err
    np.testing.assert_allclose(np.load(feats), good, rtol=1e-5)
    assert len(pd.read_csv(folder / "results.csv")) == len(full)
    assert not list(folder.rglob("*.tmp*"))


def test_changed_weights_are_recomputed_or_refused(phantom_manifest, run, tmp_path, capsys):
    folder = evaluate(_cfg(phantom_manifest, run, tmp_path), progress=False)
    before_ssl, before_random = _auroc(folder, "ssl"), _auroc(folder, "random")
    before_feats = np.load(folder / "features" / "ssl.npy")
    # The pretrained run was continued: its encoder.pth now holds other weights.
    state = torch.load(run / WEIGHTS, weights_only=True)
    torch.manual_seed(1)
    for v in state.values():
        if v.dim() > 1:  # convolution weights (batch-norm statistics stay valid)
            v.add_(0.1 * torch.randn_like(v))
    torch.save(state, run / WEIGHTS)
    with pytest.raises(MedContrastError, match=r"weights changed.*ssl"):
        evaluate(_cfg(phantom_manifest, run, tmp_path, "on_change=refuse"), progress=False)
    evaluate(_cfg(phantom_manifest, run, tmp_path), progress=False)
    assert "redoing ssl" in capsys.readouterr().err
    assert not np.allclose(np.load(folder / "features" / "ssl.npy"), before_feats)
    pd.testing.assert_series_equal(_auroc(folder, "random"), before_random)
    assert len(_auroc(folder, "ssl")) == len(before_ssl)
    # Nothing changed since: a rerun reuses every row.
    evaluate(_cfg(phantom_manifest, run, tmp_path), progress=False)
    assert "redoing" not in capsys.readouterr().err
    # A folder of an earlier version recorded no digests: its rows are kept, and it says so.
    inits = json.loads((folder / "inits.json").read_text())
    (folder / "inits.json").write_text(json.dumps([{**i, "sha256": ""} for i in inits]))
    evaluate(_cfg(phantom_manifest, run, tmp_path), progress=False)
    assert "predates weight digests" in capsys.readouterr().err


def test_a_folder_from_before_lpft_is_not_continued_as_lpft(phantom_manifest, run, tmp_path):
    """A folder saved before finetune.mode existed was fine-tuned the plain way: continuing it
    with the new default (both) would mix two protocols under one name."""
    folder = evaluate(_cfg(phantom_manifest, run, tmp_path), progress=False)
    saved = yaml.safe_load((folder / "config.yaml").read_text())
    del saved["finetune"]["mode"]
    (folder / "config.yaml").write_text(yaml.safe_dump(saved))
    with pytest.raises(MedContrastError, match="other settings"):
        evaluate(_cfg(phantom_manifest, run, tmp_path), progress=False)
    evaluate(_cfg(phantom_manifest, run, tmp_path, "finetune.mode=plain"), progress=False)


def test_a_figure_that_fails_never_costs_the_report(
    phantom_manifest, run, tmp_path, monkeypatch, capsys
):
    """The embedding and retrieval figures come after the results: whatever stops them, the
    report is still written (a t-SNE crash once ended the process before it)."""

    def fail(*args, **kwargs):
        raise ValueError("perplexity must be less than n_samples")

    monkeypatch.setattr("medcontrast.evaluate.feature_figures", fail)
    folder = evaluate(_cfg(phantom_manifest, run, tmp_path), progress=False)
    assert (folder / "report.md").exists() and (folder / "report.html").exists()
    assert "figures not drawn: perplexity must be less" in capsys.readouterr().err


def test_a_second_evaluate_of_a_folder_in_use_is_refused(phantom_manifest, run, tmp_path):
    """Another process holds the folder: evaluate says which and writes nothing into it."""
    folder = tmp_path / "f"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from medcontrast.runs import RunLock; "
            "RunLock(Path(sys.argv[1])).acquire(); print('held', flush=True); time.sleep(120)",
            str(folder),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(MedContrastError, match=f"in use by process {holder.pid}"):
            evaluate(_cfg(phantom_manifest, run, tmp_path), progress=False)
        assert sorted(p.name for p in folder.iterdir()) == ["run.lock"]
    finally:
        holder.kill()
        holder.wait()
    folder = evaluate(_cfg(phantom_manifest, run, tmp_path), progress=False)  # the lock is stale
    results = pd.read_csv(folder / "results.csv")
    assert not results.duplicated().any() and not (folder / "run.lock").exists()


def test_a_start_that_failed_leaves_its_name_free(phantom_manifest, run, tmp_path):
    folder = tmp_path / "f"
    missing = tmp_path / "no-such-run"
    with pytest.raises(MedContrastError):  # the initialisation is refused before any write
        evaluate(_cfg(phantom_manifest, run, tmp_path, f"inits=[{{source: '{missing}'}}]"))
    assert not folder.exists()
    # failed after its config was saved (no labelled image of this modality): no result binds it
    with pytest.raises(MedContrastError):
        evaluate(_cfg(phantom_manifest, run, tmp_path, "data.modalities=[MG]"), progress=False)
    assert (folder / "config.yaml").exists()
    evaluate(_cfg(phantom_manifest, run, tmp_path, "budgets.seeds=[3]"), progress=False)
    assert set(pd.read_csv(folder / "results.csv")["seed"]) == {3}


# evaluate through the command line, each kNN probe after the first one slowed down, so that
# a signal arrives while a run is going (the runs kept before it are in results.csv)
SLOW_EVALUATE = """
import sys, time
from medcontrast import evaluate
from medcontrast.cli import main

real, calls = evaluate.knn_probe, []


def slow(*args, **kwargs):
    calls.append(1)
    if len(calls) > 1:
        time.sleep(60)
    return real(*args, **kwargs)


evaluate.knn_probe = slow
sys.exit(main(["evaluate", *sys.argv[1:]]))
"""


# Ctrl-C takes the same path as a scheduler's SIGTERM: checked in the slow tier only
@pytest.mark.parametrize(
    "sig", [signal.SIGTERM, pytest.param(signal.SIGINT, marks=pytest.mark.slow)]
)
def test_a_signal_stops_evaluate_with_a_line_and_the_rerun_finishes(
    phantom_manifest, run, tmp_path, sig
):
    script = tmp_path / "slow_evaluate.py"
    script.write_text(SLOW_EVALUATE)
    args = _args(phantom_manifest, run, tmp_path, "protocols=[knn]", "budgets.seeds=[0,1,2]")
    proc = subprocess.Popen([sys.executable, str(script), *args], stderr=subprocess.PIPE, text=True)
    results, deadline = tmp_path / "f" / "results.csv", time.time() + 120
    while time.time() < deadline and proc.poll() is None and not results.exists():
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()[1]  # the second run is going
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert f"evaluate f stopped by {sig.name}; rerun the same command" in err, err
    assert "Traceback" not in err
    log = (tmp_path / "f" / "evaluate.log").read_text()
    assert f"=== stopped: error: evaluate f stopped by {sig.name}" in log
    assert not (tmp_path / "f" / "run.lock").exists()
    kept = pd.read_csv(results)[["init", "seed"]].drop_duplicates()
    assert len(kept) == 1  # the first run, on disk before the signal
    evaluate(load_config(EvaluateConfig, None, args), progress=False)
    table = pd.read_csv(results)
    assert not table.duplicated().any()
    runs = table[["init", "protocol", "seed"]].drop_duplicates()
    assert len(runs) == 3 * table["init"].nunique(), runs


def test_evaluate_keeps_data_max_samples(phantom_manifest, run, tmp_path):
    labeled = select_rows(read_manifest(phantom_manifest), 2, ["CR", "DX"], labeled=True)
    keep = len(labeled) - 6
    folder = evaluate(
        _cfg(phantom_manifest, run, tmp_path, f"data.max_samples={keep}", "protocols=[knn]"),
        progress=False,
    )
    assert np.load(folder / "features" / "ssl.npy").shape[0] == keep


def test_report_on_a_value_that_is_not_a_number_leaves_that_run_out(
    phantom_manifest, run, tmp_path, capsys
):
    folder = evaluate(_cfg(phantom_manifest, run, tmp_path, "protocols=[knn]"), progress=False)
    table = pd.read_csv(folder / "results.csv", dtype=str, keep_default_na=False)
    table.loc[table.index[table["metric"] == "auroc"][0], "value"] = "0.8x"  # a hand edit
    table.to_csv(folder / "results.csv", index=False)
    capsys.readouterr()
    assert main(["report", str(folder)]) == 0
    assert "not a number are left out" in capsys.readouterr().err
