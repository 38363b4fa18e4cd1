"""Progress bars that suit where the output goes.

On a terminal: tqdm's bar, redrawn in place. Elsewhere (a job log, a pipe, a notebook's captured
output, ``nohup``) tqdm would still redraw with carriage returns, filling the file with hundreds
of copies of one line; :class:`LineBar` prints one whole line instead, every ``LINE_PERCENT`` of
the work or ``LINE_SECONDS`` seconds, whichever comes first, and the final state once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

from tqdm import tqdm

LINE_SECONDS = 30.0
LINE_PERCENT = 10.0
LINE_GAP = 2.0  # seconds at least between two lines: a bar of a second prints its start and end
# Without a bar graphic: in a log file the numbers are what is read.
LINE_FORMAT = (
    "{desc}: {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}{postfix}]"
)
LINE_FORMAT_NO_TOTAL = "{desc}: {n_fmt} [{elapsed}, {rate_fmt}{postfix}]"


class LineBar(tqdm):
    """A tqdm that prints whole lines (no carriage returns), now and then, and its last state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._last_line, self._last_share, self._closing = 0.0, -1.0, False
        total = kwargs.get("total")
        if total is None and args and hasattr(args[0], "__len__"):
            total = len(args[0])
        kwargs.setdefault("bar_format", LINE_FORMAT if total else LINE_FORMAT_NO_TOTAL)
        kwargs["dynamic_ncols"] = False
        kwargs["leave"] = True  # tqdm clears a bar it does not keep with a carriage return
        kwargs["position"] = 0  # whole lines never stack bars with cursor moves
        super().__init__(*args, **kwargs)

    def status_printer(self, file: IO[str]) -> Callable[[str], None]:  # type: ignore[override]
        """tqdm's printer, replaced: whole lines when one is due (tqdm calls it on each
        refresh, at most every ``mininterval`` seconds)."""

        def print_line(text: str) -> None:
            if not text:  # tqdm clearing a bar that is not kept
                return
            now = time.time()
            share = 100.0 * self.n / self.total if self.total else 0.0
            crossed = self.total and share >= self._last_share + LINE_PERCENT
            done = self.total and self.n >= self.total  # printed once, by close()
            since = now - self._last_line
            due = (crossed and since >= LINE_GAP) or since >= LINE_SECONDS
            if self._closing or (not done and due):
                # tqdm writes the newline after the last state itself
                file.write(text if self._closing else text + "\n")
                file.flush()
                self._last_line, self._last_share = now, share - share % LINE_PERCENT

        return print_line

    def close(self) -> None:
        self._closing = True
        super().close()


def progress_bar(iterable: Iterable | None = None, **kwargs: Any) -> tqdm:
    """A progress bar on ``file`` (default ``sys.stderr``): tqdm's on a terminal, a
    :class:`LineBar` elsewhere. Takes tqdm's arguments."""
    file = kwargs.setdefault("file", sys.stderr)
    interactive = getattr(file, "isatty", lambda: False)()
    if interactive:
        kwargs.setdefault("dynamic_ncols", True)
        return tqdm(iterable, **kwargs)
    return LineBar(iterable, **kwargs)
