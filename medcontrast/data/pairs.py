"""Positive pairs across images (MICLe, Azizi et al., ICCV 2021): which image of the same patient
or study a sample's second view comes from. Both view paths pair the same images."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from medcontrast.data.sampling import split_tagged
from medcontrast.errors import MedContrastError
from medcontrast.seeding import Stream, draw_seed


def codes_and_members(values: pd.Series) -> tuple[np.ndarray, list[np.ndarray]]:
    """(N,) integer codes of ``values`` (patient or study per sample) and, per code, the sample
    indices that carry it: the partner sets of pairing by that column."""
    codes, uniques = pd.factorize(values)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    members = [order[bounds[i] : bounds[i + 1]] for i in range(len(uniques))]
    return codes.astype(np.int64), members


def check_partners(partner_sets: list[np.ndarray], n: int, unit: str, say: bool) -> None:
    """Patient-aware positives need images that share a patient (or study): stop when none do,
    rather than silently training plain two-views-of-one-image SimCLR; else say how many."""
    paired = sum(len(g) for g in partner_sets if len(g) > 1)
    if paired == 0:
        raise MedContrastError(
            f"pairs.positives={unit}, but no {unit} has two usable training images "
            f"({n} images of {len(partner_sets)} {unit}s): there is no other image to pair with; "
            "set pairs.positives=image"
        )
    if say:
        print(
            f"note: pairs.positives={unit}: {paired} of {n} images have another image of the "
            f"same {unit} to pair with; the other {n - paired} pair with themselves",
            file=sys.stderr,
        )


def partner_index(
    i: int, partner_sets: list[np.ndarray] | None, set_of: np.ndarray | None, seed: int
) -> int:
    """For MICLe-style positives: another image of the same patient or study (or ``i`` itself).
    ``partner_sets`` lists the images of each patient (or study), ``set_of`` (N,) is the set of
    each image; None pairs every image with itself."""
    if partner_sets is None or set_of is None:
        return i
    members = partner_sets[set_of[i]]
    if len(members) < 2:
        return i
    others = members[members != i]
    return int(others[draw_seed(seed, i, Stream.PARTNER) % len(others)])


def partners(
    idx: np.ndarray, partner_sets: list[np.ndarray], set_of: np.ndarray, seed: int, epoch: int
) -> np.ndarray:
    """(B,) the partner (:func:`partner_index`) of each sample of a batch in ``epoch``."""
    epoch_seed = draw_seed(seed, epoch)
    return np.array([partner_index(int(i), partner_sets, set_of, epoch_seed) for i in idx])


class PairBatchDataset(Dataset):
    """For the batched path: item = one whole batch of un-augmented pairs from the cache
    (``x1`` and, where partners are paired, ``x2``: (B, C, *size) float32).

    Used with ``batch_size=None`` so DataLoader workers read (and pin) whole batches ahead of the
    training step; augmentation then runs on the device.
    """

    def __init__(
        self,
        array: np.ndarray,
        patients: np.ndarray,
        seed: int,
        partner_sets: list[np.ndarray] | None = None,
        set_of: np.ndarray | None = None,
        labels: np.ndarray | None = None,
    ) -> None:
        self.array, self.patients, self.seed = array, patients, seed
        self.partner_sets, self.set_of, self.labels = partner_sets, set_of, labels

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, batch: list[tuple[int, int]]) -> dict[str, torch.Tensor]:
        """A :class:`~medcontrast.data.sampling.BatchSampler` batch: (epoch, index) pairs."""
        epoch, idx = split_tagged(batch)
        order = np.argsort(idx)  # sorted reads are faster on a memory map
        x = np.empty((len(idx), *self.array.shape[1:]), dtype=np.float32)
        x[order] = self.array[idx[order]]
        out = {
            "x1": torch.from_numpy(x),
            "index": torch.from_numpy(idx),
            "patient": torch.from_numpy(self.patients[idx].astype(np.int64)),
        }
        if self.partner_sets is not None:
            partner = partners(idx, self.partner_sets, self.set_of, self.seed, epoch)
            out["x2"] = torch.from_numpy(np.asarray(self.array[partner], dtype=np.float32))
        if self.labels is not None:
            out["label"] = torch.from_numpy(self.labels[idx].astype(np.int64))
        return out
