import numpy as np
import pandas as pd
import pytest

from medcontrast.errors import MedContrastError
from medcontrast.evaluation.budgets import Budget, budgets_from, select


def _train(n_patients=40, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = "a" if p % 3 else "b"
        for _ in range(int(rng.integers(1, 4))):
            rows.append({"patient": f"pat-{p}", "label": label})
    return pd.DataFrame(rows)


def test_stratified_grouped_nested_and_seeded():
    t = _train()
    classes = ["a", "b"]
    budgets = budgets_from([0.1, 0.5, 1.0], [1, 3])
    for seed in (0, 1):
        previous = None
        for b in [x for x in budgets if x.kind == "fraction"]:
            sel = select(t, classes, b, seed)
            chosen = t.iloc[sel.indices]
            assert set(chosen["label"]) == {"a", "b"}  # stratified: every class
            for patient in chosen["patient"].unique():  # grouped: whole patients
                assert set(t.index[t["patient"] == patient]) <= set(sel.indices)
            if previous is not None:
                assert set(previous) <= set(sel.indices)  # nested
            previous = sel.indices
        assert len(select(t, classes, Budget("fraction", 1.0), seed).indices) == len(t)
    a = select(t, classes, Budget("shots", 3), 0).indices
    assert np.array_equal(a, select(t, classes, Budget("shots", 3), 0).indices)
    assert not np.array_equal(a, select(t, classes, Budget("shots", 3), 1).indices)
    counts = t.iloc[a]["label"].value_counts()
    assert (counts >= 3).all()
    assert set(select(t, classes, Budget("shots", 1), 0).indices) <= set(a)


def test_adjustments_are_recorded():
    t = _train(8)
    sel = select(t, ["a", "b"], Budget("fraction", 0.01), 0)
    assert any("raised to one patient" in n for n in sel.notes)
    sel = select(t, ["a", "b"], Budget("shots", 50), 0)
    assert any("has only" in n for n in sel.notes) and len(sel.indices) == len(t)


def test_bad_budgets():
    with pytest.raises(MedContrastError):
        budgets_from([1.5], [])
    with pytest.raises(MedContrastError):
        budgets_from([], [0])
    with pytest.raises(MedContrastError, match="no patient"):
        select(_train(), ["a", "b", "c"], Budget("shots", 1), 0)
