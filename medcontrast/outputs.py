"""Output folders: made, and proved writable, before any long work starts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def writable_folder(path: str | os.PathLike[str]) -> Path:
    """Create ``path`` with its parents and write (then remove) a small file in it.

    Raises the ``OSError`` of the first step that fails (a parent that is a file, a read-only
    place, a full disk), which the command line reports in one line naming the path. Checking
    first means an archive walk or a cache build of hours is not lost to an unwritable output.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".medcontrast-write-check-") as fh:
        fh.write(b"ok")
        fh.flush()
    return path
