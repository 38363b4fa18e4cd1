"""``medcontrast index``: walk an archive (read-only) and write its manifest.

Stages: walk -> scan headers (no pixels) -> group into samples -> join labels -> pseudonymise ->
assign patient-level splits -> verify pixels one sample at a time -> write. Every file ends up in
the manifest, either inside an ``ok`` sample or as a ``skipped`` row with its reason.
"""

from __future__ import annotations

import os
import re
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from medcontrast._version import __version__
from medcontrast.archive.duplicates import (
    Duplicates,
    coarse_digest,
    find_duplicates,
    mark_duplicates,
    pixel_digest,
)
from medcontrast.archive.labels import LabelTable, folder_label
from medcontrast.archive.pseudonyms import (
    PathHider,
    PhiMatcher,
    Pseudonymizer,
    default_salt_path,
    load_salt,
    unit_interval,
)
from medcontrast.archive.scan import FileRecord, scan_file
from medcontrast.archive.series import Draft, samples_from_files
from medcontrast.data.loading import (
    NpzStore,
    SampleLoadError,
    check_pixels,
    load_npz_member,
    load_sample,
)
from medcontrast.data.manifest import (
    COLUMNS,
    FOLDERS_PSEUDONYMISED,
    PRIVATE_PREFIX,
    write_manifest,
)
from medcontrast.data.private_paths import (
    private_map_path,
    scrub,
    store_private,
)
from medcontrast.errors import MedContrastError
from medcontrast.progress import progress_bar


@dataclass
class IndexResult:
    table: pd.DataFrame
    n_files: int
    seconds: float
    duplicates: Duplicates = field(default_factory=Duplicates)

    @property
    def n_ok(self) -> int:
        return int((self.table["status"] == "ok").sum())

    def summary(self) -> str:
        """Counts of usable samples by kind and of skipped rows by reason."""
        t = self.table
        ok = t[t["status"] == "ok"]
        lines = [
            f"{self.n_files} files -> {len(ok)} usable samples, "
            f"{len(t) - len(ok)} skipped ({self.seconds:.1f} s)"
        ]
        for (fmt, ndim), n in sorted(Counter(zip(ok["format"], ok["ndim"], strict=True)).items()):
            lines.append(f"  ok       {n:6d}  {fmt} {ndim}D")
        labeled = ok[ok["label"] != ""]
        if len(ok):
            lines.append(
                f"  labeled  {len(labeled):6d}  ({', '.join(f'{k}: {v}' for k, v in sorted(Counter(labeled['label']).items()))})"
            )
            lines.append(
                "  splits   "
                + ", ".join(
                    f"{s}: {int((ok['split'] == s).sum())}" for s in ("train", "val", "test")
                )
            )
        skipped = t[t["status"] == "skipped"]
        for reason, n in Counter(reason_category(r) for r in skipped["reason"]).most_common():
            lines.append(f"  skipped  {n:6d}  {reason}")
        return "\n".join(lines + self.duplicates.summary())


def reason_category(reason: str) -> str:
    """Group similar reasons for the summary ("4D volume 10x10x10x65 (...)" -> "4D volume")."""
    head = re.split(r"[:(]", reason, maxsplit=1)[0]
    head = re.sub(r"\b\d+(x\d+)*\b", "", head)
    return re.sub(r"\s+", " ", head).strip() or reason


def walk(root: Path) -> Iterator[tuple[Path | None, str]]:
    """Yield (file, "") for every file under ``root`` and (None, reason) for unreadable folders."""
    errors: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=errors.append):
        dirnames.sort()
        for name in sorted(filenames):
            yield Path(dirpath) / name, ""
        while errors:
            err = errors.pop()
            yield Path(err.filename) if err.filename else None, f"unreadable folder: {err.strerror}"
    while errors:
        err = errors.pop()
        yield Path(err.filename) if err.filename else None, f"unreadable folder: {err.strerror}"


def _map(fn, items: list, workers: int, desc: str, progress: bool, chunksize: int = 16) -> Iterable:
    bar = dict(
        desc=desc,
        total=len(items),
        unit="file",
        disable=not progress,
        file=sys.stderr,
        smoothing=0.1,
    )
    if workers > 1 and len(items) > 64:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            yield from progress_bar(pool.map(fn, items, chunksize=chunksize), **bar)
    else:
        yield from progress_bar(map(fn, items), **bar)


def _scan_one(args: tuple[Path, Path]) -> FileRecord:
    return scan_file(*args)


def _verify_one(
    args: tuple[str, list[Path], str, str, bool],
) -> tuple[str, tuple, tuple | None, str, str]:
    """Load one sample and check its pixels; returns (error, shape, spacing, pixel digest,
    coarse digest or "")."""
    fmt, paths, member, name, near = args
    try:
        loaded = load_sample(fmt, paths, member)
        check_pixels(loaded.array, name)
    except SampleLoadError as exc:
        return _strip_name(str(exc), name), (), None, "", ""
    except Exception as exc:  # a reader bug must not stop the walk of a large archive
        return f"could not be read ({type(exc).__name__})", (), None, "", ""
    arr = loaded.array
    coarse = coarse_digest(arr) if near else ""
    return "", tuple(int(s) for s in arr.shape), loaded.spacing, pixel_digest(arr), coarse


