"""Label budgets: which labeled training images a few-shot run may use.

Rules (the same for every initialisation, so comparisons are paired):

* only the labeled ``train`` split is sampled; ``val`` and ``test`` are fixed;
* grouped by patient: a patient's images are taken together, never split;
* stratified by class: each patient belongs to the stratum of its most frequent label, and every
  stratum is walked in its own seeded random order of patients;
* nested: for one seed, a larger budget extends a smaller one (a prefix of the same order);
* a fraction ``f`` takes patients from each stratum until it holds ``round(f x stratum images)``
  images; ``k`` shots take patients until the class has at least ``k`` images (whole patients can
  overshoot ``k``: the report gives the labels actually used);
* at least one patient per class, so a tiny fraction is raised to one patient per class; both
  adjustments are recorded as notes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from medcontrast.errors import MedContrastError
from medcontrast.seeding import Stream, draw_seed


@dataclass(frozen=True)
class Budget:
    """A label budget: ``kind`` "fraction" (value in (0, 1]) or "shots" (images per class)."""

    kind: str
    value: float

    @property
    def name(self) -> str:
        if self.kind == "fraction":
            pct = self.value * 100
            return f"{pct:g}%"
        return f"{int(self.value)}-shot"

    @property
    def order(self) -> tuple[int, float]:
        return (0 if self.kind == "shots" else 1, self.value)


def budgets_from(fractions: list[float], shots: list[int]) -> list[Budget]:
    out = []
    for f in fractions:
        if not 0 < f <= 1:
            raise MedContrastError(f"budgets.fractions must be in (0, 1], got {f}")
        out.append(Budget("fraction", float(f)))
    for k in shots:
        if k < 1:
            raise MedContrastError(f"budgets.shots must be at least 1, got {k}")
        out.append(Budget("shots", int(k)))
    if not out:
        raise MedContrastError("no label budget: set budgets.fractions and/or budgets.shots")
    return sorted(set(out), key=lambda b: b.order)


@dataclass
class Selection:
    """Indices (into the labeled train table) chosen for one budget and seed, and notes."""

    indices: np.ndarray
    notes: list[str]


def patient_order(
    train: pd.DataFrame, classes: list[str], seed: int, group: str = "patient"
) -> dict[str, list[np.ndarray]]:
    """For each class stratum, the seeded order of its patients' row indices."""
    key = (
        train[group]
        if group != "none"
        else pd.Series(np.arange(len(train)).astype(str), index=train.index)
    )
    # Vectorised over patients: an archive has tens of thousands of them (MedNIST: one per image).
    # Majority label, ties to the first label in sorted order.
    counts = pd.crosstab(key.to_numpy(), train["label"].to_numpy())
    majority = counts.idxmax(axis=1)
    rows_of = pd.Series(np.arange(len(train))).groupby(key.to_numpy()).indices
    strata: dict[str, list[np.ndarray]] = {}
    for c in classes:
        patients = sorted(majority.index[majority == c])
        rng = np.random.default_rng(draw_seed(seed, classes.index(c), Stream.BUDGET))
        strata[c] = [rows_of[patients[i]] for i in rng.permutation(len(patients))]
    return strata


def select(
    train: pd.DataFrame,
    classes: list[str],
    budget: Budget,
    seed: int,
    group: str = "patient",
    strata: dict[str, list[np.ndarray]] | None = None,
) -> Selection:
    """The rows of ``train`` (labeled train split, index reset) that a budget uses.

    ``strata``: :func:`patient_order` for this seed, when already computed (it does not depend
    on the budget, which is what makes the budgets of one seed nested).
    """
    if strata is None:
        strata = patient_order(train, classes, seed, group)
    labels = train["label"].to_numpy()
    chosen: list[np.ndarray] = []
    notes: list[str] = []
    for c in classes:
        order = strata[c]
        if not order:
            raise MedContrastError(f"class {c!r} has no patient in the labeled training split")
        if budget.kind == "fraction":
            stratum_images = sum(len(r) for r in order)
            target = round(budget.value * stratum_images)
            if target < 1:
                notes.append(
                    f"{budget.name} of class {c} is under one image: raised to one patient"
                )
            taken, n = [], 0
            for rows in order:
                if n >= max(target, 1):
                    break
                taken.append(rows)
                n += len(rows)
        else:
            available = int((labels == c).sum())
            if available < budget.value:
                notes.append(
                    f"class {c} has only {available} labeled training images "
                    f"(fewer than {int(budget.value)}): all used"
                )
            taken, n = [], 0
            for rows in order:
                if n >= budget.value:
                    break
                taken.append(rows)
                n += int((labels[rows] == c).sum())
        chosen.extend(taken)
    idx = np.unique(np.concatenate(chosen))
    return Selection(idx, notes)
