"""The demo's premise: does pretraining on more unlabelled patients than labelled ones pay?

    python benchmarks/bench_demo_pool.py --pools 300 1200
    python benchmarks/bench_demo_pool.py --pools 300 1200 --evaluate protocols=[linear,finetune]

The demo writes 300 phantom patients, of whom about 40% carry labels, and pretrains SimCLR on
every train+val radiograph, labelled or not. A hospital's archive holds far more unlabelled
patients than that. This benchmark writes one phantom archive per pool size N in ``--pools``
(each patient is a pure function of the seed and its index, so the first 300 patients of every
archive are the demo's, pixel for pixel, and a salt shared by all indexes gives them the same
splits), pretrains the demo's SimCLR on each archive's train+val radiographs for the same number
of steps (the demo's first pool decides it: the first-run time fixes the steps, not the epochs),
and evaluates every encoder on the demo's own labelled set (the first pool's manifest) in one
folder beside one random initialisation, with the demo's evaluation (``--evaluate`` overrides).

Records per pool the seconds to write and index the archive and to pretrain (what a larger pool
costs a first run), and per budget, init and protocol the figures of ``bench_proxy``: the mean
over seeds and the paired difference from the strongest random initialisation with its 95%
t-interval. The phantoms are synthetic: figures from them say what the demo shows, not what real
images would.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from _common import Table, add_common_args
from bench_proxy import COLUMNS, add_summarise_only, inits_override, summarise

from medcontrast.archive.index import build_index, write_index
from medcontrast.config import EvaluateConfig, PretrainConfig, load_config
from medcontrast.evaluate import evaluate
from medcontrast.phantoms.writer import make_phantoms
from medcontrast.pretrain import pretrain

CONFIG = "phantoms_2d"  # the demo's shipped configs
QUICK_PRETRAIN = ["data.size=[16,16]", "train.batch_size=8", "train.epochs=1"]
QUICK_EVALUATE = [
    "data.size=[16,16]",
    "budgets.shots=[2]",
    "budgets.fractions=[]",
    "budgets.seeds=[0,1]",
    "protocols=[linear]",
    "embedding_plot=false",
]


def phantom_manifest(work: Path, patients: int, seed: int) -> tuple[Path, float]:
    """The manifest of a ``patients``-patient phantom archive (written and indexed once) and
    the seconds that took (0 when it was already there)."""
    folder = work / f"phantoms-{patients}"
    manifest = folder / "manifest.csv"
    if manifest.exists():
        return manifest, 0.0
    start = time.time()
    archive = folder / "archive"
    if archive.exists():  # a write cut short: the writer refuses a non-empty folder
        raise SystemExit(f"error: {archive} is half written; remove {folder} and rerun")
    make_phantoms(archive, patients=patients, seed=seed, progress=False)
    result = build_index(archive, labels=archive / "labels.csv", workers=2, progress=False)
    write_index(result, manifest, archive)
    return manifest, time.time() - start


def pool_run(work: Path, patients: int, manifest: Path, overrides: list[str]) -> Path:
    """The demo's SimCLR pretrained on ``manifest`` (made once, then reused)."""
    cfg = load_config(
        PretrainConfig,
        CONFIG,
        [
            f"data.manifest={manifest}",
            f"data.cache_dir={work / 'cache'}",
            f"out_dir={work / 'runs'}",
            f"name=simclr-pool{patients}",
            *overrides,
        ],
    )
    run = Path(cfg.out_dir) / cfg.name
    if not (run / "encoder.pth").exists():
        pretrain(cfg, resume=(run / "checkpoints").exists(), progress=False)
    return run


def pool_images(manifest: Path) -> int:
    """The radiographs the demo's pretraining reads from ``manifest`` (train and val)."""
    data = load_config(PretrainConfig, CONFIG).data
    rows = pd.read_csv(manifest)
    keep = (rows["status"] == "ok") & rows["modality"].isin(data.modalities)
    return int((keep & rows["split"].isin(data.splits)).sum())


def same_schedule(run: Path, images: int, first_images: int) -> list[str]:
    """Overrides that give a pool of ``images`` the first pool's run ``run`` schedule: its
    number of steps, and its warm-up in steps (``warmup_epochs`` counts epochs of the pool)."""
    train = yaml.safe_load((run / "config.yaml").read_text())["train"]
    warmup = train["warmup_epochs"] * first_images / images
    return [f"train.max_steps={train['max_steps']}", f"train.warmup_epochs={warmup:.4g}"]


def folder_name(inits: list[str]) -> str:
    """The evaluation folder of the pools' encoders (named after their inits)."""
    return "pools-" + "-".join(inits)


def evaluate_pools(work: Path, manifest: Path, runs: dict[str, Path], overrides: list[str]) -> Path:
    """Every pool's encoder and one random initialisation on the demo's labelled set."""
    encoder = load_config(PretrainConfig, CONFIG).model.encoder
    cfg = load_config(
        EvaluateConfig,
        CONFIG,
        [
            f"data.manifest={manifest}",
            f"data.cache_dir={work / 'cache'}",
            f"out_dir={work / 'eval'}",
            f"name={folder_name(list(runs))}",
            inits_override(runs, encoder),
            *overrides,
        ],
    )
    return evaluate(cfg, progress=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/medcontrast-demo-pool")
    parser.add_argument("--pools", nargs="+", type=int, default=[300, 1200])
    parser.add_argument("--seed", type=int, default=0, help="the phantom archive's seed")
    parser.add_argument("--pretrain", nargs="*", default=[], help="key=value pretrain overrides")
    parser.add_argument("--evaluate", nargs="*", default=[], help="key=value evaluate overrides")
    add_summarise_only(parser)
    add_common_args(parser)
    args = parser.parse_args()
    if args.quick:  # tiny archives, one epoch of tiny images, linear probes
        args.pools = [20, 40]
        args.pretrain = [*QUICK_PRETRAIN, *args.pretrain]
        args.evaluate = [*QUICK_EVALUATE, *args.evaluate]
    work, seconds = Path(args.work), {}

    def measure() -> list[dict]:
        if args.summarise_only:
            folder = work / "eval" / folder_name([f"pool{n}" for n in args.pools])
            return summarise("phantoms", {"demo": folder})
        runs, images, manifests, first = {}, {}, {}, args.pools[0]
        for patients in args.pools:
            manifest, took = phantom_manifest(work, patients, args.seed)
            manifests[patients], seconds[f"archive {patients}"] = manifest, round(took)
            images[patients] = pool_images(manifest)
            fixed = (
                []
                if not runs
                else same_schedule(runs[f"pool{first}"], images[patients], images[first])
            )
            start = time.time()
            run = pool_run(work, patients, manifest, [*args.pretrain, *fixed])
            seconds[f"pretrain {patients}"] = round(time.time() - start)
            runs[f"pool{patients}"] = run
        print(f"pools of {images} radiographs pretrained; evaluating")
        folder = evaluate_pools(work, manifests[first], runs, args.evaluate)
        return summarise("phantoms", {"demo": folder})

    with Table("demo_pool", torch.device("cpu"), COLUMNS, args.fail) as table:
        table.extra = {"pools": args.pools, "seconds": seconds, "pretrain_overrides": args.pretrain}
        table.extra["evaluate_overrides"] = args.evaluate
        table.measure_rows({"dataset": "phantoms"}, measure)


if __name__ == "__main__":
    np.seterr(invalid="ignore")
    main()
