"""A cache being built: the full-size array in manifest order, written shard by shard, and a log
of the shards that are complete, so that a build stopped half-way (killed, preempted, Ctrl-C)
resumes where it stopped instead of starting over.

Files beside the finished cache ``<key>.npy``: ``<key>.partial.npy`` (N, C, *size) float16, and
``<key>.partial.jsonl``: a header line (what the array holds: the preprocessing spec, its shape,
the shard size), then one line per complete shard with the rows that failed in it. A shard's line
is written only after its rows are flushed to disk, so a line means "these rows are on disk". A
header that does not match the build asking for it (another preprocessing, another shape, a torn
header) is reported and the half-built cache started over: rows are never mixed across specs.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medcontrast.errors import MedContrastError

# At most this many rows, and about this many bytes, per shard: the unit of resumption, and of
# the results in flight (a worker task never spans two shards).
SHARD_ROWS = 1024
SHARD_BYTES = 32 << 20


def shard_rows(shape: tuple[int, ...]) -> int:
    """Rows per shard for an (N, C, *size) float16 array."""
    row_bytes = 2 * int(np.prod(shape[1:]))
    return max(1, min(SHARD_ROWS, SHARD_BYTES // row_bytes))


@dataclass
class PartialCache:
    """A half-built (or new) cache. ``done``: shard -> {row: reason it failed}."""

    array: np.memmap
    done: dict[int, dict[int, str]]
    rows_per_shard: int
    npy: Path
    log: Path

    @classmethod
    def open(cls, stem: Path, spec_key: str, shape: tuple[int, ...], report: bool) -> PartialCache:
        """Resume ``<stem>.partial.*`` when its header matches (spec, shape, shard size), else
        start it afresh; either is said on stderr when ``report``."""
        npy, log = (
            stem.with_name(stem.name + ".partial.npy"),
            stem.with_name(stem.name + ".partial.jsonl"),
        )
        header = {"spec": spec_key, "shape": list(shape), "shard_rows": shard_rows(shape)}
        if npy.exists() or log.exists():
            resumed, why = _resume(npy, log, header)
            if resumed is not None:
                if report:
                    n = -(-shape[0] // header["shard_rows"])
                    print(
                        f"preprocess: resuming the half-built cache {npy.name} "
                        f"({len(resumed.done)} of {n} shards done)",
                        file=sys.stderr,
                    )
                reserve_space(npy)  # begun by a version that did not reserve its space
                return resumed
            if report:
                print(f"preprocess: starting {npy.name} over: {why}", file=sys.stderr)
        array = np.lib.format.open_memmap(npy, mode="w+", dtype=np.float16, shape=shape)
        try:
            reserve_space(npy)
        except MedContrastError:
            del array
            npy.unlink(missing_ok=True)  # nothing was done: nothing half-written stays
            raise
        _write_atomically(log, json.dumps(header) + "\n")
        return cls(array, {}, header["shard_rows"], npy, log)

    def shards(self) -> Iterator[tuple[int, range]]:
        """(shard, its rows) for every shard not yet complete, in order."""
        n, k = len(self.array), self.rows_per_shard
        for shard in range(-(-n // k)):
            if shard not in self.done:
                yield shard, range(shard * k, min(n, (shard + 1) * k))

    def rows_done(self) -> int:
        k, n = self.rows_per_shard, len(self.array)
        return sum(min(n, (s + 1) * k) - s * k for s in self.done)

    def complete(self, shard: int, failed: dict[int, str]) -> None:
        """Record ``shard`` as on disk, with the rows that failed. The rows were written through
        other memory maps of the file (the pool's processes): ``fsync`` of the file writes
        whatever of it is dirty, whichever mapping dirtied it, before the record says so."""
        with self.npy.open("rb") as f:
            os.fsync(f.fileno())
        with self.log.open("a") as f:
            f.write(json.dumps({"shard": shard, "failed": failed}) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.done[shard] = failed

    def errors(self) -> list[str]:
        """(N,) the reason each row failed, "" for rows that loaded."""
        out = [""] * len(self.array)
        for failed in self.done.values():
            for row, reason in failed.items():
                out[row] = reason
        return out

    def remove(self) -> None:
        for path in (self.npy, self.log):
            path.unlink(missing_ok=True)


def reserve_space(path: Path) -> None:
    """Allocate every block of ``path`` (a memory-mapped array) now. The file is created sparse:
    a write through the memory map that finds the disk full kills the process by SIGBUS, with
    no message and no chance to clean up. Reserved, a full disk is one line now, before any
    work. A filesystem that cannot reserve (``EOPNOTSUPP``) is left as it is."""
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows
        return
    size = path.stat().st_size
    with path.open("r+b") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, size)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                return
            if exc.errno != errno.ENOSPC:
                raise
            free = shutil.disk_usage(path.parent).free / 2**20
            raise MedContrastError(
                f"no room for the cache {path.name} in {path.parent}: it needs {size / 2**20:.0f} "
                f"MiB, {free:.0f} MiB are free; free space or set data.cache_dir to a folder "
                "with room"
            ) from exc


def _resume(npy: Path, log: Path, header: dict) -> tuple[PartialCache | None, str]:
    """The half-built cache, or None and why it cannot be resumed."""
    try:
        first, *lines = log.read_text().splitlines()
        if json.loads(first) != header:
            return None, f"it was begun with other settings ({first[:200]})"
        array = np.load(npy, mmap_mode="r+")
    except (OSError, ValueError, json.JSONDecodeError) as exc:
        return None, f"it cannot be read ({type(exc).__name__}: {exc})"
    if list(array.shape) != header["shape"] or array.dtype != np.float16:
        return None, f"its array is {array.shape} {array.dtype}, not {tuple(header['shape'])}"
    done = {}
    for line in lines:
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:  # the last line, torn by the kill: that shard is redone
            break
        done[int(entry["shard"])] = {int(r): str(e) for r, e in entry["failed"].items()}
    return PartialCache(array, done, header["shard_rows"], npy, log), ""


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


@contextmanager
def build_lock(path: Path, report: bool) -> Iterator[None]:
    """Hold ``path`` locked while building: a second process asking for the same cache (two runs
    sharing a cache folder) waits for the first and then reuses its result, instead of both
    writing the same half-built files. Where there is no ``fcntl`` (Windows) nothing is locked.

    A POSIX record lock (``lockf``), not ``flock``: a record lock belongs to this process alone,
    so the worker processes forked during the build do not inherit it, and it is released the
    moment this process dies, however it dies. An ``flock`` is shared with every forked child;
    a build killed while its workers lived on kept the cache locked for good.
    """
    try:
        import fcntl
    except ImportError:
        yield
        return
    with path.open("a") as f:
        try:
            fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # EAGAIN or EACCES: held by another process
            if report:
                print(
                    f"preprocess: waiting for another process building {path.stem}", file=sys.stderr
                )
            fcntl.lockf(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.lockf(f, fcntl.LOCK_UN)
