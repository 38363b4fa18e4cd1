"""Label efficiency on real data: pretrain with labels hidden, then few-shot evaluation.

    python benchmarks/bench_label_efficiency.py pneumoniamnist --data ../shared/data --work /tmp/le
    python benchmarks/bench_label_efficiency.py adrenalmnist3d --data ../shared/data --work /tmp/le
    python benchmarks/bench_label_efficiency.py mednist --data ../shared/data --work /tmp/le

Uses the shipped configs pretrain/<dataset>.yaml and evaluate/<dataset>.yaml; any ``key=value``
after ``--pretrain`` / ``--evaluate`` overrides them (e.g. fewer epochs on a CPU). Random
initialisation is trained with the same augmentation, schedule and early stopping (the fine-tune
protocol), so it is a strong baseline. Prints the summary beside the published fully supervised
MedMNIST v2 results and the targets of issue 5.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import TypeVar

import pandas as pd
import torch
from _common import Table, add_common_args

from medcontrast.archive.index import build_index, write_index
from medcontrast.config import EvaluateConfig, PretrainConfig, load_config
from medcontrast.evaluate import evaluate
from medcontrast.evaluation.report import headline_text
from medcontrast.evaluation.results_file import read_results
from medcontrast.pretrain import pretrain

ROOT = Path(__file__).resolve().parents[1]
C = TypeVar("C")
SOURCES = {
    "pneumoniamnist": ("medmnist/pneumoniamnist.npz", False),
    "adrenalmnist3d": ("medmnist/adrenalmnist3d.npz", False),
    "mednist": ("mednist/MedNIST_resized.tar.gz", True),
}
# MedMNIST v2 (Yang et al., Scientific Data 2023), all training labels, no augmentation: AUC, ACC.
PUBLISHED = {
    "pneumoniamnist": {
        "ResNet-18 (28)": (0.944, 0.854),
        "ResNet-50 (224)": (0.962, 0.884),
        "best (AutoML)": (0.991, 0.946),
    },
    "adrenalmnist3d": {"ResNet-18 + 3D": (0.827, 0.721), "ResNet-50 + 3D": (0.828, 0.745)},
}
SUMMARY_COLUMNS = [
    "init",
    "protocol",
    "budget",
    "labels_used",
    "metric",
    "mean",
    "std",
    "ci_low",
    "ci_high",
    "diff_vs_random",
    "diff_std",
    "steps",
]
# --quick: a tiny network on 16 px for two steps and one linear probe (a CPU check that it runs).
_TINY = ["train.max_steps=2", "train.batch_size=8", "train.num_workers=0"]
QUICK_PRETRAIN = {
    "pneumoniamnist": ["data.size=[16,16]", "model.encoder=timm:resnet10t", *_TINY],
    "mednist": ["data.size=[16,16]", "model.encoder=timm:resnet10t", *_TINY],
    "adrenalmnist3d": [
        "data.size=[16,16,16]",
        "model.encoder=monai:resnet10",
        "model.stem_stride=2",
        *_TINY,
    ],
}
QUICK_EVALUATE = {
    d: [
        f"data.size={[16] * (3 if d == 'adrenalmnist3d' else 2)}",
        "budgets.seeds=[0]",
        "budgets.fractions=[0.1]",
        "protocols=[linear]",
        "embedding_plot=false",
    ]
    for d in SOURCES
}
TARGETS = {
    "pneumoniamnist": {"1%": 0.95, "10%": 0.96},
    "adrenalmnist3d": {"10%": 0.90, "100%": 0.92},
}


def manifest_for(dataset: str, data: Path, work: Path) -> Path:
    rel, is_tar = SOURCES[dataset]
    source = data / rel
    out = work / f"{dataset}.csv"
    if out.exists():
        return out
    if is_tar:
        folder = work / "mednist"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "extract_mednist.py"),
                str(source),
                str(folder),
            ],
            check=True,
        )
        result = build_index(
            folder / "resized",
            labels_from_folders=True,
            workers=8,
            progress=False,
            salt_file=work / "salt",
        )
        write_index(result, out, folder / "resized")
    else:
        result = build_index(source, salt_file=work / "salt", progress=False)
        write_index(result, out, source)
    return out


def data_overrides(dataset: str, data: Path, work: Path) -> list[str]:
    """Index ``dataset`` into ``work`` (once); the overrides that point a config at that
    manifest and at a cache beside it."""
    work.mkdir(parents=True, exist_ok=True)
    manifest = manifest_for(dataset, data, work)
    return [f"data.manifest={manifest}", f"data.cache_dir={work / 'cache'}"]


def shipped_config(cls: type[C], dataset: str, overrides: list[str]) -> C:
    """The shipped config ``<dataset>`` of ``cls`` (pretrain or evaluate) with ``overrides``."""
    return load_config(cls, dataset, overrides)


def finetune_steps(results: pd.DataFrame) -> pd.Series:
    """Each fine-tune's "best/last" step (from its note), indexed by (budget, init, protocol),
    the seeds joined by spaces: where validation peaked and where the run was stopped."""
    r = results[(results["metric"] == "auroc") & (results["protocol"] == "finetune")]
    found = r["note"].fillna("").str.extract(r"best step (\d+) of (\d+)")
    r = r.assign(steps=found[0] + "/" + found[1]).dropna(subset=["steps"]).sort_values("seed")
    return r.groupby(["budget", "init", "protocol"])["steps"].agg(" ".join)


def label_efficiency(args: argparse.Namespace, extra: dict) -> list[dict]:
    """Pretrain (once per work folder), evaluate, print; the summary rows (``extra`` filled)."""
    work = Path(args.work)
    common = data_overrides(args.dataset, Path(args.data), work)
    # The run is named after its method (the shipped configs' pneumoniamnist-simclr, ...), so a
    # work folder holds one run per method: --pretrain method.name=vicreg trains its own.
    overrides = [*common, f"out_dir={work / 'runs'}", *args.pretrain]
    config = args.config or args.dataset  # e.g. adrenalmnist3d_mae: the method's own config
    pre = shipped_config(PretrainConfig, config, overrides)
    if not any(o.startswith("name=") for o in args.pretrain):
        name = f"name={args.dataset}-{pre.method.name}"
        pre = shipped_config(PretrainConfig, config, [*overrides, name])
    run = Path(pre.out_dir) / pre.name
    if not (run / "encoder.pth").exists():
        pretrain(pre, progress=False)
    ev = shipped_config(
        EvaluateConfig,
        args.dataset,
        [
            *common,
            f"out_dir={work / 'eval'}",
            f"inits=[{{name: {pre.method.name}, source: '{run}'}}, {{name: random, source: random, encoder: '{pre.model.encoder}'}}]",
            *args.evaluate,
        ],
    )
    folder = evaluate(ev, progress=False)
    summary = pd.read_csv(folder / "summary.csv")
    summary = summary[summary["metric"].isin(["auroc", "accuracy"])]
    print(headline_text(folder))
    for name, (auc, acc) in PUBLISHED.get(args.dataset, {}).items():
        print(f"published, fully supervised, all labels: {name}: AUROC {auc}, ACC {acc}")
    metrics = pd.read_csv(run / "metrics.csv")
    extra["report"] = str(folder / "report.md")
    extra["headline"] = headline_text(folder)
    extra["pretrain"] = {
        "epochs": pre.train.epochs,
        "steps": int(metrics["step"].max()),
        "encoder": pre.model.encoder,
        "batch": pre.train.batch_size,
        "seconds": float(metrics["time"].max() - metrics["time"].min()),
        "overrides": args.pretrain,
    }
    # each fine-tune's best and last step per seed: did the random baseline train to its best?
    steps = finetune_steps(read_results(folder / "results.csv"))
    keys = zip(summary["budget"], summary["init"], summary["protocol"], strict=True)
    summary["steps"] = [steps.get(k, "") for k in keys]
    return summary[SUMMARY_COLUMNS].to_dict("records")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dataset", choices=list(SOURCES))
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--work", default="/tmp/medcontrast-label-efficiency")
    parser.add_argument(
        "--config", default="", help="shipped pretrain config (default: the dataset's own)"
    )
    parser.add_argument("--pretrain", nargs="*", default=[], help="key=value overrides")
    parser.add_argument("--evaluate", nargs="*", default=[], help="key=value overrides")
    add_common_args(parser)
    args = parser.parse_args()
    if args.quick:  # the user's overrides still come last
        args.pretrain = [*QUICK_PRETRAIN[args.dataset], *args.pretrain]
        args.evaluate = [*QUICK_EVALUATE[args.dataset], *args.evaluate]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with Table("label_efficiency", device, SUMMARY_COLUMNS, args.fail) as table:
        table.extra = {
            "dataset": args.dataset,
            "evaluate_overrides": args.evaluate,
            "published": PUBLISHED.get(args.dataset, {}),
            "targets": TARGETS.get(args.dataset, {}),
        }
        table.measure_rows({"dataset": args.dataset}, lambda: label_efficiency(args, table.extra))


if __name__ == "__main__":
    main()
