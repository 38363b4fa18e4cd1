"""Pretrain once on an archive, evaluate on many tasks (issue 21).

    python benchmarks/bench_archive.py --data ../shared/data            # CPU proxy
    python benchmarks/bench_archive.py --data ../shared/data --full     # the GPU form

One SimCLR encoder is pretrained on a pool of all MedNIST images and the PneumoniaMNIST training
images, labels hidden (``archive_pool.py`` makes it, from arrays small enough to carry to a GPU),
then evaluated on two tasks, each against the strongest random initialisation (the random
protocol with the best test mean, chosen after the fact: the conservative choice):

* PneumoniaMNIST at 1%, 10% and 100% of the training labels, beside an encoder pretrained on
  PneumoniaMNIST alone with the same settings and number of steps (equal compute);
* MedNIST at 1, 5 and 10 images per class (macro one-vs-rest AUROC; MedNIST names no patients,
  so each image is drawn alone: ``budgets.group=none``).

The proxy: 28 px, 80 steps of batch 128 (as ``bench_proxy.py``), linear probes at every budget
and fine-tuning at the small ones (1% and the shots), a MedNIST task of 1,000 images per class
(``--task-subset``); its figures are far below the full form's, what it shows is the sign and size
of differences. ``--full`` trains at 64 px for ``--steps`` (default 1000) at batch 512 and uses the
whole MedNIST task (for a GPU; see ``run_gpu.sh archive``). Peak memory (this process and its
workers) is recorded with the rows.
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import Table, add_common_args
from archive_pool import write_arrays, write_manifests
from bench_label_efficiency import shipped_config
from bench_proxy import _by_seed, _paired

from medcontrast.config import EvaluateConfig, PretrainConfig
from medcontrast.evaluate import evaluate
from medcontrast.evaluation.report import headline_text
from medcontrast.evaluation.results_file import read_results
from medcontrast.pretrain import pretrain

ROOT = Path(__file__).resolve().parents[1]
ARCHIVE, ALONE, RANDOM = "archive", "pneumonia-only", "random"
TARGETS = {"mednist": {"1-shot": 0.97, "5-shot": 0.99}}  # and pneumonia: archive >= alone
_SHARED_EVAL = [
    "budgets.seeds=[0,1,2,3,4]",
    "protocols=[linear,finetune]",
    "bootstrap=200",
    "embedding_plot=false",
    "retrieval_queries=0",
]
FORMS = {
    "proxy": {
        "size": "[28,28]",
        "pretrain": ["train.batch_size=128", "train.warmup_epochs=0.5", "data.workers=2"],
        "evaluate": [
            "finetune.steps=24",
            "finetune.eval_every=4",
            "finetune.patience=3",
            "finetune.batch_size=64",
        ],
        "steps": 80,
        "task_subset": 1000,
    },
    "full": {  # 1000 steps of 512: the shipped PneumoniaMNIST config's 100 epochs
        "size": "[64,64]",
        "pretrain": ["train.batch_size=512", "train.warmup_epochs=1", "data.workers=8"],
        "evaluate": ["finetune.parallel=6"],
        "steps": 1000,
        "task_subset": 0,
    },
}
_COMMON_PRETRAIN = [
    "train.num_workers=0",
    "train.log_every=10",
    "train.checkpoint_every=1000",
    "data.resize=stretch",
]
COLUMNS = [
    "task",
    "budget",
    "init",
    "protocol",
    "seeds",
    "mean",
    "strongest_random",
    "minus_strongest_random",
    "paired_sd",
    "minus_alone",
    "minus_alone_sd",
    "target",
]


def pretrain_once(
    work: Path, manifest: Path, splits: str, overrides: list[str], label: str
) -> Path:
    """The run of ``label`` with these settings (made once, then reused)."""
    settings = [
        f"data.manifest={manifest}",
        f"data.splits={splits}",
        f"data.cache_dir={work / 'cache'}",
        f"out_dir={work / 'runs'}",
        *_COMMON_PRETRAIN,
        *overrides,
    ]
    name = f"{label}-" + hashlib.sha256("\n".join(settings).encode()).hexdigest()[:8]
    cfg = shipped_config(PretrainConfig, "pneumoniamnist", [*settings, f"name={name}"])
    run = Path(cfg.out_dir) / cfg.name
    if not (run / "encoder.pth").exists():
        start = time.time()
        pretrain(cfg, resume=(run / "checkpoints").exists(), progress=False)
        print(f"{label}: pretrained in {time.time() - start:.0f} s -> {run}", flush=True)
    return run


def _inits(runs: dict[str, Path]) -> str:
    listed = [f"{{name: {n}, source: '{p}'}}" for n, p in runs.items()]
    listed.append(f"{{name: {RANDOM}, source: random, encoder: 'timm:resnet18'}}")
    return "inits=[" + ", ".join(listed) + "]"


def evaluate_task(
    task: str, manifest: Path, work: Path, runs: dict[str, Path], extra: list[str]
) -> Path:
    cfg = shipped_config(
        EvaluateConfig,
        task,
        [
            f"data.manifest={manifest}",
            f"data.cache_dir={work / 'cache'}",
            "data.resize=stretch",
            f"out_dir={work / 'eval'}",
            f"name={task}-" + "-".join(p.name.rpartition("-")[2] for p in runs.values()),
            _inits(runs),
            *_SHARED_EVAL,
            *extra,
        ],
    )
    start = time.time()
    folder = evaluate(cfg, progress=False)
    print(f"{task}: evaluated in {time.time() - start:.0f} s -> {folder}", flush=True)
    print(headline_text(folder), flush=True)
    return folder


def summarise(task: str, folder: Path, metric: str = "auroc") -> list[dict]:
    """Per budget and pretrained init/protocol: the mean over seeds and the paired difference to
    the strongest random protocol (and, on PneumoniaMNIST, to the PneumoniaMNIST-only encoder)."""
    t = _by_seed(read_results(folder / "results.csv"), metric)
    rows = []
    for budget in t.index.get_level_values("budget").unique():
        at = t.loc[budget]
        if RANDOM not in at.index.get_level_values("init"):
            continue
        rand = at.loc[RANDOM].dropna()
        if rand.empty:
            continue
        best = rand.mean(axis=1).idxmax()
        for (init, protocol), values in at.iterrows():
            if init == RANDOM:
                continue
            diff, sd = _paired(values, rand.loc[best])
            row = {
                "task": task,
                "budget": budget,
                "init": init,
                "protocol": protocol,
                "seeds": int(values.notna().sum()),
                "mean": float(values.mean()),
                "strongest_random": f"{best} {rand.loc[best].mean():.3f}",
                "minus_strongest_random": diff,
                "paired_sd": sd,
                "target": TARGETS.get(task, {}).get(budget, ""),
            }
            if init == ARCHIVE and (ALONE, protocol) in at.index:
                row["minus_alone"], row["minus_alone_sd"] = _paired(
                    values, at.loc[(ALONE, protocol)]
                )
            rows.append(row)
    return rows


def peak_memory_gib() -> dict[str, float]:
    """Peak resident memory of this process and of its (finished) worker processes, GiB."""
    kib = 1024**2  # ru_maxrss is in KiB on Linux
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kib
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kib
    return {"peak_rss_gib": round(own, 2), "peak_rss_children_gib": round(children, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--work", default="/tmp/medcontrast-archive")
    parser.add_argument(
        "--pool", default="", help="a folder made by archive_pool.py (default: <work>/pool)"
    )
    parser.add_argument("--full", action="store_true", help="the GPU form (64 px, longer)")
    parser.add_argument(
        "--steps", type=int, default=0, help="pretraining steps (default: the form's)"
    )
    parser.add_argument(
        "--archive-steps",
        type=int,
        default=0,
        help="steps of the archive encoder only (default: --steps): does a longer pass over the "
        "pool close a gap to the PneumoniaMNIST-only encoder",
    )
    parser.add_argument(
        "--task-subset", type=int, default=-1, help="MedNIST images per class (0: all)"
    )
    add_common_args(parser)
    args = parser.parse_args()
    form = FORMS["full" if args.full else "proxy"]
    steps = args.steps or form["steps"]
    subset = form["task_subset"] if args.task_subset < 0 else args.task_subset
    work = Path(args.work) / ("quick" if args.quick else "")
    pool = Path(args.pool) if args.pool else work / "pool"
    size = form["size"]
    pre = [f"data.size={size}", f"train.max_steps={steps}", *form["pretrain"]]
    # appended only when asked, so that the run of equal steps keeps its name (and is reused)
    pre_archive = [*pre, f"train.max_steps={args.archive_steps}"] if args.archive_steps else pre
    ev = [f"data.size={size}", *form["evaluate"]]
    if args.quick:  # a tiny network for two steps, one seed: checks that the script runs
        pre = pre_archive = [
            "data.size=[16,16]",
            "model.encoder=timm:resnet10t",
            "train.max_steps=2",
            "train.batch_size=8",
        ]
        ev = ["data.size=[16,16]", "budgets.seeds=[0]", "protocols=[linear]"]
        subset = 30
    seconds: dict[str, int] = {}

    def timed(label: str, fn):
        start = time.time()
        out = fn()
        seconds[label] = round(time.time() - start)
        return out

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with Table("archive", device, COLUMNS, args.fail) as table:
        table.extra = {
            "form": "full" if args.full else "proxy",
            "steps": steps,
            "archive_steps": args.archive_steps or steps,
            "seconds": seconds,
        }
        if not (pool / "mednist.npz").exists():
            per_class = 40 if args.quick else 0  # quick: 240 MedNIST images
            timed("pool arrays", lambda: write_arrays(Path(args.data), pool, 28, 2, per_class))
        manifests = timed("manifests", lambda: write_manifests(pool, work, subset))
        archive = timed(
            "pretrain archive",
            lambda: pretrain_once(
                work, manifests["pool"], "[train,val,test]", pre_archive, ARCHIVE
            ),
        )
        alone = timed(
            "pretrain pneumonia-only",
            lambda: pretrain_once(work, manifests["pneumoniamnist"], "[train,val]", pre, ALONE),
        )
        pneumonia = [
            "budgets.fractions=[0.01,0.1,1.0]",
            *([] if args.full else ["finetune.budgets=[1%]"]),
            *ev,
        ]
        # every shot budget is fine-tuned (a few dozen images each); group=none: no patients
        shots = ["budgets.shots=[1,5,10]", "budgets.fractions=[]", "finetune.budgets=[]"]
        mednist = [*shots, "budgets.group=none", *ev]
        tasks = {
            "pneumoniamnist": ({ARCHIVE: archive, ALONE: alone}, pneumonia),
            "mednist": ({ARCHIVE: archive}, mednist),
        }
        for task, (runs, extra) in tasks.items():
            table.measure_rows(
                {"task": task},
                lambda t=task, r=runs, e=extra: summarise(
                    t, timed(f"evaluate {t}", lambda: evaluate_task(t, manifests[t], work, r, e))
                ),
            )
        table.extra.update(peak_memory_gib())
        print(f"peak memory: {table.extra}", flush=True)


if __name__ == "__main__":
    np.seterr(invalid="ignore")
    pd.set_option("display.width", 200)
    main()
