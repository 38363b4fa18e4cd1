"""Counting the PyTorch operators a call launches, for tests and benchmarks of launch-bound code.

On a GPU, code made of many small tensor operations is bound by the CPU time it takes to launch
them, not by the GPU; the number of top-level ``aten::`` calls (the operators Python dispatches,
not the ones they call in turn) is the device-independent measure of that cost.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

from torch.profiler import ProfilerActivity, profile


def top_level_aten_calls(fn: Callable[[], object]) -> Counter[str]:
    """The ``aten::`` operators ``fn()`` dispatches from Python, by name, each counted once per
    call; operators called by other operators (``aten::cat`` inside ``aten::stack``) are not
    counted."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    calls: Counter[str] = Counter()
    for event in prof.events():
        if not event.name.startswith("aten::"):
            continue
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("aten::"):
            parent = parent.cpu_parent
        if parent is None:
            calls[event.name] += 1
    return calls