def _strip_name(message: str, name: str) -> str:
    # Messages begin with the file name; the manifest row already names the file.
    prefix = f"{name}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _verify_npz(root: Path, drafts: list[Draft], near: bool = False) -> None:
    """Check MedMNIST images array by array (vectorised), marking blank or non-finite ones, and
    hash the others' pixels as :func:`load_npz_member` gives them (for :mod:`duplicates`)."""
    store = NpzStore()
    for draft in drafts:
        split = draft.member.split(":")[0]
        try:
            arr = store.get(root / draft.files[0], f"{split}_images")
        except SampleLoadError as exc:
            draft.error = _strip_name(str(exc), Path(draft.files[0]).name)
            continue
        key = (id(arr), "stats")
        stats = _NPZ_STATS.get(key)
        if stats is None:
            flat = arr.reshape(arr.shape[0], -1)
            stats = (
                flat.min(axis=1),
                flat.max(axis=1),
                np.isfinite(flat).all(axis=1)
                if flat.dtype.kind == "f"
                else np.ones(len(flat), bool),
            )
            _NPZ_STATS[key] = stats
        i = int(draft.member.split(":")[1])
        if not stats[2][i]:
            draft.error = "NaN or infinite pixel values"
        elif stats[0][i] == stats[1][i]:
            draft.error = f"every pixel has the same value ({float(stats[0][i]):g}); blank image"
        else:
            pixels = load_npz_member(root / draft.files[0], draft.member, store).array
            draft.pixels = pixel_digest(pixels)
            draft.coarse = coarse_digest(pixels) if near else ""
    _NPZ_STATS.clear()


_NPZ_STATS: dict = {}


def _fmt_tuple(values: Iterable[float] | None) -> str:
    if not values:
        return ""
    return "x".join(f"{v:.6g}" for v in values)


def _split(pseudonym: str, fractions: tuple[float, float, float]) -> str:
    u = unit_interval(pseudonym)
    if u < fractions[0]:
        return "train"
    if u < fractions[0] + fractions[1]:
        return "val"
    return "test"


def _scan(
    root: Path, only: Path | None, workers: int, progress: bool
) -> tuple[list[Path], list[FileRecord]]:
    """The archive's files (or ``only``) and a header record of each, plus one record per
    folder that could not be read."""
    files, folder_errors = [], []
    entries = [(only, "")] if only else walk(root)
    for path, err in progress_bar(
        entries, desc="walk", unit="file", disable=not progress, file=sys.stderr
    ):
        if err:
            folder_errors.append((path, err))
        else:
            files.append(path)
    records = list(_map(_scan_one, [(p, root) for p in files], workers, "scan", progress, 64))
    for path, err in folder_errors:
        # A trailing "/" marks a folder: every part of its path is a folder name to hide.
        rel = path.relative_to(root).as_posix() + "/" if path and path.is_relative_to(root) else "?"
        records.append(FileRecord(rel, "other", err))
    return files, records


def _join_labels(
    drafts: list[Draft], label_table: LabelTable | None, labels_from_folders: bool
) -> None:
    """Each usable sample's label from the labels CSV, else (when asked) its folder's name."""
    for draft in drafts:
        if draft.error:
            continue
        label, note = label_table.lookup(draft) if label_table else ("", "")
        if not label and labels_from_folders and draft.format in ("image", "nifti"):
            label = folder_label(draft)
        if label:
            draft.label = label
        if note:
            draft.notes.append(note)


def _verify(root: Path, drafts: list[Draft], workers: int, progress: bool, near: bool) -> None:
    """Decode every usable sample once: one that fails gets its reason, the rest their shape
    and pixel digests (for :mod:`duplicates`)."""
    todo = [d for d in drafts if not d.error and d.format != "npz"]
    jobs = [
        (d.format, [root / f for f in d.files], d.member, Path(d.files[0]).name, near) for d in todo
    ]
    for draft, (err, shape, spacing, pixels, coarse) in zip(
        todo, _map(_verify_one, jobs, workers, "verify", progress, 4), strict=True
    ):
        if err:
            draft.error = err
        else:
            draft.shape = shape
            draft.spacing = spacing or draft.spacing
            draft.pixels, draft.coarse = pixels, coarse
    _verify_npz(root, [d for d in drafts if not d.error and d.format == "npz"], near)


