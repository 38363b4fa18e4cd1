"""Deterministic batching for pretraining, identical under any number of processes.

Epoch ``e`` uses one permutation of the N samples seeded by (seed, e). It is cut into global
batches of ``batch_size x world_size``; rank ``r`` takes the r-th slice of each. So step ``s`` sees
the same global batch whether it runs on one process or several, and a resumed run can skip
straight to its batch.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from medcontrast.seeding import Stream, draw_seed


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1
) -> np.ndarray:
    """(steps, batch_size) sample indices of this rank for one epoch (incomplete batches dropped)."""
    rng = np.random.default_rng(draw_seed(seed, epoch, Stream.BATCH_ORDER))
    perm = rng.permutation(n)
    steps = n // (batch_size * world)
    return perm[: steps * batch_size * world].reshape(steps, world, batch_size)[:, rank]


class BatchSampler(torch.utils.data.Sampler):
    """Yields this rank's batches from a start step to a last one, across epochs, each sample
    tagged with its epoch: ``[(epoch, index), ...]`` per batch.

    One sampler spans the whole run, so one DataLoader iterator does too: its workers keep
    prefetching across epoch boundaries instead of being restarted (and refilled) at each, and
    the epoch a dataset needs (MICLe partners, MONAI view seeds) travels with the indices rather
    than through ``set_epoch`` on a dataset copy that workers would not see.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.begin, self.end = 0, self.steps_per_epoch()

    def set_span(self, begin: int, end: int) -> None:
        """Iterate steps ``begin`` (inclusive) to ``end`` (exclusive) of the run."""
        self.begin, self.end = begin, end

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate one epoch from its batch ``start``."""
        steps = self.steps_per_epoch()
        self.set_span(epoch * steps + start, (epoch + 1) * steps)

    def steps_per_epoch(self) -> int:
        return self.n // (self.batch_size * self.world)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        steps, epoch, batches = self.steps_per_epoch(), -1, np.empty(0)
        for step in range(self.begin, self.end):
            if step // steps != epoch:
                epoch = step // steps
                batches = epoch_batches(
                    self.n, self.batch_size, self.seed, epoch, self.rank, self.world
                )
            yield [(epoch, int(i)) for i in batches[step % steps]]

    def __len__(self) -> int:
        return max(0, self.end - self.begin)


def split_tagged(batch: list[tuple[int, int]]) -> tuple[int, np.ndarray]:
    """A :class:`BatchSampler` batch -> (its epoch, (B,) int64 sample indices)."""
    epochs = {e for e, _ in batch}
    if len(epochs) != 1:
        raise ValueError(f"a batch spans epochs {sorted(epochs)}")
    return epochs.pop(), np.array([i for _, i in batch], dtype=np.int64)
