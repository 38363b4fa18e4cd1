"""Batches of an epoch: the same global batches under any number of processes."""

import numpy as np
import pytest

from medcontrast.data.sampling import BatchSampler, epoch_batches


@pytest.mark.parametrize("world", [1, 2, 4])
def test_ranks_together_see_the_single_process_batches(world):
    n, per_rank = 103, 4
    alone = epoch_batches(n, per_rank * world, seed=3, epoch=2)
    ranks = [epoch_batches(n, per_rank, 3, 2, rank=r, world=world) for r in range(world)]
    assert np.array_equal(np.concatenate(ranks, axis=1), alone)
    assert alone.shape == (n // (per_rank * world), per_rank * world)
    assert len(np.unique(alone)) == alone.size  # each sample at most once per epoch


def test_epochs_differ_and_repeat():
    a, b = epoch_batches(50, 5, 0, 0), epoch_batches(50, 5, 0, 1)
    assert not np.array_equal(a, b)
    assert np.array_equal(a, epoch_batches(50, 5, 0, 0))


def test_sampler_resumes_mid_epoch():
    sampler = BatchSampler(40, 4, seed=1)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(3, start=6)
    assert list(sampler) == full[6:] and len(sampler) == len(full) - 6 == 4
