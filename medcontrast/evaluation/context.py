"""What the runs of one evaluation share: the labeled images, their splits and budget draws,
and the frozen features of each initialisation (computed once, kept in the evaluation folder)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from medcontrast.data.cache import CacheSettings, load_selection
from medcontrast.data.selection import class_names, label_codes
from medcontrast.errors import MedContrastError, first_line
from medcontrast.evaluation.budgets import Budget, Selection, patient_order, select
from medcontrast.evaluation.degenerate import feature_problem
from medcontrast.evaluation.folder import (
    DATASET,
    LABELS,
    feature_path,
    resolve_positive,
    save_array,
)
from medcontrast.evaluation.inits import Init
from medcontrast.evaluation.norm_stats import norm_rows
from medcontrast.evaluation.probes import extract_features


class EvalData:
    """What the runs of one evaluation share: the labeled images (cached), their class codes and
    splits, the budget draws, and the frozen features of each initialisation.

    Args:
        data: the ``data:`` settings (manifest, preprocessing, cache).
        folder: the evaluation folder (features and labels are kept there).
        device: where features are extracted.
        positive_class: the class sensitivity refers to; empty: the last in sorted order.
        budgets, seeds, group: the label budgets, their seeds, and ``patient`` to keep a
            patient's images together in a draw (``none``: images drawn alone).
        batch_size: of feature extraction.
    """

    def __init__(
        self,
        data: CacheSettings,
        folder: Path,
        device: torch.device,
        positive_class: str,
        budgets: list[Budget],
        seeds: list[int],
        group: str,
        batch_size: int,
        progress: bool = True,
    ) -> None:
        self.folder, self.device, self.batch_size = folder, device, batch_size
        self.manifest_name = Path(data.manifest).name
        self.cache, self.manifest_sha256 = load_selection(
            data, splits=None, labeled=True, progress=progress
        )
        self.classes = class_names(self.cache.rows["label"])
        if len(self.classes) < 2:
            raise MedContrastError(
                f"only one class ({self.classes[0]}) among the labeled rows; need two or more"
            )
        t = self.cache.rows
        _, self.y = label_codes(t["label"], self.classes)
        self.split = {
            s: np.flatnonzero((t["split"] == s).to_numpy()) for s in ("train", "val", "test")
        }
        for s in ("train", "test"):
            if len(self.split[s]) == 0:
                raise MedContrastError(
                    f"no labeled images in the {s} split; the manifest's splits "
                    f"hold {t['split'].value_counts().to_dict()}"
                )
        missing = set(range(len(self.classes))) - set(self.y[self.split["train"]])
        if missing:
            raise MedContrastError(
                f"class(es) {[self.classes[i] for i in missing]} have no labeled training image"
            )
        # Sensitivity refers to this class; by default the last in sorted order.
        self.positive = resolve_positive(positive_class, self.classes, len(self.classes) - 1, "")
        self.train_rows = t.iloc[self.split["train"]].reset_index(drop=True)
        self.budgets = budgets
        self.selections: dict[tuple[str, int], Selection] = {}
        for s in seeds:
            strata = patient_order(self.train_rows, self.classes, s, group)
            for b in budgets:
                self.selections[(b.name, s)] = select(
                    self.train_rows, self.classes, b, s, group, strata
                )
        # Unlabelled training images batch norm takes its statistics from, for every init alike.
        self.norm = norm_rows(self.split["train"])
        self._features: dict[str, np.ndarray] = {}
        self.feature_notes: dict[str, str] = {}

    def features(self, init: Init) -> np.ndarray:
        """Frozen features (N, D) of every labeled image, batch norm's statistics first taken
        from the unlabelled training images ``norm`` (:mod:`.norm_stats`). Computed once per
        init, kept on disk; a file that a kill left damaged, or of another length, is recomputed.
        Features that do not vary get a note in ``feature_notes``."""
        if init.name not in self._features:
            path = feature_path(self.folder, init.name)
            feats = _load_features(path, len(self.cache))
            if feats is None:
                encoder = init.make(0)
                feats = extract_features(
                    encoder,
                    self.cache.array,
                    self.device,
                    self.batch_size,
                    norm_images=self.cache.array[self.norm],
                )
                if not np.isfinite(feats).all():
                    raise MedContrastError(f"initialisation {init.name} gives NaN features")
                save_array(path, feats)
            self._features[init.name] = feats
            problem = feature_problem(feats)
            if problem:
                self.feature_notes[init.name] = problem
                print(f"warning: {init.name}: frozen {problem}", file=sys.stderr)
        return self._features[init.name]

    def write_labels(self) -> None:
        """What the report needs of the data, without a patient identifier: labels of the
        validation and test splits, test patients as integer codes, counts per split and class.
        """
        t = self.cache.rows
        te = self.split["test"]
        groups = pd.factorize(t["patient"].iloc[te])[0]
        np.savez(
            self.folder / LABELS,
            y_val=self.y[self.split["val"]],
            y_test=self.y[te],
            test_groups=groups,
        )
        table = []
        for split in ("train", "val", "test"):
            s = t[t["split"] == split]
            row = {"split": split}
            for c in self.classes:
                sc = s[s["label"] == c]
                row[c] = f"{len(sc)} ({sc['patient'].nunique()})"
            row["total"] = f"{len(s)} ({s['patient'].nunique()})"
            table.append(row)
        dataset = {
            "classes": self.classes,
            "positive": self.positive,
            "manifest": self.manifest_name,
            "manifest_sha256": self.manifest_sha256,
            "failed": len(self.cache.failed),
            "table": table,
        }
        (self.folder / DATASET).write_text(json.dumps(dataset, indent=2))


def _load_features(path: Path, n: int) -> np.ndarray | None:
    """Saved features (n, D), or None (with a note) when absent, unreadable or of another shape."""
    if not path.exists():
        return None
    try:
        feats = np.load(path)
    except (ValueError, OSError, EOFError) as exc:
        reason = first_line(exc)
    else:
        if feats.ndim == 2 and len(feats) == n and np.isfinite(feats).all():
            return feats
        reason = f"shape {feats.shape}, expected ({n}, D) finite values"
    print(f"note: {path} is damaged ({reason}); recomputing it", file=sys.stderr)
    return None
