"""A CPU proxy that answers "is evaluation recipe A better than recipe B" in about 15 minutes.

    python benchmarks/bench_proxy.py --recipe finetune --recipe lpft finetune.mode=lpft

Each ``--recipe NAME [key=value ...]`` is one evaluation recipe: overrides of
the shipped ``evaluate/<dataset>.yaml`` on top of the proxy's own (28 px 2D / 28^3 3D, budgets 1%
and 10%, 5 seeds, linear probe and fine-tuning, shorter schedules). The pretraining is the shipped
the shipped ``pretrain/<dataset>.yaml`` at the proxy's size and length; it is run once per dataset and
its overrides, and reused by every recipe and every later call, so comparing evaluation recipes
costs only their evaluations (an evaluation folder is reused too: a finished recipe costs nothing).

Prints and records, per dataset, budget and recipe: each protocol's mean AUROC over the seeds,
pretrained minus the strongest random initialisation (the random protocol and recipe with the
best test mean: the conservative choice) with the standard deviation of the paired per-seed
differences,
and each recipe minus the first, paired the same way. A proxy: small images, minutes of
pretraining and a smaller 3D network than the configs, so its absolute figures are far below what
the full configs reach on a GPU; what it is for is the sign and size of differences.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from _common import Table, add_common_args
from bench_label_efficiency import QUICK_EVALUATE, QUICK_PRETRAIN, data_overrides, shipped_config

from medcontrast.config import EvaluateConfig, PretrainConfig
from medcontrast.evaluate import evaluate
from medcontrast.evaluation.results_file import read_results
from medcontrast.pretrain import pretrain

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED, RANDOM = "pretrained", "random"
_EVALUATE = [
    "budgets.fractions=[0.01,0.1]",
    "budgets.seeds=[0,1,2,3,4]",
    "protocols=[linear,finetune]",
    "finetune.steps=24",
    "finetune.eval_every=4",
    "finetune.patience=3",
    "bootstrap=200",
    "embedding_plot=false",
    "retrieval_queries=0",
]
# The proxy's settings on top of the shipped configs. 3D uses a MONAI ResNet-10 with a stride-2
# stem: the config's ResNet-18 at stride 1 costs ten times more per step on a CPU.
PROXY = {
    "pneumoniamnist": {
        "encoder": "timm:resnet18",
        "pretrain": [
            "data.size=[28,28]",
            "train.max_steps=80",
            "train.batch_size=128",
            "train.warmup_epochs=0.5",
        ],
        "evaluate": ["data.size=[28,28]", "finetune.batch_size=64", *_EVALUATE],
    },
    "adrenalmnist3d": {
        "encoder": "monai:resnet10",
        "pretrain": [
            "model.encoder=monai:resnet10",
            "model.stem_stride=2",
            "train.max_steps=80",
            "train.batch_size=64",
            "train.warmup_epochs=1",
        ],
        "evaluate": ["finetune.batch_size=32", *_EVALUATE],
    },
}
_COMMON_PRETRAIN = ["train.num_workers=0", "train.log_every=10", "train.checkpoint_every=1000"]


def _run_name(dataset: str, extra: list[str]) -> str:
    """The proxy's pretraining run name: the dataset and a digest of its overrides."""
    overrides = [*_COMMON_PRETRAIN, *PROXY[dataset]["pretrain"], *extra]
    return f"{dataset}-proxy-" + hashlib.sha256("\n".join(overrides).encode()).hexdigest()[:8]


def _base_run_name(dataset: str) -> str:
    """The run without ``--pretrain`` overrides, whose evaluations carry no tag (as before)."""
    return _run_name(dataset, [])


def pretrained_run(dataset: str, common: list[str], work: Path, extra: list[str]) -> Path:
    """The proxy's pretraining run of ``dataset`` (made once, then reused)."""
    overrides = [*_COMMON_PRETRAIN, *PROXY[dataset]["pretrain"], *extra]
    cfg = shipped_config(
        PretrainConfig,
        dataset,
        [*common, f"out_dir={work / 'runs'}", f"name={_run_name(dataset, extra)}", *overrides],
    )
    run = Path(cfg.out_dir) / cfg.name
    if not (run / "encoder.pth").exists():
        start = time.time()
        pretrain(cfg, resume=(run / "checkpoints").exists(), progress=False)
        print(f"{dataset}: pretrained in {time.time() - start:.0f} s -> {run}")
    return run


def evaluate_recipe(
    dataset: str, common: list[str], work: Path, run: Path, name: str, overrides: list[str]
) -> Path:
    """One recipe's evaluation folder (continued where a previous call stopped), named after
    the recipe and, where pretrain overrides made another run, that run's tag."""
    tag = run.name.rpartition("-")[2] if run.name != _base_run_name(dataset) else ""
    random = f"{{name: {RANDOM}, source: random, encoder: '{PROXY[dataset]['encoder']}'}}"
    cfg = shipped_config(
        EvaluateConfig,
        dataset,
        [
            *common,
            f"out_dir={work / 'eval'}",
            f"name={dataset}-{name}" + (f"-{tag}" if tag else ""),
            f"inits=[{{name: {PRETRAINED}, source: '{run}'}}, {random}]",
            *PROXY[dataset]["evaluate"],
            *overrides,
        ],
    )
    start = time.time()
    folder = evaluate(cfg, progress=False)
    print(f"{dataset} {name}: evaluated in {time.time() - start:.0f} s -> {folder}")
    return folder


