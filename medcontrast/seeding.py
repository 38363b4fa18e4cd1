"""Seeds of the random streams, all derived from a run's seed by :func:`draw_seed`.

Each stream has a tag, a number appended to the integers it is drawn from, so two streams drawn
from the same integers still differ. The tags are listed here (and pinned by a test: changing
one changes every result that depends on it); a new stream takes a new value. Ground floor: this
module imports nothing of the package.
"""

from __future__ import annotations

import enum
import hashlib


@enum.unique
class Stream(enum.IntEnum):
    """The tag of each random stream; ``draw_seed(..., Stream.X)`` mixes it in."""

    VIEW_1 = 1  # the first view of a sample (per-sample MONAI path): seed, epoch, index, 1
    VIEW_2 = 2  # the second view: seed, epoch, index, 2
    FINETUNE_ORDER = 5  # fine-tuning: the order of the labeled images in each epoch
    FINETUNE_AUGMENT = 6  # fine-tuning: the augmentation of the labeled images on the device
    PARTNER = 7  # the other image of the same patient a sample pairs with (MICLe)
    BATCH_ORDER = 17  # pretraining: the order of the samples in each epoch
    BUDGET = 31  # the labeled subset drawn per class for a budget and seed
    DEVICE_VIEWS = 99  # pretraining: the batched views' generator per step and process
    LOCAL_CROPS = 100  # pretraining: multi-crop's local crops per step and process (DINO)
    METHOD_DRAWS = (
        101  # pretraining: a method's own draws per step and process (corruptions, masks)
    )


def draw_seed(*parts: int) -> int:
    """A 32-bit seed from integers (stable across processes and Python versions).

    The partner draw of an epoch uses the untagged ``draw_seed(seed, epoch)``, the same in both
    view paths so that they pair the same images.
    """
    digest = hashlib.blake2b(",".join(str(int(x)) for x in parts).encode(), digest_size=4).digest()
    return int.from_bytes(digest, "little")
