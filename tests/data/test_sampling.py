"""Batches of an epoch: the same global batches under any number of processes."""

import numpy as np
import pytest

from medcontrast.data.sampling import BatchSampler, epoch_batches, split_tagged


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


def test_one_span_crosses_epochs_with_each_sample_tagged():
    """Steps 7 to 25 of a run (10 steps an epoch): the epochs' own batches, each index tagged
    with its epoch, in one iteration; a span from any step continues it exactly."""
    sampler = BatchSampler(43, 4, seed=2)
    sampler.set_span(7, 25)
    run = list(sampler)
    assert len(run) == len(sampler) == 18
    expected = [
        [(e, int(i)) for i in batch] for e in (0, 1, 2) for batch in epoch_batches(43, 4, 2, e)
    ][7:25]
    assert run == expected
    sampler.set_span(12, 25)
    assert list(sampler) == run[5:]
    epoch, idx = split_tagged(run[3])  # step 10: the first of epoch 1
    assert epoch == 1 and idx.tolist() == [i for _, i in run[3]] and idx.dtype == np.int64
    with pytest.raises(ValueError, match="spans epochs"):
        split_tagged([(0, 1), (1, 2)])
