"""Choosing manifest rows for a stage, and the class list of a labeled subset."""

from __future__ import annotations

import numpy as np
import pandas as pd

from medcontrast.data.manifest import Manifest
from medcontrast.errors import MedContrastError


def select_rows(
    manifest: Manifest,
    ndim: int,
    modalities: list[str] | None = None,
    splits: list[str] | None = None,
    labeled: bool = False,
    max_samples: int = 0,
    seed: int = 0,
) -> pd.DataFrame:
    """Usable rows of the given dimensionality, modalities and splits (manifest order kept)."""
    t = manifest.ok
    t = t[t["ndim"] == ndim]
    if modalities:
        wanted = {m.upper() for m in modalities}
        t = t[t["modality"].str.upper().isin(wanted)]
    if splits:
        t = t[t["split"].isin(splits)]
    if labeled:
        t = t[t["label"] != ""]
    if max_samples and len(t) > max_samples:
        keep = np.sort(np.random.default_rng(seed).choice(len(t), max_samples, replace=False))
        t = t.iloc[keep]
    if t.empty:
        what = f"{ndim}D" + (f" {'/'.join(modalities)}" if modalities else "")
        where = f" in splits {', '.join(splits)}" if splits else ""
        lab = " labeled" if labeled else ""
        hint = ". Labels come from `medcontrast index --labels` or --labels-from-folders"
        raise MedContrastError(
            f"manifest {manifest.path} has no usable{lab} {what} samples{where} "
            f"({len(manifest.ok)} usable rows in all){hint if labeled else ''}"
        )
    return t.reset_index(drop=True)


def class_names(labels: pd.Series) -> list[str]:
    """Sorted class names; numeric names sort numerically ("2" before "10")."""
    names = sorted(set(labels) - {""})
    try:
        return sorted(names, key=float)
    except ValueError:
        return names


def label_codes(labels: pd.Series, names: list[str] | None = None) -> tuple[list[str], np.ndarray]:
    """The class names (``names``, or :func:`class_names` of ``labels``) and the (N,) integer
    class index of each label (pretraining's SupCon and the evaluation use the same codes)."""
    names = names if names is not None else class_names(labels)
    return names, labels.map({c: i for i, c in enumerate(names)}).to_numpy()
