"""A run's log file: what the console shows, line by line, with timestamps.

``with RunLog(run / "train.log"):`` copies everything this process writes to ``sys.stdout`` and
``sys.stderr`` (messages, warnings, the final state of each progress bar) into the file, and
:func:`log_line` adds lines that only the file gets (a metrics row per logging step: the
console shows them in the bar instead).

Why our own code: Python's ``logging`` sees only what is logged through it, while most of what a
run says comes from ``print``, ``warnings`` and tqdm; and a plain copy of the console (``tee``,
``2>&1 > file``) keeps every carriage-return redraw of a progress bar (the demo's 50 KB of
console held about 20 lines of real output). Here a line's redraws collapse to its last state
and terminal escape codes are dropped, so the file holds only real lines.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_ACTIVE: list[RunLog] = []  # the open logs, innermost last


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


def clean_line(raw: str) -> str | None:
    """One console line as the log keeps it, or None when it was only redraws that cleared.

    A progress bar redraws a line by returning to its start (``\\r``) and writing again; the last
    segment with text is what the reader saw last. Escape codes (cursor moves of nested bars)
    are dropped.
    """
    text = _ANSI.sub("", raw)
    if "\r" not in text:
        return text.rstrip()
    shown = [s.rstrip() for s in text.split("\r") if s.strip()]
    return shown[-1] if shown else None


class _Tee:
    """A text stream that writes to ``stream`` and hands whole lines to ``log``."""

    def __init__(self, stream: IO[str], log: RunLog) -> None:
        self._stream, self._log, self._partial = stream, log, ""

    def write(self, text: str) -> int:
        n = self._stream.write(text)
        self._partial += text
        if "\n" in self._partial:
            *lines, self._partial = self._partial.split("\n")
            for line in lines:
                self._log.add(line)
        elif len(self._partial) > 4096 and "\r" in self._partial:
            # a bar redrawn for hours without a newline: keep only its latest state
            self._partial = "\r" + self._partial.rsplit("\r", 1)[1]
        return n

    def flush(self) -> None:
        self._stream.flush()

    def finish(self) -> None:
        """Log the unfinished last line, if any."""
        if self._partial:
            self._log.add(self._partial)
            self._partial = ""

    def isatty(self) -> bool:  # progress bars decide how to draw from this
        return self._stream.isatty()

    def __getattr__(self, name: str) -> Any:  # fileno, encoding, errors, ...
        return getattr(self._stream, name)


class RunLog:
    """Copy the console into ``path`` (appended, one timestamped line per console line).

    Args:
        path: the log file; its folder must exist.
        title: the first line written (for example ``"medcontrast pretrain: started"``).
        enabled: False makes the context do nothing (ranks other than 0 under torchrun).
    """

    def __init__(self, path: Path, title: str, enabled: bool = True) -> None:
        self.path, self.title, self.enabled = Path(path), title, enabled
        self._file: IO[str] | None = None
        self._lock = threading.Lock()
        self._tees: list[_Tee] = []
        self._saved: tuple[Any, Any] | None = None

    def __enter__(self) -> RunLog:
        if not self.enabled:
            return self
        self._file = open(self.path, "a", encoding="utf-8")  # closed in __exit__
        self.add(f"=== {self.title} (process {os.getpid()})")
        self._saved = (sys.stdout, sys.stderr)
        self._tees = [_Tee(sys.stdout, self), _Tee(sys.stderr, self)]
        sys.stdout, sys.stderr = self._tees  # type: ignore[assignment]
        _ACTIVE.append(self)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._file is None:
            return
        for tee in self._tees:
            tee.finish()
        if exc is not None:  # the command line prints the error after this; the log keeps it
            reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"error: {exc}"
            self.add(f"=== stopped: {reason}")
        else:
            self.add("=== finished")
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
        _ACTIVE.remove(self)
        self._file.close()
        self._file = None

    def add(self, raw: str) -> None:
        """Write one console line (cleaned, timestamped) to the file."""
        line = clean_line(raw)
        if line is None or self._file is None:
            return
        with self._lock:
            self._file.write(f"{_stamp()} {line}\n")
            self._file.flush()


def log_line(text: str) -> None:
    """A line for the innermost open run log only (nothing when none is open)."""
    if _ACTIVE:
        _ACTIVE[-1].add(text)


def _after_fork() -> None:
    # A forked worker inherits the logs with their locks in whatever state the parent's other
    # threads left them; fresh locks keep a worker's own messages from hanging it.
    for log in _ACTIVE:
        log._lock = threading.Lock()


os.register_at_fork(after_in_child=_after_fork)
