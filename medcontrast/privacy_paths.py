"""Private storage for source paths that contain an identifier.

Archives are often laid out by patient name or ID (``DOE_JOHN/CT/...``). Such a path must not
appear in the manifest, so the manifest holds ``private:<pseudonym>`` instead and the real path
is kept in a file beside the salt, outside every output folder. The manifest's sidecar records
where that file is (a location, not an identifier).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

_CACHE: dict[tuple[str, str], list[str]] = {}


def private_map_path(salt_path: Path) -> Path:
    """The private path map that belongs with a salt file."""
    return salt_path.parent / "private-paths.csv"


def store_private(map_path: Path, entries: dict[str, list[str]]) -> None:
    """Append pseudonym -> relative paths to the private map (mode 0600)."""
    if not entries:
        return
    map_path.parent.mkdir(parents=True, exist_ok=True)
    new = not map_path.exists()
    fd = os.open(map_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", newline="") as fh:
        writer = csv.writer(fh)
        if new:
            writer.writerow(["pseudonym", "paths"])
        for key, paths in entries.items():
            writer.writerow([key, "|".join(paths)])
            _CACHE[(str(map_path), key)] = paths


def resolve_private(map_path: Path, key: str) -> list[str]:
    """The relative paths stored for ``key`` in the private map."""
    cache_key = (str(map_path), key)
    if cache_key not in _CACHE and map_path.exists():
        with open(map_path, newline="") as fh:
            for row in csv.DictReader(fh):
                _CACHE[(str(map_path), row["pseudonym"])] = row["paths"].split("|")
    if cache_key not in _CACHE:
        raise FileNotFoundError(
            f"private path {key} is not in {map_path} (indexed with another salt?)"
        )
    return _CACHE[cache_key]
