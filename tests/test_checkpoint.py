"""Checkpoints: random states survive any device mapping and restore every generator."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from medcontrast import checkpoint
from medcontrast.errors import MedContrastError


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(1))


@pytest.mark.parametrize("legacy", [False, True], ids=["numpy", "torch-0.1.0"])
def test_rng_state_restores_every_generator(tmp_path, legacy):
    state = checkpoint.rng_state(torch.device("cpu"))
    if legacy:  # 0.1.0 wrote the torch state as a tensor
        state["torch"] = torch.get_rng_state()
    checkpoint.atomic_save({"rng": [state]}, tmp_path / "last.pt")
    expected = _draws()
    checkpoint.set_rng_state(checkpoint.load(tmp_path / "last.pt")["rng"][0], torch.device("cpu"))
    assert _draws() == expected


def test_rng_state_is_not_moved_by_map_location(tmp_path):
    """What broke every resume on CUDA: map_location moved the CPU state onto the GPU."""
    checkpoint.atomic_save({"rng": checkpoint.rng_state()}, tmp_path / "last.pt")
    expected = _draws()
    state = torch.load(tmp_path / "last.pt", map_location="meta", weights_only=False)
    checkpoint.set_rng_state(state["rng"])
    assert _draws() == expected


def _two_checkpoints(folder):
    checkpoint.save_rotating({"step": 1}, folder)
    checkpoint.save_rotating({"step": 2}, folder)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _full_disk_save(obj, fh, *args, **kwargs):
    fh.write(b"x" * 1000)  # the part written before the disk filled
    raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")


def test_a_full_disk_keeps_both_checkpoints_and_leaves_nothing_half_written(tmp_path, monkeypatch):
    """torch.save says a full disk with a RuntimeError, not an OSError (simulated here)."""
    before = _two_checkpoints(tmp_path)
    monkeypatch.setattr(checkpoint.torch, "save", _full_disk_save)
    with pytest.raises(MedContrastError, match=r"could not write .*last\.pt .*MiB free there"):
        checkpoint.save_rotating({"step": 3}, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_really_full_disk_keeps_both_checkpoints(small_disk):
    before = _two_checkpoints(small_disk)
    with pytest.raises(MedContrastError, match=r"could not write .*last\.pt"):
        checkpoint.save_rotating({"step": 3, "big": torch.zeros(2**19)}, small_disk)  # 2 MiB
    assert {p.name: p.read_bytes() for p in small_disk.iterdir()} == before
    checkpoint.save_rotating({"step": 3}, small_disk)  # the space was given back
    assert checkpoint.load(small_disk / "last.pt")["step"] == 3
