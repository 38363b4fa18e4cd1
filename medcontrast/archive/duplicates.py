"""Images that appear more than once under different patients or splits: the usual trace of a
study exported twice (a re-send, a merged patient record, a research copy with a new ID).

Such copies leak between a patient-level train and test split and count one patient's image as
another's. ``index`` hashes each decoded image (:func:`pixel_digest`: the exact pixels) and, when
asked, a coarse version of it (:func:`coarse_digest`: where the image at low resolution gets
brighter; a copy re-encoded with JPEG or rescaled changes a few of its bits), groups equal
digests (and coarse digests a few bits apart) and reports the groups that span more than one
patient or split. Near-identical groups are for review: distinct images of a very uniform set
can come that close.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# The coarse grid: 16 x 17 block means in 2D, 8 x 8 x 5 in 3D, give 256 signs of neighbour
# differences along the last axis (a "difference hash": Krawetz, "Kind of like that", 2013).
COARSE_GRID = {2: (16, 17), 3: (8, 8, 5)}
NEAR_BITS = 10  # copies differ in at most this many of the 256 signs (about 4%)
BANDS = 16  # 16-bit bands: two hashes within NEAR_BITS share at least 6 bands exactly


def pixel_digest(arr: np.ndarray) -> str:
    """SHA-256 (first 16 bytes, hex) of an image's shape and float32 pixels."""
    h = hashlib.sha256(str(arr.shape).encode())
    h.update(np.ascontiguousarray(arr, dtype=np.float32).tobytes())
    return h.hexdigest()[:32]


