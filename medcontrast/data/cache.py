"""A cache of preprocessed samples: one (N, C, *size) float16 array per manifest subset.

Why our own and not MONAI's CacheDataset/PersistentDataset: one contiguous, memory-mapped array
lets the batched augmentation path gather a whole batch with one indexing operation, survives
restarts (disk), costs one file instead of one per sample, and lets a sample that fails to load be
skipped and reported instead of stopping the run.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from medcontrast._version import __version__
from medcontrast.data.loading import NpzStore, SampleLoadError, check_pixels, load_sample
from medcontrast.data.manifest import Manifest, read_manifest
from medcontrast.data.partial_cache import PartialCache, build_lock, reserve_space
from medcontrast.data.pool import ordered_map, pool_size
from medcontrast.data.preprocessing import PreprocessSettings, PreprocessSpec, preprocess
from medcontrast.data.private_paths import scrub
from medcontrast.data.selection import select_rows
from medcontrast.errors import MedContrastError, first_line
from medcontrast.progress import progress_bar


@dataclass
class ImageCache:
    """Preprocessed samples and the manifest rows they came from (same order).

    Attributes:
        array: (N, C, *size) float16, a memory map or an in-memory array.
        rows: manifest rows of the N samples (index reset).
        failed: (sample_id, reason) of rows that could not be loaded; they are not in ``array``.
    """

    array: np.ndarray
    rows: pd.DataFrame
    failed: list[tuple[str, str]] = field(default_factory=list)
    path: Path | None = None

    def __len__(self) -> int:
        return len(self.rows)


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
    return Path(base) / "medcontrast"


def _hide_paths(manifest: Manifest, row: pd.Series, err: str) -> str:
    """A loader's message as the manifest would store it: no archive path, no folder name
    (the run folder's data.json and the evaluation's report carry these messages)."""
    try:
        paths = manifest.source_paths(row)
    except (OSError, MedContrastError):  # its paths were never known: none can show
        return err
    sources = str(row["source"]).split("|")
    if len(sources) != len(paths):  # a private path: only the file names may show
        sources = [p.name for p in paths]
    return scrub(err, zip(paths, sources, strict=True), manifest.root)


# Rows per worker task: a file's job is cheap to send, so a few per task; the MedMNIST rows of
# a shard go in one task, which reads their shared .npz once.
FILE_TASK_ROWS = 8

# (row, format, source paths, member, name for messages, modality)
Job = tuple[int, str, list[Path], str, str, str]
# The format of a job whose source paths could not be looked up; its name holds the reason.
UNRESOLVED = "unresolved"
# (shard, is this its shard's last task, the rows' jobs, spec, the half-built array's file)
Task = tuple[int, bool, list[Job], PreprocessSpec, str]


def _work(task: Task) -> tuple[int, bool, int, dict[int, str]]:
    """Preprocess a task's rows and write each straight into the half-built array's file (its
    own memory map: no image travels back through the pool's pipes, so the main process has
    almost nothing to do). Returns the shard, whether it was the shard's last task, the number
    of rows done and the reason each failed row failed."""
    shard, last, jobs, spec, target = task
    out = np.load(target, mmap_mode="r+")
    store = NpzStore()  # MedMNIST rows of one task share their file: loaded once
    failed: dict[int, str] = {}
    for row, fmt, paths, member, name, modality in jobs:
        if fmt == UNRESOLVED:  # its files could not be named: ``name`` says why
            failed[row] = name
            continue
        try:
            loaded = load_sample(fmt, paths, member, store)
            check_pixels(loaded.array, name)
            out[row] = preprocess(loaded, spec, modality).astype(np.float16)
        except SampleLoadError as exc:
            failed[row] = str(exc)
        except Exception as exc:  # one bad sample in a million must not stop the run
            failed[row] = f"{name}: {type(exc).__name__}: {first_line(exc)}"
    del out  # unmapped; the shard's record waits for the file's sync (PartialCache.complete)
    return shard, last, len(jobs), failed


def _tasks(
    manifest: Manifest,
    rows: pd.DataFrame,
    spec: PreprocessSpec,
    partial: PartialCache,
    per_task: int = FILE_TASK_ROWS,
) -> Iterator[Task]:
    """The tasks of the shards still to do, in order, ``per_task`` files each; made as the pool
    asks for them (an archive of a million rows never holds all its jobs at once)."""
    # plain lists: pandas' per-row access costs ~50 us, which on 2 cores the main process would
    # take from the workers
    fmt, member, source, modality = (
        rows[c].astype(str).tolist() for c in ("format", "member", "source", "modality")
    )

    def job(i: int) -> Job:
        name = Path(source[i].split("|")[0]).name
        try:
            paths = manifest.source_paths({"source": source[i]})
        except (OSError, MedContrastError) as exc:  # e.g. a folder pseudonym the map lacks
            return i, UNRESOLVED, [], "", f"{name}: {first_line(exc)}", ""
        if fmt[i] == "npz":
            # MedMNIST images are 8-bit exports, never Hounsfield units: no CT window, whatever
            # modality the row names
            return i, fmt[i], paths, member[i], f"{name}[{member[i]}]", ""
        return i, fmt[i], paths, member[i], name, modality[i]

    for shard, span in partial.shards():
        npz = [i for i in span if fmt[i] == "npz"]
        files = [i for i in span if fmt[i] != "npz"]
        groups = ([npz] if npz else []) + [
            files[k : k + per_task] for k in range(0, len(files), per_task)
        ]
        for k, group in enumerate(groups):
            yield shard, k == len(groups) - 1, [job(i) for i in group], spec, str(partial.npy)


def _fill(
    manifest: Manifest,
    rows: pd.DataFrame,
    spec: PreprocessSpec,
    partial: PartialCache,
    workers: int,
    progress: bool,
) -> None:
    """Preprocess the rows of the shards not yet complete into ``partial`` in ``workers``
    processes, recording each shard once all its rows are on disk. Rows land at their manifest
    position whatever order the processes finish in."""
    bar = progress_bar(
        total=len(rows),
        initial=partial.rows_done(),
        desc="preprocess",
        unit="img",
        disable=not progress,
        file=sys.stderr,
    )
    failed: dict[int, str] = {}
    # A small archive gets smaller tasks: with a few large files (2k x 2k JPEG 2000 radiographs
    # take seconds each) tasks of 8 leave one process working while the others wait.
    per_task = max(1, min(FILE_TASK_ROWS, len(rows) // (8 * workers)))
    tasks = _tasks(manifest, rows, spec, partial, per_task)
    for shard, last, done, task_failed in ordered_map(_work, tasks, workers):
        failed.update(task_failed)
        bar.update(done)
        if last:
            partial.complete(shard, failed)
            failed = {}
    bar.close()


def _open_built(
    arr_path: Path, meta_path: Path, rows: pd.DataFrame, spec: PreprocessSpec, in_memory: bool
) -> ImageCache | None:
    """The finished cache of these rows, or None when there is none yet."""
    if not (arr_path.exists() and meta_path.exists()):
        return None
    meta = json.loads(meta_path.read_text())
    kept = rows[rows["sample_id"].isin(set(meta["kept"]))].reset_index(drop=True)
    array = np.load(arr_path, mmap_mode="r")
    _check_cached(arr_path, array, meta, spec, len(kept))
    failed = [tuple(x) for x in meta["failed"]]
    return ImageCache(np.asarray(array) if in_memory else array, kept, failed, arr_path)


def build_cache(
    manifest: Manifest,
    rows: pd.DataFrame,
    spec: PreprocessSpec,
    cache_dir: str | Path | None = None,
    in_memory: bool = False,
    workers: int | str = "auto",
    progress: bool = True,
) -> ImageCache:
    """Preprocess ``rows`` once and keep the result on disk, keyed by content.

    The key hashes the sample ids, their sources, the preprocessing spec and the medcontrast
    version, so a changed manifest or setting makes a new cache instead of reusing a stale one.
    ``workers``: processes (:func:`~medcontrast.data.pool.pool_size`; "auto": one per core). A
    build that was stopped resumes from its last complete shard (:mod:`partial_cache`).
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _cache_key(manifest, rows, spec)
    arr_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    built = _open_built(arr_path, meta_path, rows, spec, in_memory)
    if built is not None:
        return built
    with build_lock(cache_dir / f"{key}.lock", progress):
        # another process may have finished it while this one waited for the lock
        built = _open_built(arr_path, meta_path, rows, spec, in_memory)
        if built is not None:
            return built
        rows = rows.reset_index(drop=True)
        shape = (len(rows), 1, *spec.size)
        partial = PartialCache.open(cache_dir / key, spec.key(), shape, progress)
        processes = pool_size(workers)
        if progress:
            print(
                f"preprocess: {len(rows)} samples into {arr_path.name} in {processes} "
                f"process{'es' if processes > 1 else ''} (data.workers={workers})",
                file=sys.stderr,
            )
        _fill(manifest, rows, spec, partial, processes, progress)
        _finish(manifest, rows, spec, partial, arr_path, meta_path)
    return _open_built(arr_path, meta_path, rows, spec, in_memory)