def _by_seed(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Metric values indexed by (budget, init, protocol), one column per seed."""
    r = results[results["metric"] == metric]
    return r.pivot_table(index=["budget", "init", "protocol"], columns="seed", values="value")


def _paired(a: pd.Series, b: pd.Series) -> tuple[float, float]:
    """Mean and standard deviation (ddof 1) of the per-seed differences a - b."""
    d = (a - b).dropna()
    return float(d.mean()), float(d.std(ddof=1)) if len(d) > 1 else float("nan")


def _randoms(tables: dict[str, pd.DataFrame], budget: str) -> pd.DataFrame:
    """Every recipe's random-initialisation rows at ``budget`` (seeds as columns), indexed
    "recipe protocol"."""
    parts = []
    for recipe, t in tables.items():
        if (budget, RANDOM) in t.index.droplevel("protocol"):
            r = t.loc[(budget, RANDOM)]
            parts.append(r.set_axis([f"{recipe} {p}" for p in r.index]))
    # Only rows with every seed: a partly run recipe would be compared on fewer draws.
    return pd.concat(parts).dropna() if parts else pd.DataFrame()


def summarise(dataset: str, folders: dict[str, Path], metric: str = "auroc") -> list[dict]:
    """One row per budget, recipe and pretrained protocol (see the module docstring). The
    strongest random initialisation is chosen among every recipe's random rows: a recipe that
    weakens the baseline is not rewarded for it."""
    tables = {
        name: _by_seed(read_results(f / "results.csv"), metric) for name, f in folders.items()
    }
    first = next(iter(folders))
    rows = []
    for recipe, t in tables.items():
        for budget in t.index.get_level_values("budget").unique():
            rand = _randoms(tables, budget)
            if rand.empty or (budget, PRETRAINED) not in t.index.droplevel("protocol"):
                continue  # an evaluation cut short
            strongest = rand.mean(axis=1).idxmax()
            for protocol, values in t.loc[(budget, PRETRAINED)].iterrows():
                diff, sd = _paired(values, rand.loc[strongest])
                own = f"{recipe} {protocol}"
                row = {
                    "dataset": dataset,
                    "budget": budget,
                    "recipe": recipe,
                    "protocol": protocol,
                    "seeds": int(values.notna().sum()),
                    "pretrained": float(values.mean()),
                    "random": float(rand.loc[own].mean()) if own in rand.index else float("nan"),
                    "strongest_random": f"{strongest} {rand.loc[strongest].mean():.3f}",
                    "minus_strongest_random": diff,
                    "paired_sd": sd,
                    "over_2sd": bool(diff > 2 * sd),
                }
                key = (budget, PRETRAINED, protocol)
                if recipe != first and key in tables[first].index:
                    row["minus_first_recipe"], row["minus_first_sd"] = _paired(
                        values, tables[first].loc[key]
                    )
                rows.append(row)
    return rows


COLUMNS = [
    "dataset",
    "budget",
    "recipe",
    "protocol",
    "seeds",
    "pretrained",
    "random",
    "strongest_random",
    "minus_strongest_random",
    "paired_sd",
    "over_2sd",
    "minus_first_recipe",
    "minus_first_sd",
]


def _recipes(given: list[list[str]] | None) -> dict[str, list[str]]:
    recipes = {r[0]: r[1:] for r in given or [["default"]]}
    if len(recipes) != len(given or [["default"]]):
        raise SystemExit("error: two --recipe with the same name")
    return recipes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--work", default="/tmp/medcontrast-proxy")
    parser.add_argument("--datasets", nargs="+", default=list(PROXY), choices=list(PROXY))
    parser.add_argument(
        "--recipe",
        nargs="+",
        action="append",
        metavar="NAME [KEY=VALUE",
        help="an evaluation recipe: a name, then overrides of the evaluate config",
    )
    parser.add_argument("--pretrain", nargs="*", default=[], help="key=value pretrain overrides")
    add_common_args(parser)
    args = parser.parse_args()
    recipes = _recipes(args.recipe)
    quick: dict[str, list[str]] = {}
    if args.quick:  # two steps of a tiny network, linear probes at two seeds
        args.pretrain = [*QUICK_PRETRAIN["adrenalmnist3d"], *args.pretrain]
        args.datasets = ["adrenalmnist3d"]
        quick = {"adrenalmnist3d": [*QUICK_EVALUATE["adrenalmnist3d"], "budgets.seeds=[0,1]"]}
    work, seconds = Path(args.work), {}

    def one(dataset: str) -> list[dict]:
        common = data_overrides(dataset, Path(args.data), work)
        start = time.time()
        run = pretrained_run(dataset, common, work, args.pretrain)
        seconds[f"{dataset} pretrain"] = round(time.time() - start)
        folders = {}
        for name, overrides in recipes.items():
            start = time.time()
            extra = [*quick.get(dataset, []), *overrides]
            folders[name] = evaluate_recipe(dataset, common, work, run, name, extra)
            seconds[f"{dataset} {name}"] = round(time.time() - start)
        return summarise(dataset, folders)

    with Table("proxy", torch.device("cpu"), COLUMNS, args.fail) as table:
        table.extra = {"recipes": recipes, "pretrain_overrides": args.pretrain, "seconds": seconds}
        for dataset in args.datasets:
            table.measure_rows({"dataset": dataset}, lambda d=dataset: one(d))


if __name__ == "__main__":
    np.seterr(invalid="ignore")
    main()
