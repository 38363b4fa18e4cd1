"""Building the preprocessed cache in one process and in several (issue 23): images/s, the speed-up
and peak memory.

    python benchmarks/bench_preprocess.py --data ../shared/data --work /tmp/bench-pre --workers 1 2

Archives: MedNIST (58,954 64x64 JPEGs: extracted and indexed into ``--work`` once, without the
index's pixel check, so its 94 blank images fail in the cache build and are counted in
``failed``) and the real DICOM files of ``readers/dicom`` (their 2D rows: radiographs of up to
1955 x 1841, JPEG 2000, MR and CT slices). Each (archive, processes) builds the cache from
scratch in a fresh child process, timed from the call to the finished cache file; the child
reports its own peak resident memory (the memory-mapped array it writes counts) and that of its
largest pool worker (its pages shared with the parent at the fork count too: an upper bound).
``--size`` (default 64) is the cache's image size. ``--quick``: 8 small DICOM slices only, for
the test suite.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import torch
from _common import Table, add_common_args

from medcontrast.archive.index import build_index, write_index


def _manifest(archive: str, data: Path, work: Path) -> Path:
    """The archive's manifest in ``work``, made once (MedNIST extracted first)."""
    out = work / f"{archive}.csv"
    if out.exists():
        return out
    if archive == "mednist":
        root = work / "mednist"
        if not (root / "resized").exists():
            with tarfile.open(data / "mednist" / "MedNIST_resized.tar.gz") as tar:
                tar.extractall(root, filter="data")
        root = root / "resized"
    else:
        root = data / "readers" / "dicom"
    index = build_index(root, verify=False, workers=2, progress=False)
    write_index(index, out, root)
    return out


def build_once(manifest: str, workers: int, cache_dir: str, size: int, limit: int) -> dict:
    """One cache build (in the child process): figures of the build and of this process."""
    from medcontrast.data.cache import build_cache
    from medcontrast.data.manifest import read_manifest
    from medcontrast.data.preprocessing import PreprocessSpec
    from medcontrast.data.selection import select_rows

    m = read_manifest(manifest)
    rows = select_rows(m, ndim=2)
    if limit:  # --quick: small slices (CT_small, MR_small*): no JPEG 2000 decoder to start
        names = [m.source_paths(row)[0].name for _, row in rows.iterrows()]  # real names
        rows = rows[["_small" in name for name in names]].head(limit)
    spec = PreprocessSpec(ndim=2, size=(size, size))
    start = time.perf_counter()
    cache = build_cache(m, rows, spec, cache_dir, workers=workers, progress=False)
    seconds = time.perf_counter() - start
    kib = 1024  # ru_maxrss is in KiB on Linux
    return {
        "images": len(rows),
        "failed": len(cache.failed),
        "seconds": seconds,
        "images_per_s": len(rows) / seconds,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib / 2**20,
        "worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kib / 2**20,
    }


def one_build(manifest: Path, workers: int, cache_dir: Path, size: int, limit: int) -> dict:
    shutil.rmtree(cache_dir, ignore_errors=True)
    args = [str(manifest), str(workers), str(cache_dir), str(size), str(limit)]
    proc = subprocess.run(
        [sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode:
        raise RuntimeError(proc.stderr.strip().splitlines()[-1])
    shutil.rmtree(cache_dir, ignore_errors=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        manifest, workers, cache_dir, size, limit = sys.argv[2:]
        print(json.dumps(build_once(manifest, int(workers), cache_dir, int(size), int(limit))))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--work", default="/tmp/bench-preprocess")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--archives", nargs="+", default=None, help="mednist, readers-dicom")
    add_common_args(parser)
    args = parser.parse_args()
    # --quick: 8 small DICOM slices (a few seconds), no MedNIST extraction
    archives = args.archives or (["readers-dicom"] if args.quick else ["mednist", "readers-dicom"])
    data, work = Path(args.data).resolve(), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    columns = ["archive", "workers", "images", "failed", "seconds", "images_per_s", "speedup"]
    columns += ["peak_rss_mb", "worker_peak_rss_mb"]
    with Table("preprocess", torch.device("cpu"), columns, args.fail) as table:
        table.extra = {"size": args.size}
        for archive in archives:
            manifest = _manifest(archive, data, work)
            first = None
            for workers in args.workers:
                row = table.measure(
                    {"archive": archive, "workers": workers},
                    lambda m=manifest, w=workers: one_build(
                        m, w, work / "cache", args.size, 8 if args.quick else 0
                    ),
                )
                if row and first:
                    row["speedup"] = row["images_per_s"] / first["images_per_s"]
                first = first or row


if __name__ == "__main__":
    main()