def _finish(
    manifest: Manifest,
    rows: pd.DataFrame,
    spec: PreprocessSpec,
    partial: PartialCache,
    arr_path: Path,
    meta_path: Path,
) -> None:
    """The complete array (without the rows that failed) and its metadata under their final
    names; the half-built files removed."""
    errors = partial.errors()
    good = np.array([not err for err in errors], dtype=bool)
    failed = [
        (rows.at[i, "sample_id"], _hide_paths(manifest, rows.iloc[i], err))
        for i, err in enumerate(errors)
        if err
    ]
    if good.all():
        partial.array.flush()
        os.replace(partial.npy, arr_path)
    else:
        # Compact shard by shard, so that the array's rows match the kept manifest rows
        # without holding the whole array in memory.
        tmp = arr_path.with_name(arr_path.name + ".tmp")
        compact = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.float16, shape=(int(good.sum()), *partial.array.shape[1:])
        )
        try:
            reserve_space(tmp)
        except MedContrastError:
            del compact
            tmp.unlink(missing_ok=True)  # the half-built cache stays, complete, for a rerun
            raise
        at, k = 0, partial.rows_per_shard
        for start in range(0, len(good), k):
            keep = np.flatnonzero(good[start : start + k]) + start
            compact[at : at + len(keep)] = partial.array[keep]
            at += len(keep)
        compact.flush()
        del compact
        os.replace(tmp, arr_path)
    kept = rows[good]
    meta = {"kept": kept["sample_id"].tolist(), "failed": failed, "spec": spec.key()}
    meta_tmp = meta_path.with_name(meta_path.name + ".tmp")
    meta_tmp.write_text(json.dumps(meta))
    os.replace(meta_tmp, meta_path)
    partial.remove()


