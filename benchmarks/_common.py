"""Timing, hardware description, result records and per-row failure handling shared by the
benchmark scripts."""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch

from medcontrast.errors import first_line
from medcontrast.preemption import PreemptedError

# The test suite points this elsewhere so that smoke runs never mix with published results.
RESULTS = Path(
    os.environ.get("MEDCONTRAST_BENCH_RESULTS", Path(__file__).resolve().parent / "results")
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def times(fn: Callable[[], object], device: torch.device, warmup: int, reps: int) -> list[float]:
    """Wall times of ``reps`` calls of ``fn`` in seconds, after warm-up, the device synchronised."""
    for _ in range(warmup):
        fn()
    sync(device)
    out = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - start)
    return out


def median_time(
    fn: Callable[[], object], device: torch.device, warmup: int = 3, reps: int = 10
) -> float:
    """Median wall time of ``fn`` in seconds, after warm-up, with the device synchronised."""
    return statistics.median(times(fn, device, warmup, reps))


def hardware(device: torch.device) -> dict:
    info = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "cpu_threads": torch.get_num_threads(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next(
                line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")
            )
    except (OSError, StopIteration):
        info["cpu"] = platform.processor()
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    for name in ("monai", "timm", "medcontrast", "lightly"):
        try:
            info[name] = __import__(name).__version__
        except Exception:
            info[name] = "not installed"
    return info


def record(
    name: str,
    device: torch.device,
    rows: list[dict],
    extra: dict | None = None,
    out_dir: Path | None = None,
) -> Path:
    """Append one JSON line (date, command, hardware, rows) to results/<name>.jsonl."""
    out_dir = out_dir or RESULTS
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
        ).stdout.strip()
    except OSError:
        commit = ""
    # A copy without .git (a snapshot, the GPU machine's checkout) says which commit it is; the
    # variable wins over git: the GPU machine's copy can hold a .git of an older commit under the
    # newer working tree (seen on 2026-11-27: records said the session's first commit).
    commit = os.environ.get("MEDCONTRAST_BENCH_COMMIT", "") or commit
    entry = {
        "benchmark": name,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "commit": commit,
        "hardware": hardware(device),
        "rows": rows,
        **(extra or {}),
    }
    path = out_dir / f"{name}.jsonl"
    with open(path, "a") as fh:
        fh.write(json.dumps(entry) + "\n")
    return path


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = [max(len(c), *(len(_cell(r.get(c))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(_cell(r.get(c)).ljust(w) for c, w in zip(columns, widths, strict=True)))


def _cell(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def smooth_images(n: int, size: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """(n, 1, *size) images in [0, 1] with structure (blurred noise), never constant."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand((n, 1, *[max(2, s // 8) for s in size]), generator=g)
    mode = "bilinear" if len(size) == 2 else "trilinear"
    return torch.nn.functional.interpolate(coarse, size=size, mode=mode, align_corners=False).clamp(
        0, 1
    )


# ---- one failure loses one row --------------------------------------------------------------


class TimeLimitError(BaseException):
    """SIGTERM (``timeout`` in run_gpu.sh) arrived: stop, but write the rows measured so far."""


class NotApplicableError(Exception):
    """This row cannot be measured by design (e.g. lightly has no 3D augmentation)."""


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """``--quick`` (a tiny CPU setting, for the test suite) and ``--fail`` (a deliberate failure)."""
    parser.add_argument(
        "--quick", action="store_true", help="tiny sizes and few steps: checks that the script runs"
    )
    parser.add_argument(
        "--fail",
        default="",
        metavar="TEXT",
        help="rows whose label contains TEXT fail with an injected out-of-memory error (to check "
        "that one failure costs one row)",
    )


def failure(exc: BaseException, batch: object = None) -> str:
    """A failed row's result in a few words: ``OOM at batch 4096``, ``not installed: lightly``."""
    oom = torch.cuda.OutOfMemoryError
    if isinstance(exc, oom) or isinstance(exc.__cause__, oom):
        return f"OOM at batch {batch}" if batch is not None else "OOM"
    if isinstance(exc, ImportError):
        return f"not installed: {exc.name or first_line(exc)}"
    if isinstance(exc, NotApplicableError):
        return f"n/a: {first_line(exc)}"
    return f"failed: {type(exc).__name__}: {first_line(exc)}"


class Table:
    """The rows of one benchmark call, each measured on its own.

    ``measure(label, fn)`` runs ``fn`` and adds its figures to the row; an exception (out of
    memory, a missing package, anything else) becomes that row's ``result`` and the next row
    runs. On leaving the ``with`` block the JSON line is written with whatever was measured, also
    when SIGTERM (a time limit) stopped the call part-way.
    """

    def __init__(self, name: str, device: torch.device, columns: list[str], fail: str = "") -> None:
        self.name, self.device, self.columns, self.fail = name, device, columns, fail
        self.rows: list[dict] = []
        self.extra: dict = {}

    def __enter__(self) -> Table:
        self._previous = signal.signal(signal.SIGTERM, _raise_time_limit)
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        signal.signal(signal.SIGTERM, self._previous)
        if self.rows:
            print_table(self.rows, [*self.columns, "result"])
            print(f"written to {record(self.name, self.device, self.rows, self.extra)}")
        if kind is TimeLimitError:
            print("stopped by the time limit; the rows above are kept", file=sys.stderr)
            return True
        return False

    def measure(self, label: dict, fn: Callable[[], dict]) -> dict | None:
        """Run ``fn`` for the row ``label``; the row with its figures, or None when it failed."""
        rows = self.measure_rows(label, lambda: [fn()])
        return rows[0] if rows else None

    def measure_rows(self, label: dict, fn: Callable[[], list[dict]]) -> list[dict]:
        """Run ``fn``, which makes several rows (an evaluation's summary); on a failure one row,
        ``label`` with the failure as its result, stands for them all."""
        row, at = dict(label), len(self.rows)
        self.rows.append(row)
        try:
            if self.fail and self.fail in " ".join(map(str, label.values())):
                raise torch.cuda.OutOfMemoryError(f"injected by --fail {self.fail}")
            made = [{**label, **r, "result": "ok"} for r in fn()]
            self.rows[at : at + 1] = made
            return made
        except (TimeLimitError, PreemptedError) as exc:  # the trainer takes SIGTERM itself
            row["result"] = "stopped by the time limit"
            raise TimeLimitError from exc
        except Exception as exc:
            row["result"] = failure(exc, label.get("batch"))
            print(f"{label}: {row['result']}", file=sys.stderr)
            return []
        finally:
            gc.collect()  # what a failed row held must not fail the next one
            if self.device.type == "cuda":
                torch.cuda.empty_cache()


def _raise_time_limit(signum, frame) -> None:
    raise TimeLimitError


# ---- compute: FLOPs and the device's peak ---------------------------------------------------

# Dense bf16 tensor-core peaks from NVIDIA's data sheets (FLOP/s, without sparsity), matched in
# this order against torch.cuda.get_device_name. Other devices: a measured matmul rate instead.
PEAK_BF16 = [
    ("H100 PCIe", 756e12),
    ("H100 NVL", 835e12),
    ("H100", 989e12),
    ("H200", 989e12),
    ("A100", 312e12),
    ("L40S", 362e12),
]


def device_peak(device: torch.device) -> tuple[float, str]:
    """(FLOP/s, where the figure comes from): the data sheet's bf16 peak of a known GPU, else the
    best rate of a large matmul measured here (bf16 on a GPU, float32 on a CPU)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        for key, peak in PEAK_BF16:
            if key in name:
                return peak, f"{key} bf16 data sheet"
    n = 4096 if device.type == "cuda" else 1024
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    best = min(times(lambda: a @ a, device, warmup=2, reps=10))  # a peak: the best, not the median
    return 2 * n**3 / best, f"best of 10 {dtype} matmuls {n}^2"


def train_flops_per_image(method: torch.nn.Module, batch: dict[str, torch.Tensor]) -> float:
    """FLOPs of one training step per image (both views, forward and backward), counted by
    torch's FlopCounterMode: convolutions and matmuls (elementwise work is not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        method(batch)["loss"].backward()
    method.zero_grad(set_to_none=True)
    return counter.get_total_flops() / batch["view1"].shape[0]


def steady_rate(rates: list[float]) -> dict:
    """The median of timed windows (images/s) and their spread, (max - min) / median in %."""
    median = statistics.median(rates)
    return {
        "images_per_s": median,
        "spread_pct": 100 * (max(rates) - min(rates)) / median,
        "windows": len(rates),
    }
