"""One cap on CPU threads: --threads on every command, or MEDCONTRAST_THREADS."""

from __future__ import annotations

import os

import pytest
import threadpoolctl
import torch

from medcontrast.cli import build_parser, main
from medcontrast.data.pool import pool_size
from medcontrast.errors import MedContrastError
from medcontrast.threads import ENV, machine_cores, set_threads, thread_budget


@pytest.fixture
def restore_threads():
    """Whatever a test caps is put back, and the variables set by the command removed (a
    monkeypatch.delenv of an absent variable would not remove one set later)."""
    names = (ENV, "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    saved = {name: os.environ.pop(name, None) for name in names}
    before = torch.get_num_threads()
    try:
        with threadpoolctl.threadpool_limits(limits=None):
            yield
    finally:
        torch.set_num_threads(before)
        for name, value in saved.items():
            os.environ.pop(name, None)
            if value is not None:
                os.environ[name] = value


def _commands():
    parser = build_parser()
    (sub,) = [a for a in parser._actions if a.dest == "command"]
    return sub.choices


@pytest.mark.parametrize("command", sorted(_commands()))
def test_every_command_takes_threads(command):
    assert "--threads N" in _commands()[command].format_help()


def test_threads_one_caps_torch_blas_and_the_worker_pools(restore_threads, tmp_path):
    # the command fails (no such folder), but only after the cap is in place
    assert main(["report", str(tmp_path / "missing"), "--threads", "1"]) != 0
    assert torch.get_num_threads() == 1
    blas = [p for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]
    assert blas and all(p["num_threads"] == 1 for p in blas)
    assert thread_budget() == 1 and pool_size("auto") == 1  # cache building: one process


def test_the_environment_variable_is_the_default_and_checked(restore_threads):
    assert thread_budget() == machine_cores() == pool_size("auto")
    assert set_threads() == machine_cores()  # nothing set: nothing changed
    os.environ[ENV] = "2"
    assert set_threads() == 2 and torch.get_num_threads() == 2
    os.environ[ENV] = "many"
    with pytest.raises(MedContrastError, match=f"{ENV}='many'"):
        set_threads()
    with pytest.raises(MedContrastError, match="--threads 0"):
        set_threads(0)
