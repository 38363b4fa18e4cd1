"""How many CPU threads a command may use: ``--threads N`` or ``MEDCONTRAST_THREADS``.

On a shared machine a user must be able to leave cores to others. One number caps every pool
that computes: torch's intra-op threads, the BLAS and OpenMP pools NumPy and scikit-learn call
(threadpoolctl, the library scikit-learn uses for the same job), and our worker pools (cache
building, phantoms, fine-tuning side by side), which split it between processes. The variables
``OMP_NUM_THREADS``, ``MKL_NUM_THREADS`` and ``OPENBLAS_NUM_THREADS`` are set too, so that worker
processes started later begin with the same cap. Without a setting: the cores this process may
run on (its affinity, which a container or ``taskset`` narrows), and the variables a user set
are left alone. torch's inter-op pool (used by few operators) is left at its default: it can
only be sized before the first parallel operation.
"""

from __future__ import annotations

import os

from medcontrast.errors import MedContrastError

ENV = "MEDCONTRAST_THREADS"
_POOLS_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def machine_cores() -> int:
    """The CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS has no affinity
        return os.cpu_count() or 1


def thread_budget() -> int:
    """The threads this process may use: ``MEDCONTRAST_THREADS`` where set, else its cores."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return machine_cores()
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n < 1:
        raise MedContrastError(f"{ENV}={value!r}: expected a whole number of threads, 1 or more")
    return n


def set_threads(n: int | None = None) -> int:
    """Cap every thread pool at ``n`` (None: ``MEDCONTRAST_THREADS``, else the cores); returns
    the cap. Called by every command line command before its work; from Python, call it first."""
    if n is None:
        if not os.environ.get(ENV, "").strip():
            return machine_cores()  # torch's and the BLAS libraries' own default: the cores
        n = thread_budget()
    if n < 1:
        raise MedContrastError(f"--threads {n}: expected a whole number of threads, 1 or more")
    import threadpoolctl
    import torch

    os.environ[ENV] = str(n)  # worker processes read the same budget
    for name in _POOLS_ENV:
        os.environ[name] = str(n)
    torch.set_num_threads(n)
    threadpoolctl.threadpool_limits(limits=n)  # the BLAS/OpenMP pools already loaded
    return n