def build_index(
    root: str | Path,
    labels: str | Path | None = None,
    labels_from_folders: bool = False,
    salt_file: str | Path | None = None,
    split_fractions: tuple[float, float, float] = (0.7, 0.15, 0.15),
    verify: bool = True,
    workers: int = 1,
    progress: bool = True,
    near_duplicates: bool = False,
    drop_duplicates: bool = False,
) -> IndexResult:
    """Index ``root`` into a manifest table (see :data:`medcontrast.data.manifest.COLUMNS`).

    Verifying (decoding every sample) also finds images whose pixels are identical (with
    ``near_duplicates``, also near-identical at low resolution) under different patients or
    splits (:mod:`medcontrast.archive.duplicates`): noted in their rows, counted in the
    sidecar, and with ``drop_duplicates`` all but one of each group skipped."""
    start = time.time()
    root = Path(root).resolve()
    only: Path | None = None
    if (
        root.is_file()
    ):  # one file (e.g. a MedMNIST .npz): index it alone, paths relative to its folder
        only, root = root, root.parent
    elif not root.is_dir():
        raise MedContrastError(f"archive {root} does not exist")
    if abs(sum(split_fractions) - 1.0) > 1e-6 or min(split_fractions) < 0:
        raise MedContrastError(f"split fractions {split_fractions} must be >= 0 and sum to 1")
    label_table = LabelTable.read(labels) if labels else None
    salt = load_salt(salt_file)
    pseudo = Pseudonymizer(salt)

    files, records = _scan(root, only, workers, progress)
    drafts = samples_from_files(records)

    _join_labels(drafts, label_table, labels_from_folders)
    if verify:
        _verify(root, drafts, workers, progress, near_duplicates)

    folders: dict[str, str] = {}
    hidden = PathHider(pseudo, folders)
    for draft in drafts:  # reader messages quote paths: of the archive root, of patient folders
        if draft.error:
            quoted = [(root / f, hidden(f)) for f in draft.files]
            draft.error = scrub(draft.error, quoted, root)
    phi = PhiMatcher(set().union(*(r.phi for r in records)) if records else set())
    table, private = _rows(drafts, pseudo, split_fractions, phi, hidden)
    duplicates = Duplicates(checked=False)
    if verify:
        coarse = [d.coarse for d in drafts] if near_duplicates else None
        groups = find_duplicates(table, [d.pixels for d in drafts], coarse)
        duplicates = mark_duplicates(table, groups, drop_duplicates)
    map_path = private_map_path(Path(salt_file).expanduser() if salt_file else default_salt_path())
    store_private(map_path, {**private, **{k: [v] for k, v in folders.items()}})
    table.attrs["meta"] = {
        "root": str(root),
        "medcontrast": __version__,
        "salt_fingerprint": pseudo.fingerprint(),
        "split_fractions": list(split_fractions),
        "private_map": str(map_path) if private or folders else "",
        "folders": FOLDERS_PSEUDONYMISED,
        "file_names": "screened",  # names that may identify are pseudonyms (private_paths)
        "labels": Path(labels).name if labels else ("folders" if labels_from_folders else ""),
        "files": len(files),
        "duplicates": duplicates.record(),
    }
    return IndexResult(table, len(files), time.time() - start, duplicates)


def _rows(
    drafts: list[Draft],
    pseudo: Pseudonymizer,
    fractions: tuple[float, float, float],
    phi: PhiMatcher,
    hidden: PathHider,
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    rows, private = [], {}
    for d in drafts:
        patient = pseudo("patient", d.keys.get("patient_id", d.files[0]))
        sample_id = pseudo("sample", "|".join(d.files) + "#" + d.member)
        source = "|".join(hidden(f) for f in d.files)
        if phi(d.files):
            key = pseudo("path", source)
            private[key] = d.files
            source = PRIVATE_PREFIX + key
            d.notes.append("source path contains an identifier: kept in the private path map")
        ok = not d.error
        rows.append(
            {
                "sample_id": sample_id,
                "status": "ok" if ok else "skipped",
                "reason": d.error,
                "format": d.format,
                "modality": d.modality,
                "ndim": d.ndim if ok else (d.ndim or ""),
                "shape": _fmt_tuple(d.shape),
                "spacing": _fmt_tuple(d.spacing)
                if d.spacing and all(s > 0 for s in d.spacing)
                else "",
                "patient": patient,
                "study": pseudo("study", d.keys.get("study_uid", "")),
                "series": pseudo("series", d.keys.get("series_uid", "")),
                "label": d.label if ok else "",
                "split": (d.split or _split(patient, fractions)) if ok else "",
                "source": source,
                "member": d.member,
                "notes": "; ".join(d.notes),
            }
        )
    table = pd.DataFrame(rows, columns=COLUMNS)
    return table, private


def outside_archive(out: str | Path, root: str | Path) -> Path:
    """``out`` resolved, or an error when it lies inside the archive (which stays untouched)."""
    out = Path(out).resolve()
    root = Path(root).resolve()
    root = root.parent if root.is_file() else root
    if out.is_relative_to(root):
        raise MedContrastError(
            f"refusing to write {out} inside the archive {root}: medcontrast never modifies the "
            "archive; choose an output outside it"
        )
    return out


def write_index(result: IndexResult, out: str | Path, root: str | Path) -> Path:
    """Write the manifest (refusing any place inside the archive, which stays untouched)."""
    out = outside_archive(out, root)
    meta = dict(result.table.attrs.get("meta", {}))
    write_manifest(result.table, out, meta)
    return out
