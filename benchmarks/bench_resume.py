"""Exact resume under torchrun: kill -9 after a checkpoint, ``--resume``, compare with clean runs.

Three runs of one config under ``torchrun --standalone --nproc_per_node N``: two uninterrupted
(their difference is the run-to-run noise of the device: zero on a CPU, non-deterministic kernels
on a GPU) and one killed with SIGKILL (the whole process group, as a scheduler or the OOM killer
would) once a checkpoint past ``--kill-after`` is on disk, then resumed. The resumed run passes when
its losses differ from the first clean run by no more than the second clean run does.

    python benchmarks/bench_resume.py --nproc 1 --device cuda       # the GPU check (issue 12)
    python benchmarks/bench_resume.py --nproc 2 --device cpu        # DDP on the CPU (gloo)
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from _common import Table, add_common_args

from medcontrast.checkpoint import LAST


def _archive(work: Path) -> Path:
    """A small phantom archive and its manifest (the demo's data, made here)."""
    from medcontrast.archive.index import build_index, write_index
    from medcontrast.phantoms.writer import make_phantoms

    manifest = work / "manifest.csv"
    if not manifest.exists():
        make_phantoms(work / "archive", patients=60, seed=3, progress=False)
        result = build_index(work / "archive", progress=False)
        write_index(result, manifest, work / "archive")
    return manifest


def _overrides(args: argparse.Namespace, manifest: Path, work: Path, name: str) -> list[str]:
    return [
        f"data.manifest={manifest}",
        "data.modalities=[CR,DX]",
        f"data.size=[{args.size},{args.size}]",
        f"data.cache_dir={work / 'cache'}",
        f"out_dir={work / 'runs'}",
        f"name={name}",
        f"model.encoder={args.encoder}",
        f"method.name={args.method}",
        *(["method.queue_size=64"] if args.method == "moco" else []),
        "views.preset=radiograph",
        f"views.path={args.views}",
        f"train.device={args.device}",
        f"train.batch_size={args.batch}",
        f"train.max_steps={args.steps}",
        "train.log_every=1",
        f"train.checkpoint_every={args.checkpoint_every}",
        "train.seed=7",
    ]


def _torchrun(args: argparse.Namespace, overrides: list[str], resume: bool = False) -> list[str]:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    cmd += ["--nproc_per_node", str(args.nproc), "-m", "medcontrast.cli", "pretrain", *overrides]
    return cmd + (["--resume"] if resume else [])


def _run(cmd: list[str], timeout: float) -> float:
    start = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        print(done.stderr[-3000:], file=sys.stderr)
        raise RuntimeError(f"exit {done.returncode}: {' '.join(cmd[-3:])}")
    return time.time() - start


def _checkpoint_step(run: Path) -> int:
    """The step of the newest complete checkpoint (0 when none): read without loading it."""
    path = run / "checkpoints" / LAST
    if not path.exists():
        return 0
    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["step"])
    except Exception:  # being replaced right now; look again
        return 0


def _kill_after_checkpoint(cmd: list[str], run: Path, step: int, timeout: float) -> int:
    """Start ``cmd`` in its own process group; SIGKILL the group once a checkpoint >= step."""
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        reached = _checkpoint_step(run)
        if reached >= step:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return reached
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    print(proc.stderr.read()[-3000:], file=sys.stderr)
    raise RuntimeError(f"no checkpoint at step {step} before the run ended")


def _max_diff(a: Path, b: Path) -> float:
    la = pd.read_csv(a / "metrics.csv").set_index("step")["loss"]
    lb = pd.read_csv(b / "metrics.csv").set_index("step")["loss"]
    if list(la.index) != list(lb.index):
        raise RuntimeError(f"steps differ: {list(la.index)} vs {list(lb.index)}")
    return float((la - lb).abs().max())


def _weights_diff(a: Path, b: Path) -> float:
    wa, wb = torch.load(a / "encoder.pth"), torch.load(b / "encoder.pth")
    return max(float((wa[k].float() - wb[k].float()).abs().max()) for k in wa)


def resume_check(args: argparse.Namespace) -> dict:
    """Two clean runs and one killed and resumed; the row of figures."""
    work = Path(args.work or tempfile.mkdtemp(prefix="medcontrast-resume-"))
    manifest = Path(args.manifest) if args.manifest else _archive(work)
    runs = work / "runs"
    seconds = {}
    for name in ("clean-a", "clean-b"):
        seconds[name] = _run(_torchrun(args, _overrides(args, manifest, work, name)), args.timeout)
    killed = _overrides(args, manifest, work, "killed")
    at = _kill_after_checkpoint(
        _torchrun(args, killed), runs / "killed", args.kill_after, args.timeout
    )
    _run(_torchrun(args, killed, resume=True), args.timeout)
    noise = _max_diff(runs / "clean-a", runs / "clean-b")
    resumed = _max_diff(runs / "clean-a", runs / "killed")
    return {
        "steps": args.steps,
        "killed_at_checkpoint": at,
        "loss_diff_clean_runs": noise,
        "loss_diff_resumed": resumed,
        "weights_diff_clean_runs": _weights_diff(runs / "clean-a", runs / "clean-b"),
        "weights_diff_resumed": _weights_diff(runs / "clean-a", runs / "killed"),
        "seconds_clean_run": seconds["clean-a"],
        "passed": resumed <= noise + 1e-6,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nproc", type=int, default=1)
    p.add_argument("--device", default="auto")
    p.add_argument("--views", default="auto")
    p.add_argument("--encoder", default="timm:resnet18")
    p.add_argument("--method", default="moco")  # a queue: state beyond the weights must resume
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--checkpoint-every", type=int, default=10)
    p.add_argument("--kill-after", type=int, default=20)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--work", default="")
    p.add_argument("--manifest", default="", help="default: a small phantom archive made in --work")
    add_common_args(p)
    args = p.parse_args()
    if args.quick:
        args.device, args.encoder, args.size, args.batch = "cpu", "timm:resnet10t", 32, 8
        args.steps, args.checkpoint_every, args.kill_after = 12, 3, 3
    device = torch.device("cuda" if args.device != "cpu" and torch.cuda.is_available() else "cpu")
    columns = ["nproc", "device", "steps", "killed_at_checkpoint", "loss_diff_clean_runs"]
    columns += ["loss_diff_resumed", "weights_diff_resumed", "seconds_clean_run", "passed"]
    with Table("resume", device, columns, args.fail) as table:
        row = table.measure(
            {"nproc": args.nproc, "device": args.device}, lambda: resume_check(args)
        )
    if row is not None and not row["passed"]:
        sys.exit("the resumed run differs from the clean run by more than two clean runs differ")


if __name__ == "__main__":
    main()
