"""A scheduler's notice (SIGTERM) or Ctrl-C (SIGINT) during training, handled like a checkpoint.

The first signal only raises a flag: the loop finishes its step, writes a checkpoint and stops,
so a preempted run loses nothing. A second signal exits at once (the last checkpoint on disk is
complete: checkpoints are written atomically). Slurm and Kubernetes send SIGTERM and wait a grace
period before SIGKILL; one training step fits in it.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Self

from medcontrast.errors import MedContrastError

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class PreemptedError(MedContrastError):
    """Training stopped on a signal after writing a checkpoint; exit status 128 + signal."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.exit_code = 128 + signum


class _OnSignal:
    """Context manager: ``self._handle`` answers SIGTERM and SIGINT inside it, the previous
    handlers come back after it. Handlers can only be installed from the main thread; elsewhere
    (a notebook's worker thread) signals keep their usual meaning."""

    def __init__(self) -> None:
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for sig in SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        raise NotImplementedError


class StopOnSignal(_OnSignal):
    """Context manager: ``requested`` turns true on the first SIGTERM or SIGINT."""

    def __init__(self) -> None:
        super().__init__()
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            print(
                f"{signal.Signals(signum).name} again: exiting now; the last checkpoint is kept",
                file=sys.stderr,
                flush=True,
            )
            os._exit(128 + signum)
        self.signum = signum
        print(
            f"\n{signal.Signals(signum).name} received: finishing this step and writing a "
            "checkpoint before stopping (send it again to exit at once)",
            file=sys.stderr,
            flush=True,
        )


class RaiseOnSignal(_OnSignal):
    """Context manager: a SIGTERM or SIGINT raises :class:`PreemptedError` at once, naming the
    signal, ``what`` stopped and ``how`` to continue.

    For work whose finished parts are already on disk and whose rerun skips them (an
    evaluation's runs): stopping at once loses only the part in progress, where waiting for it
    could outlast a scheduler's grace period. Without it SIGTERM ends the process silently,
    before the run's log can say why.
    """

    def __init__(self, what: str, how: str) -> None:
        super().__init__()
        self.what, self.how = what, how

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        for sig in SIGNALS:  # a second signal while unwinding must not interrupt the cleanup
            signal.signal(sig, signal.SIG_IGN)
        name = signal.Signals(signum).name
        raise PreemptedError(f"{self.what} stopped by {name}; {self.how}", signum)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: leave SIGTERM and SIGINT to the main process.

    Ctrl-C and Slurm signal every process of a job, DataLoader workers included; a worker killed
    by the signal makes PyTorch raise "DataLoader worker ... killed by signal" in the main process
    at any point (even inside ``backward``), before it can write its checkpoint. Workers still
    stop as usual: the DataLoader shuts them down through its queues, and they exit on their own
    when the main process is gone.
    """
    for sig in SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
