"""Fine-tuning runs side by side: an evaluation's wall-clock time at ``finetune.parallel`` = k.

    python benchmarks/bench_finetune_parallel.py pneumoniamnist --parallel 1 2 4 8

Fine-tunes a random initialisation of the shipped evaluate config's encoder (no pretraining
needed: the cost of a fine-tune does not depend on where its weights came from) on one budget
for several seeds, once per k, each k in its own evaluation folder. Prints per k: the wall-clock
time of the call of evaluate (from the folder's ``timing.jsonl``: cache, worker start-up and
every run), runs per minute, the speed-up over the first k, and the largest difference of a
run's test AUROC from the first k's (0 on a CPU with one thread per run; a GPU's kernels are not
bitwise deterministic). ``--evaluate key=value ...`` overrides the config (e.g. a smaller image
on a CPU).
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd
from _common import Table, add_common_args
from bench_label_efficiency import data_overrides, shipped_config

from medcontrast.config import EvaluateConfig
from medcontrast.evaluate import evaluate
from medcontrast.evaluation.results_file import read_results
from medcontrast.runtime import resolve_device

ROOT = Path(__file__).resolve().parents[1]
# The random initialisation: the network the shipped pretrain config trains.
ENCODER = {
    "pneumoniamnist": "encoder: 'timm:resnet18'",
    "adrenalmnist3d": "encoder: 'monai:resnet18', stem_stride: 1",
}


def run_k(dataset: str, common: list[str], work: Path, k: int, args) -> tuple[dict, pd.Series]:
    """Evaluate with ``finetune.parallel=k`` in a fresh folder; (timing line, test AUROC per
    run)."""
    name = f"{dataset}-parallel{k}"
    shutil.rmtree(work / "eval" / name, ignore_errors=True)
    cfg = shipped_config(
        EvaluateConfig,
        dataset,
        [
            *common,
            f"out_dir={work / 'eval'}",
            f"name={name}",
            f"inits=[{{name: random, source: random, {ENCODER[dataset]}}}]",
            "protocols=[finetune]",
            f"budgets.fractions=[{args.fraction}]",
            f"budgets.seeds={list(range(args.seeds))}",
            "bootstrap=20",
            "embedding_plot=false",
            "retrieval_queries=0",
            f"finetune.parallel={k}",
            *args.evaluate,
        ],
    )
    folder = evaluate(cfg, progress=False)
    timing = json.loads((folder / "timing.jsonl").read_text().splitlines()[-1])
    results = read_results(folder / "results.csv")
    auroc = results[results["metric"] == "auroc"].set_index(["budget", "seed"])["value"]
    return timing, auroc


def figures(timing: dict, auroc: pd.Series, first: tuple[dict, pd.Series]) -> dict:
    """One k's row; speed-up and AUROC difference against the first k measured."""
    base_timing, base_auroc = first
    return {
        "runs": timing["runs"],
        "wall_s": round(timing["seconds"], 1),
        "runs_per_min": round(60 * timing["runs"] / timing["seconds"], 2),
        "speedup": round(base_timing["seconds"] / timing["seconds"], 2),
        "max_auroc_diff": float((auroc - base_auroc).abs().max()),
        "mean_auroc": round(float(auroc.mean()), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", choices=list(ENCODER))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--work", default="/tmp/medcontrast-finetune-parallel")
    parser.add_argument("--parallel", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--seeds", type=int, default=8)
    parser.add_argument("--evaluate", nargs="*", default=[], help="key=value overrides")
    add_common_args(parser)
    args = parser.parse_args()
    if args.quick:  # two fine-tunes of one epoch on 16 px, one and two at a time
        args.parallel, args.seeds, args.fraction = [1, 2], 2, 0.02
        size = [16] * (3 if args.dataset == "adrenalmnist3d" else 2)
        args.evaluate = [
            f"data.size={size}",
            "finetune.steps=10",
            "finetune.lr_factors=[1.0]",
            *args.evaluate,
        ]
    work = Path(args.work)
    common = data_overrides(args.dataset, Path(args.data), work)
    # The cache is built once before any timed call, so that no k pays for it.
    if not args.quick:
        run_k(args.dataset, common, work, 1, argparse.Namespace(**{**vars(args), "seeds": 1}))
    columns = ["dataset", "parallel", "runs", "wall_s", "runs_per_min", "speedup"]
    columns += ["max_auroc_diff", "mean_auroc"]
    first: list[tuple[dict, pd.Series]] = []  # the first k that ran: the reference

    def one(k: int) -> dict:
        timing, auroc = run_k(args.dataset, common, work, k, args)
        first.append((timing, auroc))
        return figures(timing, auroc, first[0])

    with Table("finetune_parallel", resolve_device("auto"), columns, args.fail) as table:
        table.extra = {
            "fraction": args.fraction,
            "seeds": args.seeds,
            "evaluate_overrides": args.evaluate,
        }
        for k in args.parallel:
            table.measure({"dataset": args.dataset, "parallel": k}, lambda k=k: one(k))


if __name__ == "__main__":
    main()
