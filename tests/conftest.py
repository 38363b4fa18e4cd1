"""Shared fixtures: a small phantom archive and its manifest, built once per test session.

The salt file lives in a temporary folder (never the user's ~/.config), and tests that use
``../shared/data`` skip cleanly when it is absent.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_SALT_DIR = tempfile.mkdtemp(prefix="medcontrast-salt-")
# A fixed salt: pseudonyms, and so the patient-level splits of the fixtures, are the same every run.
(Path(_SALT_DIR) / "salt").write_text("medcontrast-test-salt-not-for-real-data-0123456789")
os.environ["MEDCONTRAST_SALT_FILE"] = str(Path(_SALT_DIR) / "salt")
if "XDG_CACHE_HOME" not in os.environ:
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="medcontrast-cache-")
    atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)
atexit.register(shutil.rmtree, _SALT_DIR, True)  # nothing of a test session stays in /tmp

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """A path under ../shared/data, or skip the test when it is not there."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not available")
    return path


@pytest.fixture(scope="session")
def phantom_archive(tmp_path_factory) -> Path:
    from medcontrast.phantoms.writer import make_phantoms

    out = tmp_path_factory.mktemp("phantoms") / "archive"
    make_phantoms(out, patients=40, seed=5, workers=2, progress=False)  # labels in every split
    return out


@pytest.fixture(scope="session")
def phantom_manifest(phantom_archive, tmp_path_factory) -> Path:
    from medcontrast.archive.index import build_index, write_index

    result = build_index(phantom_archive, labels=phantom_archive / "labels.csv", progress=False)
    out = tmp_path_factory.mktemp("manifest") / "manifest.csv"
    write_index(result, out, phantom_archive)
    return out


@pytest.fixture()
def small_disk(tmp_path) -> Iterator[Path]:
    """A folder on a 1 MiB filesystem of its own (tmpfs), to fill for real; the test skips
    where this process may not mount one (not root, no CAP_SYS_ADMIN, not Linux)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if made.returncode != 0:
        pytest.skip("cannot mount a small filesystem here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)
