"""Join a labels CSV onto samples, by file or folder path, series, study, accession or patient.

The CSV is read into memory and matched against raw identifiers before they are hashed; only
the label travels into the manifest.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path, PurePosixPath

import pandas as pd

from medcontrast.archive.series import Draft
from medcontrast.errors import MedContrastError

KEY_ALIASES = {
    "path": "path",
    "file": "path",
    "filename": "path",
    "source": "path",
    "folder": "path",
    "series_uid": "series_uid",
    "seriesinstanceuid": "series_uid",
    "series": "series_uid",
    "study_uid": "study_uid",
    "studyinstanceuid": "study_uid",
    "study": "study_uid",
    "accession": "accession",
    "accessionnumber": "accession",
    "patient_id": "patient_id",
    "patientid": "patient_id",
    "patient": "patient_id",
}
PRECEDENCE = ("path", "series_uid", "study_uid", "accession", "patient_id")
LABEL_NAMES = ("label", "class", "target", "diagnosis")


class LabelTable:
    """Labels by key kind: ``{"path": {"a/b.dcm": "nodule"}, "patient_id": {...}}``."""

    def __init__(self, by_kind: dict[str, dict[str, str]], source: str) -> None:
        self.by_kind = by_kind
        self.source = source

    @classmethod
    def read(cls, path: str | Path) -> LabelTable:
        path = Path(path)
        try:
            table = pd.read_csv(path, dtype=str, keep_default_na=False)
        except Exception as exc:
            raise MedContrastError(f"labels file {path} is not a readable CSV file: {exc}") from exc
        cols = {c.strip().lower().replace(" ", ""): c for c in table.columns}
        label_col = next((cols[n] for n in LABEL_NAMES if n in cols), None)
        if label_col is None:
            raise MedContrastError(
                f"labels file {path} has no label column (one of {', '.join(LABEL_NAMES)})"
            )
        key_cols = [(KEY_ALIASES[k], c) for k, c in cols.items() if k in KEY_ALIASES]
        if not key_cols:
            raise MedContrastError(
                f"labels file {path} has no key column; use one of: path, series_uid, study_uid, "
                "accession, patient_id"
            )
        by_kind: dict[str, dict[str, str]] = defaultdict(dict)
        for _, row in table.iterrows():
            label = str(row[label_col]).strip()
            if not label:
                continue
            for kind, col in key_cols:
                value = str(row[col]).strip()
                if value:
                    if kind == "path":
                        value = PurePosixPath(value.replace("\\", "/").strip("/")).as_posix()
                    by_kind[kind][value] = label
        return cls(dict(by_kind), str(path))

    def lookup(self, draft: Draft) -> tuple[str, str]:
        """(label, note): the label of the most specific matching key; a note on conflicts."""
        for kind in PRECEDENCE:
            table = self.by_kind.get(kind)
            if not table:
                continue
            found = {table[k] for k in self._candidates(kind, draft) if k in table}
            if len(found) == 1:
                return found.pop(), ""
            if len(found) > 1:
                return "", f"conflicting labels by {kind}: left unlabeled"
        return "", ""

    @staticmethod
    def _candidates(kind: str, draft: Draft) -> list[str]:
        if kind == "path":
            out = []
            for f in draft.files:
                p = PurePosixPath(f)
                out.append(p.as_posix())
                out.extend(parent.as_posix() for parent in p.parents if parent.as_posix() != ".")
            return out
        value = draft.keys.get(kind, "")
        if kind == "patient_id" and value.startswith("bids:"):
            return [value, value[len("bids:") :], value[len("bids:sub-") :]]
        return [value] if value else []


def folder_label(draft: Draft) -> str:
    """The name of the folder that holds the file (``resized/Hand/001.jpeg`` -> ``Hand``)."""
    parent = PurePosixPath(draft.files[0]).parent.name
    return parent
