"""Pseudonyms for patients, studies, series and samples.

Identifiers from the archive (PatientID, StudyInstanceUID, file paths that may embed a name) never
reach an output: they pass through a keyed hash (HMAC-SHA256) whose key, the *salt*, lives apart
from every output folder. With the salt the pseudonyms are stable across runs (so splits and
labels stay joined); without it they cannot be reversed or recomputed from a guessed identifier.

Where the salt comes from, first match wins:
1. an explicit ``salt_file`` argument (``--salt-file`` on the command line);
2. the ``MEDCONTRAST_SALT_FILE`` environment variable;
3. ``~/.config/medcontrast/salt`` (created with mode 0600 on first use).

:class:`PathHider` pseudonymises every folder name of a path; :class:`PhiMatcher` finds a
patient's identifying values written into a file's path.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import ClassVar

from medcontrast.archive.scan import normalise
from medcontrast.data.private_paths import pseudonymous_path

ENV_VAR = "MEDCONTRAST_SALT_FILE"


def default_salt_path() -> Path:
    """Where the salt lives when nothing else is said (outside any output folder)."""
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config"))
    return base / "medcontrast" / "salt"


def load_salt(salt_file: str | os.PathLike[str] | None = None) -> bytes:
    """Read the salt, creating a random one (32 bytes, hex) when the file does not exist yet."""
    path = Path(salt_file).expanduser() if salt_file else default_salt_path()
    if path.exists():
        data = path.read_bytes().strip()
        if len(data) < 16:
            raise ValueError(f"salt file {path} is too short (need at least 16 bytes)")
        return data
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_hex(32).encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(token)
    return token


class Pseudonymizer:
    """Keyed hashing of identifiers into short, prefixed pseudonyms.

    ``Pseudonymizer(salt)("patient", "PID-1234")`` -> ``"pat-3f9a0c1b2d4e5f60"``.
    The kind is part of the hashed message, so a patient and a study with the same raw value get
    unrelated pseudonyms.
    """

    PREFIX: ClassVar[dict[str, str]] = {
        "patient": "pat",
        "study": "stu",
        "series": "ser",
        "sample": "smp",
        "path": "pth",
        "folder": "dir",
        "file": "fil",
    }

    def __init__(self, salt: bytes, length: int = 16) -> None:
        self._salt = salt
        self._length = length

    def __call__(self, kind: str, value: str) -> str:
        digest = hmac.new(self._salt, f"{kind}\x00{value}".encode(), hashlib.sha256).hexdigest()
        return f"{self.PREFIX.get(kind, kind[:3])}-{digest[: self._length]}"

    def fingerprint(self) -> str:
        """A short public fingerprint of the salt, so a manifest can say which salt made it."""
        return hashlib.sha256(b"fingerprint\x00" + self._salt).hexdigest()[:12]


def unit_interval(pseudonym: str) -> float:
    """Map a pseudonym to a number in [0, 1), uniformly; used for deterministic splits."""
    digest = hashlib.sha256(pseudonym.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class PhiMatcher:
    """Finds identifying phrases inside file paths, indexed by first word for large archives."""

    def __init__(self, values: set[tuple[str, ...]]) -> None:
        self._by_word: dict[str, list[tuple[str, ...]]] = {}
        for value in values:
            self._by_word.setdefault(value[0].split()[0], []).append(value)

    def __call__(self, files: list[str]) -> bool:
        for f in files:
            text = f" {normalise(f)} "
            for word in set(text.split()):
                for value in self._by_word.get(word, ()):
                    if all(f" {phrase} " in text for phrase in value):
                        return True
        return False


class PathHider:
    """Relative path -> the same path with every folder name pseudonymised (memoised: a large
    archive repeats its folders in every path)."""

    def __init__(self, pseudo: Pseudonymizer, folders: dict[str, str]) -> None:
        self.pseudo, self.folders, self.memo = pseudo, folders, {}

    def __call__(self, rel: str) -> str:
        if rel not in self.memo:
            self.memo[rel] = pseudonymous_path(rel, self.pseudo, self.folders)
        return self.memo[rel]