def _block_means(arr: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    """Means over ``grid`` blocks per axis (fewer when an axis is shorter)."""
    out = arr
    for axis, (n, side) in enumerate(zip(arr.shape, grid, strict=True)):
        edges = np.linspace(0, n, min(side, n) + 1).astype(int)[:-1]
        sums = np.add.reduceat(out, edges, axis=axis, dtype=np.float64)  # no float64 copy
        shape = [-1 if a == axis else 1 for a in range(out.ndim)]
        out = sums / np.diff(np.append(edges, n)).reshape(shape)
    return out


def coarse_digest(arr: np.ndarray) -> str:
    """256 bits (hex) saying where the image at low resolution gets brighter along its last
    axis: unchanged by re-encoding noise, rescaling of the values or of the size, so copies
    differ in a few bits (:data:`NEAR_BITS`) at most."""
    small = _block_means(arr, COARSE_GRID.get(arr.ndim, (8,) * arr.ndim))
    bits = (np.diff(small, axis=-1) > 0).ravel()
    return np.packbits(np.resize(bits, 256)).tobytes().hex()


def _near_groups(digests: list[str], rows: list[int]) -> list[list[int]]:
    """Rows whose coarse digests differ in at most :data:`NEAR_BITS` bits, joined transitively.
    Candidates share a band exactly (locality-sensitive hashing by banding), so pairs are only
    compared within a band's bucket."""
    hashes = np.frombuffer(b"".join(bytes.fromhex(digests[r]) for r in rows), np.uint8)
    hashes = hashes.reshape(len(rows), 32)
    bands = hashes.reshape(len(rows), BANDS, 32 // BANDS)
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for b in range(BANDS):
        buckets: dict[bytes, list[int]] = {}
        for i in range(len(rows)):
            buckets.setdefault(bands[i, b].tobytes(), []).append(i)
        for members in buckets.values():
            for k, i in enumerate(members[:-1]):
                others = np.asarray(members[k + 1 :])
                dist = np.unpackbits(hashes[others] ^ hashes[i], axis=1).sum(axis=1)
                for j in others[dist <= NEAR_BITS]:
                    parent[find(int(j))] = find(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(rows)):
        groups.setdefault(find(i), []).append(rows[i])
    return [g for g in groups.values() if len(g) > 1]


@dataclass
class DuplicateGroup:
    """Rows (manifest order) whose images hash alike, spanning several patients or splits."""

    kind: str  # "pixel-identical" | "near-identical"
    rows: list[int]
    patients: int
    splits: list[str]


@dataclass
class Duplicates:
    """What ``index`` found: the groups, and the rows it dropped (all but each group's first)."""

    groups: list[DuplicateGroup] = field(default_factory=list)
    dropped: list[int] = field(default_factory=list)
    checked: bool = True  # False under --no-verify (no pixels were decoded)

    def record(self) -> dict:
        """For the manifest's sidecar: counts only (the rows' notes name the samples)."""
        return {
            "checked": self.checked,
            "groups": len(self.groups),
            "samples": sum(len(g.rows) for g in self.groups),
            "across_patients": sum(g.patients > 1 for g in self.groups),
            "across_splits": sum(len(g.splits) > 1 for g in self.groups),
            "near_identical_groups": sum(g.kind == "near-identical" for g in self.groups),
            "dropped": len(self.dropped),
        }

    def summary(self) -> list[str]:
        if not self.checked:
            return ["  duplicates not checked (--no-verify decodes no pixels)"]
        if not self.groups:
            return []
        r = self.record()
        action = (
            f"dropped {r['dropped']} (all but one of each)"
            if self.dropped
            else "--drop-duplicates keeps one of each"
        )
        return [
            f"  duplicates {r['groups']} groups of {r['samples']} samples with the same pixels "
            f"({r['across_patients']} across patients, {r['across_splits']} across splits, "
            f"{r['near_identical_groups']} only near-identical): {action}; their rows' notes "
            "name them"
        ]


def find_duplicates(
    table: pd.DataFrame, exact: list[str], coarse: list[str] | None = None
) -> list[DuplicateGroup]:
    """Groups of ok rows of ``table`` (a manifest: ``status``, ``patient``, ``split``) with equal
    ``exact`` digests and, when ``coarse`` is given, of images whose coarse digests are a few
    bits apart; only groups spanning several patients or splits. One digest per row, "" when
    unknown (not decoded)."""
    ok = (table["status"] == "ok").to_numpy()
    exact_groups: dict[str, list[int]] = {}
    for i, d in enumerate(exact):
        if d and ok[i]:
            exact_groups.setdefault(d, []).append(i)
    candidates = [("pixel-identical", rows) for rows in exact_groups.values()]
    if coarse is not None:
        # one representative per pixel-identical set: near-identical means another image
        rows = [g[0] for g in exact_groups.values() if coarse[g[0]]]
        for group in _near_groups(coarse, rows):
            members = sorted(r for first in group for r in exact_groups[exact[first]])
            candidates.append(("near-identical", members))
    groups = []
    for kind, rows in candidates:
        patients = table["patient"].iloc[rows].nunique()
        splits = sorted(set(table["split"].iloc[rows]))
        if len(rows) > 1 and (patients > 1 or len(splits) > 1):
            groups.append(DuplicateGroup(kind, rows, patients, splits))
    return _disjoint(sorted(groups, key=lambda g: (g.kind != "pixel-identical", g.rows[0])))


def _disjoint(groups: list[DuplicateGroup]) -> list[DuplicateGroup]:
    """A near-identical group that contains a pixel-identical one supersedes it (the wider
    set is the one to review); each row ends in one group."""
    near_rows = {r for g in groups if g.kind == "near-identical" for r in g.rows}
    kept = [g for g in groups if g.kind == "near-identical" or not set(g.rows) & near_rows]
    return sorted(kept, key=lambda g: g.rows[0])


def mark_duplicates(table: pd.DataFrame, groups: list[DuplicateGroup], drop: bool) -> Duplicates:
    """Note each group in its rows' ``notes``; with ``drop``, skip all but each group's first row
    (its copies' reason names the kept sample)."""
    found = Duplicates(groups=groups)
    for g in groups:
        first = table.at[g.rows[0], "sample_id"]
        ids = [table.at[r, "sample_id"] for r in g.rows]
        where = f"{g.patients} patients" if g.patients > 1 else f"splits {', '.join(g.splits)}"
        for r in g.rows:
            others = [i for i in ids if i != table.at[r, "sample_id"]]
            more = " ..." if len(others) > 3 else ""
            note = f"{g.kind} to {', '.join(others[:3])}{more} ({where})"
            table.at[r, "notes"] = "; ".join(n for n in (table.at[r, "notes"], note) if n)
        if drop:
            for r in g.rows[1:]:
                table.at[r, "status"] = "skipped"
                table.at[r, "reason"] = f"{g.kind} copy of {first} ({where}); dropped"
                found.dropped.append(r)
    return found
