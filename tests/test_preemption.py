"""Preemption: a real signal to a real process checkpoints, says how to resume, exits non-zero."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from medcontrast import checkpoint, train_loop
from medcontrast.config import PretrainConfig, load_config
from medcontrast.preemption import PreemptedError
from medcontrast.pretrain import pretrain
from tests.test_pretrain import _overrides


def _wait_for_steps(proc: subprocess.Popen, metrics: Path, steps: int, timeout: float) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        if metrics.exists() and len(metrics.read_text().splitlines()) > steps:
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"no {steps} steps in {timeout} s")


@pytest.mark.parametrize(
    "sig,workers,group",
    [
        (signal.SIGTERM, 0, False),  # a scheduler's notice to the main process
        (signal.SIGINT, 2, True),  # Ctrl-C: the terminal signals every process, workers too
        (signal.SIGTERM, 2, True),  # Slurm signals every process of a job step
    ],
)
def test_signal_checkpoints_and_the_run_resumes(phantom_manifest, tmp_path, sig, workers, group):
    extra = ("train.max_steps=100000", f"train.num_workers={workers}")
    args = _overrides(phantom_manifest, tmp_path, "pre", *extra)
    cmd = [sys.executable, "-m", "medcontrast.cli", "pretrain", *args]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    run = tmp_path / "runs" / "pre"
    _wait_for_steps(proc, run / "metrics.csv", 2, timeout=240)
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert f"stopped by {sig.name}" in err and "--resume (name=pre)" in err, err
    step = checkpoint.load(run / "checkpoints" / "last.pt")["step"]
    assert step >= 2 and not (run / "encoder.pth").exists()
    assert list(pd.read_csv(run / "metrics.csv")["step"])[-1] == step  # nothing done is lost

    cfg = load_config(PretrainConfig, None, [*args, f"train.max_steps={step + 2}"])
    pretrain(cfg, resume=True, progress=False)
    assert list(pd.read_csv(run / "metrics.csv")["step"]) == list(range(1, step + 3))
    assert (run / "encoder.pth").exists()


def test_a_second_signal_exits_at_once():
    script = textwrap.dedent(
        """
        import os, signal, time
        from medcontrast.preemption import StopOnSignal
        with StopOnSignal() as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            while not stop.requested:
                time.sleep(0.01)
            print("first signal noted", flush=True)
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(30)
        print("not reached")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 128 + signal.SIGTERM
    assert "first signal noted" in done.stdout and "not reached" not in done.stdout
    assert "exiting now" in done.stderr


def test_a_signal_checkpoint_holds_exactly_the_step_it_names(
    phantom_manifest, tmp_path, monkeypatch
):
    """A SIGTERM that arrives while the third step's batch is on its way: that step is
    completed and the checkpoint names three steps, holding nothing more (BatchNorm's running
    statistics, random draws), so the resumed run exports the uninterrupted run's encoder, bit
    for bit. Before, the checkpoint named two steps and held the third's statistics."""
    extra = ("train.max_steps=5", "train.checkpoint_every=100", "train.seed=3")
    full = pretrain(
        load_config(PretrainConfig, None, _overrides(phantom_manifest, tmp_path, "full", *extra)),
        progress=False,
    )
    real, calls = train_loop.to_device, []

    def signalled_on_the_third_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    monkeypatch.setattr(train_loop, "to_device", signalled_on_the_third_batch)
    args = _overrides(phantom_manifest, tmp_path, "cut", *extra)
    with pytest.raises(PreemptedError, match="at step 3 of 5"):
        pretrain(load_config(PretrainConfig, None, args), progress=False)
    monkeypatch.setattr(train_loop, "to_device", real)
    state = checkpoint.load(tmp_path / "runs" / "cut" / "checkpoints" / "last.pt")
    tracked = [v for k, v in state["model"].items() if k.endswith("num_batches_tracked")]
    assert state["step"] == 3 and tracked and all(int(v) == 3 for v in tracked)
    cut = pretrain(load_config(PretrainConfig, None, args), resume=True, progress=False)
    a, b = torch.load(full / "encoder.pth"), torch.load(cut / "encoder.pth")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
