"""A CPU proxy for "does pretraining save labels" and "is evaluation recipe A better than B".

    python benchmarks/bench_proxy.py --recipe finetune --recipe lpft finetune.mode=lpft
    python benchmarks/bench_proxy.py --pretrained simclr --pretrained byol method.name=byol \
        --recipe converged

Each ``--recipe NAME [key=value ...]`` is one evaluation recipe: overrides of
the shipped ``evaluate/<dataset>.yaml`` on top of the proxy's own (28 px 2D / 28^3 3D, budgets 1%,
10% and all labels, 5 seeds, linear probe and fine-tuning, each fine-tune trained until validation
stops improving: plain fine-tuning at two learning rates, the best on validation kept).
Each ``--pretrained NAME [key=value ...]`` is one pretraining run: the shipped
``pretrain/<dataset>.yaml`` at the proxy's size and length with those overrides (and
``--pretrain``'s, which apply to all); without any, one run named ``pretrained``. Every run is made once and reused
by every recipe and every later call, and all of them are evaluated in one folder beside one random
initialisation, so each pretrained encoder is paired with the same random runs (an evaluation
folder is reused too: a finished recipe costs nothing). ``--summarise-only`` records what the
folders hold without pretraining or evaluating: the budgets a stopped call finished.

Prints and records, per dataset, budget, recipe, pretrained run and protocol: the mean AUROC over
the seeds, pretrained minus the strongest random initialisation (the random protocol and recipe
with the best test mean: the conservative choice) with the standard deviation of the paired
per-seed differences and their 95% t-interval, each fine-tune's best and last step (the learning
curve's summary: where validation peaked, where it was stopped), and each recipe minus the first,
paired the same way. A proxy: small images, minutes of pretraining and a smaller 3D network than
the configs, so its absolute figures are far below what the full configs reach on a GPU; what it
is for is the sign and size of differences.
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
from bench_label_efficiency import (
    QUICK_EVALUATE,
    QUICK_PRETRAIN,
    data_overrides,
    finetune_steps,
    shipped_config,
)
from scipy import stats

from medcontrast.config import EvaluateConfig, PretrainConfig
from medcontrast.evaluate import evaluate
from medcontrast.evaluation.results_file import read_results
from medcontrast.pretrain import pretrain

ROOT = Path(__file__).resolve().parents[1]
PRETRAINED, RANDOM = "pretrained", "random"
# Every fine-tune trains until validation stops improving (at most 400 steps, a check every 25,
# stopped after 4 checks without a gain), plain fine-tuning at two learning rates for every
# initialisation alike: on PneumoniaMNIST at 1% the shipped grid's six candidates (LP-FT and
# plain, 1.5e-4 to 1.5e-3) chose plain at 1.5e-3, its highest, for SimCLR and random alike
# (best steps 325 and 225), so the grid goes one step higher; six candidates cost ~5 min a run.
_EVALUATE = [
    "budgets.fractions=[0.01,0.1,1.0]",
    "budgets.seeds=[0,1,2,3,4]",
    "protocols=[linear,finetune]",
    "finetune.steps=400",
    "finetune.eval_every=25",
    "finetune.patience=4",
    "finetune.mode=plain",
    "finetune.lr=0.0015",
    "finetune.lr_factors=[1.0,3.0]",
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


def pretrained_run(
    dataset: str, common: list[str], work: Path, extra: list[str], train: bool = True
) -> Path:
    """The proxy's pretraining run of ``dataset`` (made once, then reused; ``train`` False:
    only its folder)."""
    overrides = [*_COMMON_PRETRAIN, *PROXY[dataset]["pretrain"], *extra]
    cfg = shipped_config(
        PretrainConfig,
        dataset,
        [*common, f"out_dir={work / 'runs'}", f"name={_run_name(dataset, extra)}", *overrides],
    )
    run = Path(cfg.out_dir) / cfg.name
    if train and not (run / "encoder.pth").exists():
        start = time.time()
        pretrain(cfg, resume=(run / "checkpoints").exists(), progress=False)
        print(f"{dataset}: pretrained in {time.time() - start:.0f} s -> {run}")
    return run


def _folder_name(dataset: str, recipe: str, runs: dict[str, Path]) -> str:
    """An evaluation folder's name: the recipe's, and the pretraining runs' tag. A single run
    named ``pretrained`` keeps the earlier names (no tag for the run without overrides)."""
    if list(runs) == [PRETRAINED]:
        run = runs[PRETRAINED]
        tag = run.name.rpartition("-")[2] if run.name != _base_run_name(dataset) else ""
    else:  # the set of runs and their names: another set is another folder
        named = "\n".join(f"{name}={run.name}" for name, run in runs.items())
        tag = "m" + hashlib.sha256(named.encode()).hexdigest()[:8]
    return f"{dataset}-{recipe}" + (f"-{tag}" if tag else "")


def inits_override(runs: dict[str, Path], encoder: str) -> str:
    """The evaluate config's ``inits``: every pretraining run in ``runs`` (by init name), then one
    random ``encoder`` named ``random``."""
    inits = [f"{{name: {init}, source: '{run}'}}" for init, run in runs.items()]
    random = f"{{name: {RANDOM}, source: random, encoder: '{encoder}'}}"
    return f"inits=[{', '.join([*inits, random])}]"


def evaluate_recipe(
    dataset: str,
    common: list[str],
    work: Path,
    runs: dict[str, Path],
    recipe: tuple[str, list[str]],
    summarise_only: bool = False,
) -> Path:
    """One recipe's evaluation of every pretraining run in ``runs`` (by init name) and one
    random initialisation, continued where a previous call stopped (``summarise_only``: only
    its folder, as it stands)."""
    name, overrides = recipe
    folder_name = _folder_name(dataset, name, runs)
    if summarise_only:  # a call stopped part-way: record what its folder holds
        folder = work / "eval" / folder_name
        if not (folder / "results.csv").exists():
            raise FileNotFoundError(f"{folder}: no evaluation to summarise")
        return folder
    cfg = shipped_config(
        EvaluateConfig,
        dataset,
        [
            *common,
            f"out_dir={work / 'eval'}",
            f"name={folder_name}",
            inits_override(runs, PROXY[dataset]["encoder"]),
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


def _paired(a: pd.Series, b: pd.Series) -> tuple[float, float, float, float]:
    """Mean, standard deviation (ddof 1) and 95% t-interval of the per-seed differences a - b."""
    d = (a - b).dropna()
    mean = float(d.mean())
    if len(d) < 2:
        return mean, float("nan"), float("nan"), float("nan")
    sd = float(d.std(ddof=1))
    half = float(stats.t.ppf(0.975, len(d) - 1)) * sd / np.sqrt(len(d))
    return mean, sd, mean - half, mean + half


def _randoms(tables: dict[str, pd.DataFrame], budget: str) -> pd.DataFrame:
    """Every recipe's random-initialisation rows at ``budget`` (seeds as columns), indexed
    "recipe protocol"."""
    parts = []
    for recipe, t in tables.items():
        if (budget, RANDOM) in t.index.droplevel("protocol"):
            r = t.loc[(budget, RANDOM)]
            parts.append(r.set_axis([f"{recipe} {p}" for p in r.index]))
    # Only a budget whose random rows have every seed: a partly run protocol would be compared on
    # fewer draws, and leaving it out would choose the strongest among the others (a call stopped
    # during the random fine-tune of the last seed named its kNN the strongest).
    rand = pd.concat(parts) if parts else pd.DataFrame()
    return pd.DataFrame() if rand.isna().to_numpy().any() else rand


def _row(values: pd.Series, rand: pd.DataFrame, own: str, strongest: str) -> dict:
    """The figures of one pretrained (budget, recipe, init, protocol) against the randoms."""
    diff, sd, low, high = _paired(values, rand.loc[strongest])
    return {
        "seeds": int(values.notna().sum()),
        "pretrained": float(values.mean()),
        "random": float(rand.loc[own].mean()) if own in rand.index else float("nan"),
        "strongest_random": f"{strongest} {rand.loc[strongest].mean():.3f}",
        "minus_strongest_random": diff,
        "paired_sd": sd,
        "ci95": f"[{low:+.3f}, {high:+.3f}]",
        "over_2sd": bool(diff > 2 * sd),
    }


def summarise(dataset: str, folders: dict[str, Path], metric: str = "auroc") -> list[dict]:
    """One row per budget, recipe, pretrained init and protocol (see the module docstring). The
    strongest random initialisation is chosen among every recipe's random rows: a recipe that
    weakens the baseline is not rewarded for it."""
    results = {name: read_results(f / "results.csv") for name, f in folders.items()}
    tables = {name: _by_seed(r, metric) for name, r in results.items()}
    first = next(iter(folders))
    rows = []
    for recipe, t in tables.items():
        steps = finetune_steps(results[recipe])
        for budget in t.index.get_level_values("budget").unique():
            rand = _randoms(tables, budget)
            if rand.empty:
                continue  # an evaluation cut short
            strongest = rand.mean(axis=1).idxmax()
            for (init, protocol), values in t.loc[budget].iterrows():
                if init == RANDOM:
                    continue
                own = f"{recipe} {protocol}"
                row = {"dataset": dataset, "budget": budget, "recipe": recipe, "init": init}
                row |= {"protocol": protocol, **_row(values, rand, own, strongest)}
                row["steps"] = steps.get((budget, init, protocol), "")
                row["random_steps"] = steps.get((budget, RANDOM, protocol), "")
                key = (budget, init, protocol)
                if recipe != first and key in tables[first].index:
                    d, sd, _, _ = _paired(values, tables[first].loc[key])
                    row["minus_first_recipe"], row["minus_first_sd"] = d, sd
                rows.append(row)
    return rows


COLUMNS = [
    "dataset",
    "budget",
    "recipe",
    "init",
    "protocol",
    "seeds",
    "pretrained",
    "random",
    "strongest_random",
    "minus_strongest_random",
    "paired_sd",
    "ci95",
    "over_2sd",
    "steps",
    "random_steps",
    "minus_first_recipe",
    "minus_first_sd",
]


def _named(given: list[list[str]] | None, default: str, option: str) -> dict[str, list[str]]:
    """``--recipe``/``--pretrained`` lists as {name: overrides} (``default`` when none given)."""
    named = {r[0]: r[1:] for r in given or [[default]]}
    if len(named) != len(given or [[default]]):
        raise SystemExit(f"error: two {option} with the same name")
    return named


def add_summarise_only(parser: argparse.ArgumentParser) -> None:
    """``--summarise-only``: record a stopped call's evaluation folders as they stand."""
    parser.add_argument(
        "--summarise-only",
        action="store_true",
        help="record what the evaluation folders hold now, without making anything (for a call "
        "stopped part-way: a budget enters once every random row has every seed; each row gives "
        "its own number of seeds)",
    )


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
    parser.add_argument(
        "--pretrained",
        nargs="+",
        action="append",
        metavar="NAME [KEY=VALUE",
        help="a pretraining run to evaluate: a name, then overrides of the pretrain config",
    )
    parser.add_argument("--pretrain", nargs="*", default=[], help="key=value pretrain overrides")
    add_summarise_only(parser)
    add_common_args(parser)
    args = parser.parse_args()
    recipes = _named(args.recipe, "default", "--recipe")
    pretrained = _named(args.pretrained, PRETRAINED, "--pretrained")
    if RANDOM in pretrained:  # an init name: the random initialisation's is taken
        raise SystemExit(f"error: --pretrained {RANDOM} is the random initialisation's name")
    quick: dict[str, list[str]] = {}
    if args.quick:  # two steps of a tiny network, linear probes at two seeds
        args.pretrain = [*QUICK_PRETRAIN["adrenalmnist3d"], *args.pretrain]
        args.datasets = ["adrenalmnist3d"]
        quick = {"adrenalmnist3d": [*QUICK_EVALUATE["adrenalmnist3d"], "budgets.seeds=[0,1]"]}
    work, seconds = Path(args.work), {}

    def one(dataset: str) -> list[dict]:
        common = data_overrides(dataset, Path(args.data), work)
        runs = {}
        for name, overrides in pretrained.items():
            start = time.time()
            extra = [*args.pretrain, *overrides]
            runs[name] = pretrained_run(dataset, common, work, extra, not args.summarise_only)
            seconds[f"{dataset} pretrain {name}"] = round(time.time() - start)
        folders = {}
        for name, overrides in recipes.items():
            start = time.time()
            extra = [*quick.get(dataset, []), *overrides]
            folders[name] = evaluate_recipe(
                dataset, common, work, runs, (name, extra), args.summarise_only
            )
            seconds[f"{dataset} {name}"] = round(time.time() - start)
        return summarise(dataset, folders)

    with Table("proxy", torch.device("cpu"), COLUMNS, args.fail) as table:
        table.extra = {
            "recipes": recipes,
            "pretrained": pretrained,
            "pretrain_overrides": args.pretrain,
            "seconds": seconds,
        }
        for dataset in args.datasets:
            table.measure_rows({"dataset": dataset}, lambda d=dataset: one(d))


if __name__ == "__main__":
    np.seterr(invalid="ignore")
    main()
