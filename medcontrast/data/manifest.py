"""The manifest: the only contract between file handling and learning.

One CSV row per sample, plus a small JSON sidecar (``<name>.json``) with the archive root and
counts. Source paths are relative to that root; identifiers are pseudonyms (see
:mod:`medcontrast.archive.pseudonyms`). Nothing after the manifest rescans folders.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from medcontrast.data.private_paths import real_path, resolve_private
from medcontrast.errors import MedContrastError

COLUMNS = [
    "sample_id",  # pseudonym of the sample (stable for a salt)
    "status",  # ok | skipped
    "reason",  # why skipped, in words
    "format",  # dicom | dicom-series | nifti | image | npz | other
    "modality",  # DICOM Modality (CR, DX, CT, MR...) or empty
    "ndim",  # 2 or 3
    "shape",  # HxW for 2D (rows x columns), XxYxZ for 3D
    "spacing",  # mm per axis, same order as shape; empty when unknown
    "patient",  # patient pseudonym
    "study",  # study pseudonym
    "series",  # series pseudonym
    "label",  # class name, empty when unknown
    "split",  # train | val | test
    "source",  # path(s) relative to the root, folder names as pseudonyms, '|' between slices
    "member",  # item inside a container file (npz: "<split>:<index>")
    "notes",  # adjustments made while indexing, in words
]
SPLITS = ("train", "val", "test")
PRIVATE_PREFIX = "private:"
# The sidecar's "folders" value when every folder name in ``source`` is a pseudonym (manifests
# of earlier versions hold the real names and are read as they are).
FOLDERS_PSEUDONYMISED = "pseudonymised"


@dataclass
class Manifest:
    """A loaded manifest: the table, where its sources live, and its content hash."""

    table: pd.DataFrame
    root: Path
    path: Path | None = None
    private_map: Path | None = None
    hidden_folders: bool = False
    problems: pd.Series = field(init=False, repr=False)  # (rows,) row_problems, "" when sound
    sound: pd.Series = field(init=False, repr=False)  # (rows,) True where nothing is wrong

    def __post_init__(self) -> None:
        # once, not per use: a manifest may hold a million rows
        self.problems = row_problems(self.table)
        self.sound = self.problems == ""

    @property
    def ok(self) -> pd.DataFrame:
        """The rows to use: status ``ok`` and nothing wrong in them (:func:`row_problems`)."""
        return self.table[(self.table["status"] == "ok") & self.sound]

    def source_paths(self, row: pd.Series | dict[str, str]) -> list[Path]:
        """Absolute paths of a row's files (private paths are looked up in the private map)."""
        parts = str(row["source"]).split("|")
        if parts and parts[0].startswith(PRIVATE_PREFIX):
            if self.private_map is None:
                raise FileNotFoundError("manifest row has a private path but no private map")
            parts = resolve_private(self.private_map, parts[0][len(PRIVATE_PREFIX) :])
        elif self.hidden_folders and any("/" in p or p.startswith("fil-") for p in parts):
            if self.private_map is None:
                raise FileNotFoundError("manifest names its folders by pseudonym but has no map")
            parts = [real_path(self.private_map, p) for p in parts]
        return [self.root / p for p in parts]

    def digest(self) -> str:
        """SHA-256 of the manifest's rows (the run folder records it)."""
        return table_digest(self.table)


def row_problems(table: pd.DataFrame) -> pd.Series:
    """(rows,) what is wrong with each row, "" for a sound one. ``medcontrast index`` writes
    none of these; a hand-edited manifest may hold them, and such a row is left out (said by
    :func:`read_manifest`), never read: a source outside the archive root (absolute, or
    climbing out with ``..``), a status other than ok or skipped, a usable row that is neither
    2D nor 3D."""
    problems = pd.Series("", index=table.index, dtype=object)
    ok = table["status"] == "ok"
    problems[~table["status"].isin(["ok", "skipped"])] = "its status is neither ok nor skipped"
    problems[ok & ~table["ndim"].isin([2, 3])] = "its ndim is neither 2 nor 3"
    problems[ok & _outside_root(table["source"].astype(str))] = (
        "its source lies outside the archive root"
    )
    return problems


# A part of a source ('|' between parts) that is absolute (/x, \\x, C:) or climbs out (..).
_OUTSIDE = re.compile(r"(?:^|\|)(?:[/\\]|[A-Za-z]:)|(?:^|[|/\\])\.\.(?:[|/\\]|$)")


def _outside_root(sources: pd.Series) -> pd.Series:
    return sources.str.contains(_OUTSIDE)


def _note_problems(manifest: Manifest) -> None:
    """One line on stderr naming the rows :func:`row_problems` leaves out (by line and
    pseudonymous sample id: a hand-edited source may carry a name)."""
    table, bad = manifest.table, manifest.problems[~manifest.sound]
    if bad.empty:
        return
    listed = "; ".join(
        f"line {i + 2} ({table.at[i, 'sample_id'] or 'no id'}): {why}" for i, why in bad[:3].items()
    )
    more = f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
    print(
        f"note: manifest {manifest.path}: {len(bad)} row(s) left out: {listed}{more}",
        file=sys.stderr,
    )


def table_digest(table: pd.DataFrame) -> str:
    data = table[COLUMNS].to_csv(index=False, lineterminator="\n").encode()
    return hashlib.sha256(data).hexdigest()


def sidecar_path(path: Path) -> Path:
    return path.with_suffix(".json")


def write_manifest(table: pd.DataFrame, path: Path, meta: dict) -> None:
    """Write the CSV and its JSON sidecar, each through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    table[COLUMNS].to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, path)
    side = sidecar_path(path)
    tmp = side.with_name(side.name + ".tmp")
    tmp.write_text(json.dumps({**meta, "sha256": table_digest(table)}, indent=2))
    os.replace(tmp, side)


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Load a manifest and check its columns; the root comes from the sidecar."""
    path = Path(path)
    if not path.is_file():
        raise MedContrastError(
            f"manifest {path} does not exist (make one with `medcontrast index`)"
        )
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise MedContrastError(f"manifest {path} is not a readable CSV file: {exc}") from exc
    missing = [c for c in COLUMNS if c not in table.columns]
    if missing:
        raise MedContrastError(f"manifest {path} lacks the columns {', '.join(missing)}")
    table["ndim"] = pd.to_numeric(table["ndim"], errors="coerce").fillna(0).astype(int)
    side = sidecar_path(path)
    root, private_map, hidden = path.parent, None, False
    if side.is_file():
        meta = json.loads(side.read_text())
        root = Path(meta.get("root", root))
        if not root.is_absolute():
            root = (path.parent / root).resolve()
        if meta.get("private_map"):
            private_map = Path(meta["private_map"])
        hidden = meta.get("folders") == FOLDERS_PSEUDONYMISED
    manifest = Manifest(table, root, path, private_map, hidden)
    _note_problems(manifest)
    return manifest
