"""The archive benchmark's data: one folder of MedMNIST-style arrays, and the manifests cut from it.

    python benchmarks/archive_pool.py --data ../shared/data --out /tmp/medcontrast-archive/pool

Writes ``mednist.npz`` (all 58,954 MedNIST images resized to ``--size`` px, MedMNIST layout:
``<split>_images`` uint8 (N, S, S), ``<split>_labels`` (N, 1), a seeded per-class 70/15/15
split, since MedNIST has none of its own) beside a copy of ``pneumoniamnist.npz``. The folder is
small enough to carry to a GPU machine (about 40 MB at 28 px, see ``prepare_gpu.sh``) and holds
everything the benchmark reads: the manifests below are made from it on whichever machine runs.

Manifests (one index of the folder, then row subsets sharing its root):

* ``pool.csv``: every MedNIST image and the PneumoniaMNIST training images, labels hidden: the
  archive an encoder is pretrained on (it holds MedNIST's test images, unlabeled, as a hospital
  archive would; the evaluation report counts them);
* ``pneumoniamnist.csv``: the PneumoniaMNIST task (official splits);
* ``mednist.csv``: the MedNIST task; ``task_subset`` N keeps N images per class (70/15/15 of N from
  the same splits, seeded), so that a CPU proxy predicts a smaller validation and test split.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from medcontrast.archive.index import build_index, write_index
from medcontrast.data.manifest import read_manifest, sidecar_path, write_manifest

ROOT = Path(__file__).resolve().parents[1]
MEDNIST_TAR = "mednist/MedNIST_resized.tar.gz"
PNEUMONIA = "medmnist/pneumoniamnist.npz"
SPLIT = {"train": 0.70, "val": 0.15, "test": 0.15}
SEED = 0


def _read(args: tuple[str, int]) -> np.ndarray:
    path, size = args
    with Image.open(path) as image:
        # BOX: each output pixel the mean of the input pixels it covers (no aliasing at 64->28)
        return np.asarray(image.convert("L").resize((size, size), Image.Resampling.BOX))


def mednist_arrays(
    folder: Path, size: int, workers: int, per_class: int = 0
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(N, size, size) uint8 images, (N,) class codes and the class names (sorted), read from
    an extracted MedNIST ``resized/<Class>/<id>.jpeg`` tree in a fixed order; ``per_class`` > 0
    keeps the first that many of each class (a quick check)."""
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    files = [
        (str(f), c)
        for c, name in enumerate(classes)
        for f in sorted((folder / name).glob("*"))[: per_class or None]
    ]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        images = list(pool.map(_read, [(f, size) for f, _ in files], chunksize=256))
    return np.stack(images), np.array([c for _, c in files], dtype=np.uint8), classes


def split_per_class(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Indices of each split: every class shuffled (seed 0) and cut 70/15/15."""
    rng = np.random.default_rng(SEED)
    out: dict[str, list[np.ndarray]] = {s: [] for s in SPLIT}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        cuts = np.cumsum([round(f * len(idx)) for f in SPLIT.values()])[:-1]
        for s, part in zip(SPLIT, np.split(idx, cuts), strict=True):
            out[s].append(np.sort(part))
    return {s: np.concatenate(v) for s, v in out.items()}


def write_arrays(data: Path, out: Path, size: int, workers: int, per_class: int = 0) -> None:
    """``mednist.npz`` and ``pneumoniamnist.npz`` in ``out`` (made once)."""
    out.mkdir(parents=True, exist_ok=True)
    target = out / "mednist.npz"
    if not target.exists():
        extracted = out.parent / "mednist-extracted"
        subprocess.run(
            [
                sys.executable,
                str(ROOT / "scripts" / "extract_mednist.py"),
                str(data / MEDNIST_TAR),
                str(extracted),
            ],
            check=True,
        )
        images, labels, classes = mednist_arrays(extracted / "resized", size, workers, per_class)
        parts = split_per_class(labels)
        arrays = {}
        for s, idx in parts.items():
            arrays[f"{s}_images"], arrays[f"{s}_labels"] = images[idx], labels[idx, None]
        tmp = out / "mednist.tmp.npz"
        np.savez_compressed(tmp, **arrays)
        tmp.replace(target)
        (out.parent / "mednist_classes.json").write_text(json.dumps(classes))
    if not (out / "pneumoniamnist.npz").exists():
        shutil.copyfile(data / PNEUMONIA, out / "pneumoniamnist.npz")


def _write_subset(table: pd.DataFrame, meta: dict, out: Path, rows, hide_labels: bool = False):
    """Write ``table[rows]`` (same root, the index's sidecar) to ``out``; labels blanked when
    ``hide_labels``."""
    part = table[rows].copy()
    if hide_labels:
        part["label"] = ""  # the archive is unlabeled
    write_manifest(part, out, meta)


def write_manifests(pool: Path, work: Path, task_subset: int = 0) -> dict[str, Path]:
    """Index ``pool`` (once) and cut the pool and the two task manifests from it."""
    every = work / "archive-all.csv"
    if not every.exists():
        write_index(build_index(pool, salt_file=work / "salt", progress=False), every, pool)
    table = read_manifest(every).table
    meta = json.loads(sidecar_path(every).read_text())
    meta.pop("sha256", None)  # each subset's own is written with it
    mednist = (table["source"] == "mednist.npz").to_numpy()
    usable = mednist & (table["status"] == "ok").to_numpy()  # MedNIST holds 94 blank images
    pneumonia = (table["source"] == "pneumoniamnist.npz").to_numpy()
    out = {"pool": work / "pool.csv", "pneumoniamnist": work / "pneumoniamnist.csv"}
    out["mednist"] = work / (f"mednist-{task_subset}.csv" if task_subset else "mednist.csv")
    if not out["pool"].exists():
        train = (table["split"] == "train").to_numpy()
        _write_subset(table, meta, out["pool"], mednist | (pneumonia & train), hide_labels=True)
    if not out["pneumoniamnist"].exists():
        _write_subset(table, meta, out["pneumoniamnist"], pneumonia)
    if not out["mednist"].exists():
        keep = mednist.copy()
        if task_subset:  # per split and class, the split's share of task_subset, seeded
            keep[:] = False
            rng = np.random.default_rng(SEED)
            for (split, _), group in table[usable].groupby(["split", "label"]):
                n = round(task_subset * SPLIT[split])
                keep[rng.permutation(group.index.to_numpy())[:n]] = True
        _write_subset(table, meta, out["mednist"], keep)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--out", required=True, help="the folder of arrays (e.g. <work>/pool)")
    parser.add_argument("--size", type=int, default=28)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    write_arrays(Path(args.data), Path(args.out), args.size, args.workers)
    print(
        f"wrote {args.out}: "
        + ", ".join(
            f"{p.name} {p.stat().st_size / 2**20:.1f} MiB"
            for p in sorted(Path(args.out).glob("*.npz"))
        )
    )


if __name__ == "__main__":
    main()
