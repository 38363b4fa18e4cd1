"""Worker processes for the one-off preprocessing into the cache: how many, and an ordered map
over them that keeps only a few tasks in flight."""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TypeVar

from medcontrast.threads import thread_budget

T = TypeVar("T")
R = TypeVar("R")

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def pool_size(setting: int | str) -> int:
    """Processes for ``data.workers``: ``"auto"`` is one per thread the command may use
    (``--threads``; else one per core this process may run on, its affinity, which a container
    or ``taskset`` narrows, rather than the machine's count); 0 and 1 mean this process alone."""
    if setting == "auto":
        return thread_budget()
    return max(1, int(setting))


def _init_worker(parent: int) -> None:
    """A forked worker computes on one thread and dies with the process that started it.

    One thread: the OpenMP pool of a parent that has already run torch does not survive the
    fork, and the first multi-threaded operation in the child would wait on it forever (torch's
    DataLoader workers do the same). Dying with the parent: a worker holds copies of the pool's
    pipes, so it never sees them close; when the parent is killed (kill -9, a SIGTERM during the
    build) it would otherwise live on under pid 1, writing into the half-built cache.
    """
    import torch

    torch.set_num_threads(1)
    _die_with(parent)


def _die_with(parent: int) -> None:
    """Exit when ``parent`` does: at once through Linux's ``PR_SET_PDEATHSIG``, elsewhere by a
    thread that looks every second."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL) == 0:
            if os.getppid() != parent:  # the parent died before the call above
                os._exit(1)
            return

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="die-with-parent").start()


def ordered_map(
    fn: Callable[[T], R], tasks: Iterable[T], workers: int, ahead: int = 0
) -> Iterator[R]:
    """``fn(task)`` for each task, yielded in the tasks' order; in ``workers`` processes when
    more than one. At most ``ahead`` tasks (default: three per worker) are submitted and not yet
    consumed. Why not ``ProcessPoolExecutor.map``: it submits every task at once, so for an
    archive of a million files a million futures, and every result the consumer has not yet
    taken, would sit in memory."""
    if workers <= 1:
        yield from map(fn, tasks)
        return
    ahead = ahead or 3 * workers
    pool = ProcessPoolExecutor(
        max_workers=workers, initializer=_init_worker, initargs=(os.getpid(),)
    )
    try:
        pending: deque[Future[R]] = deque()
        for task in tasks:
            pending.append(pool.submit(fn, task))
            if len(pending) >= ahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:  # stopped early (an error, Ctrl-C): the tasks not yet started are dropped
        pool.shutdown(wait=True, cancel_futures=True)
