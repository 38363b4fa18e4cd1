"""Deterministic batching for pretraining, identical under any number of processes.

Epoch ``e`` uses one permutation of the N samples seeded by (seed, e). It is cut into global
batches of ``batch_size x world_size``; rank ``r`` takes the r-th slice of each. So step ``s`` sees
the same global batch whether it runs on one process or several, and a resumed run can skip
straight to its batch.
"""

from __future__ import annotations

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
    """Yields this rank's batches of one epoch, starting at ``start``."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def steps_per_epoch(self) -> int:
        return self.n // (self.batch_size * self.world)

    def __iter__(self):
        batches = epoch_batches(
            self.n, self.batch_size, self.seed, self.epoch, self.rank, self.world
        )
        for b in batches[self.start :]:
            yield b.tolist()

    def __len__(self) -> int:
        return max(0, self.steps_per_epoch() - self.start)
