"""Timing, hardware description and result records shared by the benchmark scripts."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import torch

# The test suite points this elsewhere so that smoke runs never mix with published results.
RESULTS = Path(
    os.environ.get("MEDCONTRAST_BENCH_RESULTS", Path(__file__).resolve().parent / "results")
)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(
    fn: Callable[[], object], device: torch.device, warmup: int = 3, reps: int = 10
) -> float:
    """Median wall time of ``fn`` in seconds, after warm-up, with the device synchronised."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


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
