"""Fine-tuning runs of an evaluation, one at a time or several side by side.

A fine-tune of a small network (a ResNet-18 at 28-64 px, batch 64) leaves most of a GPU idle:
one Python process cannot launch kernels fast enough. ``finetune.parallel`` = k runs k of them
at once, each in its own worker process on the same device. Processes, not threads: every run
seeds torch's global generator when it builds its encoder, and autograd runs the backward
passes of all threads on one thread per device, which would serialise them. Each run is the
same pure function of its inputs and seed in either case, so the results do not depend on k.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Hashable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
import torch

from medcontrast.augment.params import AugmentParams
from medcontrast.errors import MedContrastError
from medcontrast.evaluation.finetune import FinetuneConfig, finetune
from medcontrast.evaluation.inits import Init

# A run whose best validation check was its last step: more steps might still have helped.
NOT_CONVERGED = "may not have converged: its best step was the last (raise finetune.steps)"


@dataclass
class FinetuneData:
    """What every fine-tuning run of an evaluation shares: the cached images (N, C, *size),
    class indices (N,), the validation and test rows, the unlabelled rows batch norm takes its
    statistics from, the settings, the validation metric that selects and the lpft probe's C
    grid."""

    images: np.ndarray
    y: np.ndarray
    val: np.ndarray
    test: np.ndarray
    norm: np.ndarray
    n_classes: int
    settings: FinetuneConfig
    views: AugmentParams | None
    device: str
    amp: torch.dtype | None
    select_metric: str
    probe_c_grid: tuple[float, ...]

    def __getstate__(self) -> dict:
        # A cache on disk travels to a worker as its file name, not as gigabytes of pixels.
        state = dict(self.__dict__)
        name = getattr(self.images, "filename", None)
        if name is not None and np.load(name, mmap_mode="r").shape == self.images.shape:
            state["images"] = str(name)
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["images"], str):
            state["images"] = np.load(state["images"], mmap_mode="r")
        self.__dict__.update(state)


@dataclass
class FinetuneJob:
    """One run: an initialisation, its training rows (sorted indices into the images), a seed,
    and the frozen features (train (n, D), val (n_val, D)) of a seed-independent encoder."""

    init: Init
    idx: np.ndarray
    seed: int
    features: tuple[np.ndarray, np.ndarray] | None = None


@dataclass
class FinetuneOutcome:
    """Validation (n_val, C) and test (n_test, C) probabilities of the best epoch, notes, and
    the run's own seconds."""

    val_prob: np.ndarray
    prob: np.ndarray
    notes: list[str]
    seconds: float


def run_job(
    data: FinetuneData,
    job: FinetuneJob,
    on_progress: Callable[[float, str, float], None] | None = None,
) -> FinetuneOutcome:
    """Fine-tune ``job.init`` on its training rows, select on the validation split, predict the
    test split; ``on_progress(share done, candidate, validation score)`` after each check."""
    start = time.time()
    prob, info = finetune(
        job.init.make,
        data.images[job.idx],
        data.y[job.idx],
        data.images[data.val],
        data.y[data.val],
        data.images[data.test],
        data.n_classes,
        data.settings,
        data.views,
        torch.device(data.device),
        job.seed,
        data.amp,
        job.features,
        data.select_metric,
        data.probe_c_grid,
        on_progress,
        norm_x=data.images[data.norm],
    )
    return FinetuneOutcome(info["val_prob"], prob, run_notes(info), time.time() - start)


def run_notes(info: dict) -> list[str]:
    """A fine-tune's notes for ``results.csv``: the chosen candidate and its best step, a mark
    when that step was the last of its budget, the probe's C, WiSE-FT's a, every candidate's
    validation score."""
    notes = [
        f"best step {info['best_step']} of {info['last_step']} ({info['mode']}, lr {info['lr']:g})"
    ]
    if not info["converged"]:
        notes.append(NOT_CONVERGED)
    if "C" in info:
        notes.append(f"probe C={info['C']:g}")
    if "alpha" in info:
        notes.append(f"WiSE-FT a={info['alpha']:g}")
    notes.append("candidates " + ", ".join(info["candidates"]))
    return notes


_WORKER_DATA: FinetuneData | None = None


def _start_worker(data: FinetuneData, threads: int) -> None:
    global _WORKER_DATA
    _WORKER_DATA = data
    torch.set_num_threads(threads)


def _run_in_worker(job: FinetuneJob) -> FinetuneOutcome:
    assert _WORKER_DATA is not None
    return run_job(_WORKER_DATA, job)


class FinetunePool:
    """Runs fine-tuning jobs, ``parallel`` at a time (1: in this process, no worker).

    :meth:`submit` returns the runs that finished meanwhile (it waits for one when ``parallel``
    are running), :meth:`finish` the rest; the caller saves each as it comes, so a run stopped
    part way keeps every finished one. Use as a context manager: leaving it stops the workers.
    """

    def __init__(self, data: FinetuneData, parallel: int) -> None:
        self.data, self.parallel = data, parallel
        self.running: dict[Future, Hashable] = {}
        self.executor: ProcessPoolExecutor | None = None
        if parallel > 1:
            # Each worker takes its share of the CPU threads (they matter on a CPU; on a GPU one
            # is plenty). spawn: CUDA cannot be used in a forked child.
            threads = max(1, torch.get_num_threads() // parallel)
            self.executor = ProcessPoolExecutor(
                parallel,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_start_worker,
                initargs=(data, threads),
            )

    def __enter__(self) -> FinetunePool:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)

    def submit(
        self,
        key: Hashable,
        job: FinetuneJob,
        on_progress: Callable[[float, str, float], None] | None = None,
    ) -> list[tuple[Hashable, FinetuneOutcome]]:
        """Start ``job`` (known by ``key``); the runs finished by now, as (key, outcome).
        ``on_progress`` is called after each validation check of a run in this process
        (``parallel`` 1); runs in worker processes report when they finish."""
        if self.executor is None:
            return [(key, run_job(self.data, job, on_progress))]
        done = []
        if len(self.running) >= self.parallel:
            done = self._collect(wait(self.running, return_when=FIRST_COMPLETED).done)
        self.running[self.executor.submit(_run_in_worker, job)] = key
        return done + self._collect([f for f in self.running if f.done()])

    def finish(self) -> list[tuple[Hashable, FinetuneOutcome]]:
        """Wait for every running job; (key, outcome) in the order they finish."""
        done = []
        while self.running:
            done += self._collect(wait(self.running, return_when=FIRST_COMPLETED).done)
        return done

    def _collect(self, futures) -> list[tuple[Hashable, FinetuneOutcome]]:
        out = []
        for f in futures:
            key = self.running.pop(f)
            try:
                out.append((key, f.result()))
            except BrokenProcessPool as exc:
                raise MedContrastError(
                    f"a fine-tuning worker process died during {key} ({exc}); the runs "
                    "saved so far are kept: run the same command again to continue (with a "
                    "smaller finetune.parallel if memory ran out)"
                ) from exc
        return out
