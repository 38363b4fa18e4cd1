"""Positive pairs across images (MICLe, Azizi et al., ICCV 2021): which image of the same patient
or study a sample's second view comes from. Both view paths pair the same images."""

from __future__ import annotations

import sys

import numpy as np
import pandas as pd

from medcontrast.errors import MedContrastError
from medcontrast.seeding import Stream, draw_seed


def group_codes(values: pd.Series) -> tuple[np.ndarray, list[np.ndarray]]:
    """(N,) integer codes of ``values`` (patient or study per sample) and, per code, the sample
    indices that carry it."""
    codes, uniques = pd.factorize(values)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    groups = [order[bounds[i] : bounds[i + 1]] for i in range(len(uniques))]
    return codes.astype(np.int64), groups


def check_partners(groups: list[np.ndarray], n: int, group: str, say: bool) -> None:
    """Patient-aware positives need images that share a patient (or study): stop when none do,
    rather than silently training plain two-views-of-one-image SimCLR; else say how many."""
    paired = sum(len(g) for g in groups if len(g) > 1)
    if paired == 0:
        raise MedContrastError(
            f"pairs.positives={group}, but no {group} has two usable training images "
            f"({n} images of {len(groups)} {group}s): there is no other image to pair with; "
            "set pairs.positives=image"
        )
    if say:
        print(
            f"note: pairs.positives={group}: {paired} of {n} images have another image of the "
            f"same {group} to pair with; the other {n - paired} pair with themselves",
            file=sys.stderr,
        )


def partner_index(
    i: int, groups: list[np.ndarray] | None, group_of: np.ndarray | None, seed: int
) -> int:
    """For MICLe-style positives: another image of the same patient or study (or ``i`` itself)."""
    if groups is None or group_of is None:
        return i
    members = groups[group_of[i]]
    if len(members) < 2:
        return i
    others = members[members != i]
    return int(others[draw_seed(seed, i, Stream.PARTNER) % len(others)])