def _check_cached(
    path: Path, array: np.ndarray, meta: dict, spec: PreprocessSpec, samples: int
) -> None:
    """Refuse a cache file that does not hold what its name promises (copied from elsewhere,
    cut short, built by another preprocessing) before anything is computed from it."""
    want = (samples, 1, *spec.size)
    if meta.get("spec", spec.key()) != spec.key() or array.shape != want:
        raise MedContrastError(
            f"cache {path} holds {array.shape} preprocessed as {meta.get('spec')}, but these "
            f"settings need {want} preprocessed as {spec.key()} (data.size, intensity, resize): "
            "delete the file (it is rebuilt) or set another data.cache_dir"
        )


def _cache_key(manifest: Manifest, rows: pd.DataFrame, spec: PreprocessSpec) -> str:
    """The cache file's name: version, preprocessing, archive root and the rows' sources."""
    ident = hashlib.sha256()
    ident.update(f"{__version__}|{spec.key()}|{manifest.root}".encode())
    for sid, src, member in zip(rows["sample_id"], rows["source"], rows["member"], strict=True):
        ident.update(f"{sid}|{src}|{member}\n".encode())
    return ident.hexdigest()[:24]


class CacheSettings(PreprocessSettings, Protocol):
    """What :func:`load_selection` reads (the config's ``data:`` section has it)."""

    manifest: str
    modalities: list[str]
    cache: str  # "disk" (memory-mapped) or "memory"
    cache_dir: str
    workers: int | str  # processes, or "auto": one per core
    max_samples: int  # 0 keeps all; otherwise a seeded subset


def load_selection(
    settings: CacheSettings,
    *,
    splits: list[str] | None,
    labeled: bool,
    seed: int = 0,
    progress: bool = True,
) -> tuple[ImageCache, str]:
    """manifest -> rows -> cache, as pretraining and evaluation both need it: the selected rows
    of ``settings.manifest`` (at most ``settings.max_samples`` of them, drawn with ``seed``),
    preprocessed and cached, and the manifest's digest."""
    if not settings.manifest:
        raise MedContrastError("data.manifest is not set (make one with `medcontrast index`)")
    manifest = read_manifest(settings.manifest)
    rows = select_rows(
        manifest,
        settings.ndim,
        settings.modalities,
        splits,
        labeled,
        settings.max_samples,
        seed,
    )
    cache = build_cache(
        manifest,
        rows,
        PreprocessSpec.from_settings(settings),
        cache_dir=settings.cache_dir or None,
        in_memory=settings.cache == "memory",
        workers=settings.workers,
        progress=progress,
    )
    return cache, manifest.digest()
