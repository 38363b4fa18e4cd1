"""A small cached set held on the training device: batches taken by index, no loader at all.

MedMNIST-sized sets are tens of MB: on a GPU the whole float16 cache fits in a sliver of its
memory. Holding it there removes what a DataLoader costs at such sizes: worker processes
restarted at every epoch, a copy through pinned memory per batch, and a batch assembled in
Python per step. A batch is one ``index_select`` on the device. The batches are the very ones
the loader path makes (same :class:`~medcontrast.data.sampling.BatchSampler`, same partners), so
a run gives the same result either way and resumes exactly from a step.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from medcontrast.data.pairs import PairBatchDataset, partners
from medcontrast.data.sampling import BatchSampler, split_tagged
from medcontrast.errors import MedContrastError


def fits_on_device(nbytes: int, device: torch.device, share: float = 0.25) -> bool:
    """Whether ``nbytes`` take at most ``share`` of ``device``'s memory (a GPU; False on a CPU,
    where "on the device" gains nothing over the cache in memory)."""
    if device.type != "cuda":
        return False
    return nbytes <= share * torch.cuda.get_device_properties(device).total_memory


def float16_on(array: np.ndarray, device: torch.device) -> torch.Tensor:
    """A float16 copy of ``array`` on ``device`` (a copy: the cache is often a read-only memory
    map, which torch will not wrap). float16 loses nothing: the cache is float16."""
    return torch.from_numpy(np.array(array, dtype=np.float16)).to(device)


def held(array: np.ndarray, device: torch.device, share: float = 0.25) -> np.ndarray | torch.Tensor:
    """``array`` (n, C, *size) as :func:`float16_on` ``device`` when it fits in ``share`` of its
    memory (batches are then indexed there: no copy per batch, nor per epoch), else as is."""
    if not fits_on_device(array.size * 2, device, share):
        return array
    return float16_on(array, device)


def choose_placement(
    setting: str, views_path: str, device: torch.device, nbytes: int, share: float
) -> tuple[str, str]:
    """("on" or "off", why) for ``data.on_device``: where the cached set of ``nbytes`` lives.

    ``auto`` puts it on a GPU when it takes at most ``share`` of the GPU's memory and the views
    are made on the device (``views.path=batched``); elsewhere it is read by DataLoader workers.
    """
    size = f"{nbytes / 2**20:.0f} MB"
    if setting == "on" and views_path != "batched":
        raise MedContrastError(
            "data.on_device=on needs views.path=batched: with views.path=monai the views are "
            "made by DataLoader workers on the CPU"
        )
    if setting != "auto":
        return setting, f"data.on_device={setting}"
    if views_path != "batched":
        return "off", "views.path=monai makes the views in loader workers"
    if device.type != "cuda":
        return "off", f"the device is {device.type}: the loader reads the cache"
    if not fits_on_device(nbytes, device, share):
        total = torch.cuda.get_device_properties(device).total_memory
        limit = f"{share:g} of {total / 2**30:.0f} GiB"
        return "off", f"the cache ({size}) is over data.device_share ({limit})"
    return "on", f"the cache ({size}) fits in data.device_share={share:g} of the GPU"


class DeviceBatches:
    """Pretraining batches from a cached set on ``device``: what ``pairs`` gives through a
    DataLoader (``x1``, ``index``, ``patient``; ``x2`` where partners are paired; ``label``),
    already on the device, for the sampler's span of steps.

    Args:
        pairs: the samples and their pairing; its (N, C, *size) float16 cache is copied to
            ``device`` once (float16: half the memory of float32; a batch is widened to float32
            as it is taken, as the loader does).
    """

    def __init__(
        self, pairs: PairBatchDataset, sampler: BatchSampler, device: torch.device
    ) -> None:
        self.pairs, self.sampler, self.device = pairs, sampler, device
        self.data = float16_on(pairs.array, device)
        self.patients = torch.from_numpy(pairs.patients.astype(np.int64)).to(device)
        self.labels = None
        if pairs.labels is not None:
            self.labels = torch.from_numpy(pairs.labels.astype(np.int64)).to(device)

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        for batch in self.sampler:
            yield self.batch(*split_tagged(batch))

    def batch(self, epoch: int, idx: np.ndarray) -> dict[str, torch.Tensor]:
        """The batch of samples ``idx`` (B,) in ``epoch``: x1 (B, C, *size) float32 and the
        rest, on the device."""
        index = torch.from_numpy(idx.astype(np.int64)).to(self.device)
        out = {
            "x1": self.data.index_select(0, index).float(),
            "index": index,
            "patient": self.patients[index],
        }
        p = self.pairs
        if p.partner_sets is not None and p.set_of is not None:
            partner = partners(idx, p.partner_sets, p.set_of, p.seed, epoch)
            other = torch.from_numpy(partner.astype(np.int64)).to(self.device)
            out["x2"] = self.data.index_select(0, other).float()
        if self.labels is not None:
            out["label"] = self.labels[index]
        return out
