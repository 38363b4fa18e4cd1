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
    """``a/b/IM0001.dcm`` -> ``dir-.../dir-.../IM0001.dcm``, and a file name that may identify
    (:func:`name_may_identify`) -> ``fil-<pseudonym><extension>``; records pseudonym -> name in
    ``folders``."""
    *dirs, name = rel.split("/")
    out = []
    for d in dirs:
        key = pseudo(FOLDER_KIND, d)
        folders[key] = d
        out.append(key)
    if name_may_identify(name):
        key = pseudo(FILE_KIND, name)
        folders[key] = name
        name = key + extension(name)
    return "/".join([*out, name])


def real_path(map_path: Path, rel: str) -> str:
    """The inverse of :func:`pseudonymous_path`, through the private map."""
    *dirs, name = rel.split("/")
    match = _FILE_PSEUDONYM.fullmatch(name)
    if match:
        name = resolve_private(map_path, match.group(1))[0]
    return "/".join([*("|".join(resolve_private(map_path, d)) for d in dirs), name])


# File names are kept when every word of their stem is one of these (lower case), a number of
# at most six digits that is not a date, such a number after one of these (IM000001), or a
# public dataset's name (pneumoniamnist): the names that scanners, export tools and dataset
# makers give. Any other word may be a name, an initial, a date or a record number
# (``Smith^John_19600101_chest.png``): the name is then a pseudonym.
GENERIC_WORDS = frozenset(
    (  # noqa: SIM905 (a list of ninety quoted words reads worse)
        "im img image images slice slices scan series frame frames file export dcm dicom ct mr "
        "mri cr dx us pt nm xa mg pet seg mask label labels t1 t1w t2 t2w flair dwi adc pd bold "
        "anat func sub ses run acq vol volume chest head brain knee lung lungs abdomen pelvis "
        "spine liver kidney heart hand left right lat lateral pa ap axial sagittal coronal ax "
        "sag cor view preview raw thumb thumbnail normal abnormal train val test"
    ).split()
)
# MedMNIST's files (pneumoniamnist.npz, adrenalmnist3d.npz) and MedNIST's: public datasets
_DATASET_ENDINGS = ("mnist", "mnist3d", "mednist")
FILE_KIND = "file"  # the Pseudonymizer kind of a file name ("fil-..." pseudonyms)
_FILE_PSEUDONYM = re.compile(r"(fil-[0-9a-f]{16})(\.[A-Za-z0-9]{1,6})*")
_WORD = re.compile(r"([a-z]*)(\d*)")


def name_may_identify(name: str) -> bool:
    """Whether a file name may carry an identifier (see :data:`GENERIC_WORDS`)."""
    stem = name[: len(name) - len(extension(name))]
    return not all(_generic(word) for word in re.split(r"[^A-Za-z0-9]+", stem.lower()) if word)


def _generic(word: str) -> bool:
    if word in GENERIC_WORDS or word.endswith(_DATASET_ENDINGS):
        return True
    match = _WORD.fullmatch(word)  # letters, then digits: IM000001
    if match is None:
        return False
    letters, digits = match.groups()
    if letters and letters not in GENERIC_WORDS:
        return False
    return bool(digits) and len(digits) <= 6 and not _date(digits)


def _date(digits: str) -> bool:
    """A six-digit run that reads as a date (YYMMDD, DDMMYY or MMDDYY)."""
    if len(digits) < 6:
        return False
    a, b, c = int(digits[:2]), int(digits[2:4]), int(digits[4:])
    month_day = 1 <= b <= 12 and (1 <= c <= 31 or 1 <= a <= 31)  # YYMMDD, DDMMYY
    return month_day or (1 <= a <= 12 and 1 <= b <= 31)  # MMDDYY


def extension(name: str) -> str:
    """The extension kept beside a pseudonym: ``.nii.gz``, or the last suffix when it is short
    and alphanumeric; "" otherwise (a DICOM file named by its UID has none)."""
    if name.lower().endswith(".nii.gz"):
        return name[-7:]
    suffix = Path(name).suffix
    return suffix if re.fullmatch(r"\.[A-Za-z][A-Za-z0-9]{0,5}", suffix) else ""


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
