"""Private storage for the folder names and source paths of an archive.

Archives are often laid out by patient name or ID (``DOE_JOHN/CT/...``), so every folder name is
treated as patient data. The manifest holds each source path with its folder names replaced by
keyed pseudonyms (``dir-3f9a0c1b2d4e5f60/CT.../IM0001.dcm``; file names are kept), and a path
whose file name carries a known identifier as ``private:<pseudonym>``; the real names are kept in
a file beside the salt, outside every output folder. The manifest's sidecar records where that
file is (a location, not an identifier). Reader messages that quote a path are scrubbed the same
way before they are stored.
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Callable, Iterable
from pathlib import Path

_CACHE: dict[tuple[str, str], list[str]] = {}
_LOADED: set[str] = set()  # maps read into _CACHE
FOLDER_KIND = "folder"  # the Pseudonymizer kind of a folder name ("dir-..." pseudonyms)


def private_map_path(salt_path: Path) -> Path:
    """The private path map that belongs with a salt file."""
    return salt_path.parent / "private-paths.csv"


def _load(map_path: Path) -> None:
    _LOADED.add(str(map_path))
    if not map_path.exists():
        return
    with open(map_path, newline="") as fh:
        for row in csv.DictReader(fh):
            _CACHE[(str(map_path), row["pseudonym"])] = row["paths"].split("|")


def store_private(map_path: Path, entries: dict[str, list[str]]) -> None:
    """Append pseudonym -> relative paths (or a folder name) to the private map (mode 0600);
    entries it already holds are not written again."""
    if entries and str(map_path) not in _LOADED:
        _load(map_path)
    new = {k: v for k, v in entries.items() if _CACHE.get((str(map_path), k)) != v}
    if not new:
        return
    map_path.parent.mkdir(parents=True, exist_ok=True)
    header = not map_path.exists()
    fd = os.open(map_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", newline="") as fh:
        writer = csv.writer(fh)
        if header:
            writer.writerow(["pseudonym", "paths"])
        for key, paths in new.items():
            writer.writerow([key, "|".join(paths)])
            _CACHE[(str(map_path), key)] = paths


def resolve_private(map_path: Path, key: str) -> list[str]:
    """The relative paths (or the folder name) stored for ``key`` in the private map."""
    cache_key = (str(map_path), key)
    if cache_key not in _CACHE:
        _load(map_path)
    if cache_key not in _CACHE:
        raise FileNotFoundError(
            f"private path {key} is not in {map_path} (indexed with another salt?)"
        )
    return _CACHE[cache_key]


def pseudonymous_path(rel: str, pseudo: Callable[[str, str], str], folders: dict[str, str]) -> str:
    """``a/b/file.dcm`` -> ``dir-.../dir-.../file.dcm``; records pseudonym -> name in ``folders``."""
    *dirs, name = rel.split("/")
    out = []
    for d in dirs:
        key = pseudo(FOLDER_KIND, d)
        folders[key] = d
        out.append(key)
    return "/".join([*out, name])


def real_path(map_path: Path, rel: str) -> str:
    """The inverse of :func:`pseudonymous_path`, through the private map."""
    *dirs, name = rel.split("/")
    return "/".join([*("|".join(resolve_private(map_path, d)) for d in dirs), name])


def scrub(message: str, files: Iterable[tuple[Path, str]], root: Path) -> str:
    """A reader message with every archive path in it replaced: each file's absolute path by
    its pseudonymous form, the archive root by ``<archive>``, and any folder name quoted as a
    path component by its pseudonym (readers such as PIL and nibabel quote the path they got)."""
    if not message:
        return message
    for path, hidden in files:
        for form in {str(path), str(path.resolve())}:
            message = message.replace(form, hidden)
        real_dirs = path.relative_to(root).parts[:-1] if path.is_relative_to(root) else ()
        for real, pseudonym in zip(real_dirs, hidden.split("/")[:-1], strict=False):
            message = re.sub(rf"(?<=[/\\'\"]){re.escape(real)}(?=[/\\'\"])", pseudonym, message)
    for form in {str(root), str(root.resolve())}:
        message = message.replace(form, "<archive>")
    return message
