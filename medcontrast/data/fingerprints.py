"""Pixel fingerprints: which images two cached selections share, whatever their manifests.

A pretraining run keeps the fingerprints of its pool; an evaluation counts how many of its test
images are among them, so that an encoder pretrained on an archive that holds the task's test
images is flagged (its test figures would be optimistic). A fingerprint is an 8-byte BLAKE2b of
one preprocessed image's bytes: it names no patient or file, and two selections can be compared
only when they were preprocessed alike (the run records the preprocessing key beside them).
Pixel-identical duplicates are found; re-encoded or re-cropped copies are not.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

POOL_FINGERPRINTS = "pool_fingerprints.npy"


def image_fingerprints(
    array: np.ndarray, index: np.ndarray | None = None, chunk: int = 2048
) -> np.ndarray:
    """(K,) uint64 fingerprints of the images ``index`` (default: all N) of ``array``
    (N, C, *size), read ``chunk`` images at a time so that a memory-mapped cache is never
    loaded whole."""
    index = np.arange(len(array)) if index is None else np.asarray(index)
    out = np.empty(len(index), dtype=np.uint64)
    for start in range(0, len(index), chunk):
        block = np.ascontiguousarray(array[index[start : start + chunk]])
        for i, image in enumerate(block):
            digest = hashlib.blake2b(image.tobytes(), digest_size=8).digest()
            out[start + i] = np.frombuffer(digest, dtype=np.uint64)[0]
    return out


def save_pool(path: Path, array: np.ndarray) -> None:
    """Write the sorted, unique fingerprints of a pretraining pool."""
    np.save(path, np.unique(image_fingerprints(array)))


def count_shared(pool: Path, fingerprints: np.ndarray) -> int:
    """How many of ``fingerprints`` (of :func:`image_fingerprints`) the pool file ``pool`` holds."""
    return int(np.isin(fingerprints, np.load(pool)).sum())
