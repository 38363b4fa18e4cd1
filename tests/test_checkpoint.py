"""Checkpoints: random states survive any device mapping and restore every generator."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from medcontrast import checkpoint


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
