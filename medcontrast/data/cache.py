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
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from tqdm import tqdm

from medcontrast._version import __version__
from medcontrast.data.loading import SampleLoadError, check_pixels, load_sample
from medcontrast.data.manifest import Manifest, read_manifest
from medcontrast.data.preprocessing import PreprocessSettings, PreprocessSpec, preprocess
from medcontrast.data.private_paths import scrub
from medcontrast.data.selection import select_rows
from medcontrast.errors import MedContrastError, first_line


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


def _one_thread() -> None:
    """A forked worker computes on one thread: the OpenMP pool of a parent that has already run
    torch does not survive the fork, and the first multi-threaded operation in the child would
    wait on it forever (torch's DataLoader workers do the same)."""
    import torch

    torch.set_num_threads(1)


def _work(
    args: tuple[str, list[Path], str, PreprocessSpec, str, str],
) -> tuple[np.ndarray | None, str]:
    fmt, paths, member, spec, name, modality = args
    try:
        loaded = load_sample(fmt, paths, member)
        check_pixels(loaded.array, name)
        return preprocess(loaded, spec, modality).astype(np.float16), ""
    except SampleLoadError as exc:
        return None, str(exc)
    except Exception as exc:  # one bad sample in a million must not stop the run
        return None, f"{name}: {type(exc).__name__}: {first_line(exc)}"


def _hide_paths(manifest: Manifest, row: pd.Series, paths: list[Path] | None, err: str) -> str:
    """A loader's message as the manifest would store it: no archive path, no folder name
    (the run folder's data.json and the evaluation's report carry these messages)."""
    paths = paths if paths is not None else manifest.source_paths(row)
    sources = str(row["source"]).split("|")
    if len(sources) != len(paths):  # a private path: only the file names may show
        sources = [p.name for p in paths]
    return scrub(err, zip(paths, sources, strict=True), manifest.root)


# MedMNIST rows per worker task: each task opens the shared .npz once; small enough that the
# results in flight stay small at large sizes, large enough that reopening costs little.
NPZ_CHUNK = 1024


def _npz_work(
    args: tuple[list[tuple[Path, str]], PreprocessSpec],
) -> list[tuple[np.ndarray | None, str]]:
    """Preprocess a chunk of MedMNIST rows ((file, member) each), loading each array once."""
    from medcontrast.data.loading import NpzStore, load_npz_member

    items, spec = args
    store = NpzStore()
    out: list[tuple[np.ndarray | None, str]] = []
    for path, member in items:
        name = f"{path.name}[{member}]"
        try:
            loaded = load_npz_member(path, member, store)
            check_pixels(loaded.array, name)
            out.append((preprocess(loaded, spec).astype(np.float16), ""))
        except SampleLoadError as exc:
            out.append((None, str(exc)))
        except Exception as exc:  # one bad sample in a million must not stop the run
            out.append((None, f"{name}: {type(exc).__name__}: {first_line(exc)}"))
    return out


def _npz_rows(
    manifest: Manifest, rows: pd.DataFrame, shared: np.ndarray, spec: PreprocessSpec, workers: int
) -> Iterator[tuple[int, np.ndarray | None, str]]:
    """MedMNIST rows share a file: chunks of rows, each chunk reading the file once, in
    ``workers`` processes when there is more than one chunk."""
    items = [(manifest.source_paths(rows.iloc[i])[0], str(rows.at[i, "member"])) for i in shared]
    starts = range(0, len(items), NPZ_CHUNK)
    jobs = [(items[k : k + NPZ_CHUNK], spec) for k in starts]
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers, initializer=_one_thread) as pool:
            for k, results in zip(starts, pool.map(_npz_work, jobs), strict=True):
                for j, (array, error) in enumerate(results):
                    yield int(shared[k + j]), array, error
    else:
        for k, job in zip(starts, jobs, strict=True):
            for j, (array, error) in enumerate(_npz_work(job)):
                yield int(shared[k + j]), array, error


def build_cache(
    manifest: Manifest,
    rows: pd.DataFrame,
    spec: PreprocessSpec,
    cache_dir: str | Path | None = None,
    in_memory: bool = False,
    workers: int = 0,
    progress: bool = True,
) -> ImageCache:
    """Preprocess ``rows`` once and keep the result on disk, keyed by content.

    The key hashes the sample ids, their sources, the preprocessing spec and the medcontrast
    version, so a changed manifest or setting makes a new cache instead of reusing a stale one.
    """
    cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _cache_key(manifest, rows, spec)
    arr_path, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    if arr_path.exists() and meta_path.exists():
        meta = json.loads(meta_path.read_text())
        kept = rows[rows["sample_id"].isin(set(meta["kept"]))].reset_index(drop=True)
        array = np.load(arr_path, mmap_mode="r")
        _check_cached(arr_path, array, meta, spec, len(kept))
        failed = [tuple(x) for x in meta["failed"]]
        return ImageCache(np.asarray(array) if in_memory else array, kept, failed, arr_path)

    rows = rows.reset_index(drop=True)
    shape = (len(rows), 1, *spec.size)
    tmp = arr_path.with_name(arr_path.name + f".tmp{os.getpid()}")
    out = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float16, shape=shape)
    paths = {i: manifest.source_paths(rows.iloc[i]) for i in np.flatnonzero(_one_file(rows))}
    errors = [""] * len(rows)
    bar = tqdm(
        total=len(rows), desc="preprocess", unit="img", disable=not progress, file=sys.stderr
    )
    for i, array, error in _preprocessed(manifest, rows, spec, paths, workers):
        errors[i] = error
        if array is not None:
            out[i] = array
        bar.update()
    bar.close()
    good = np.array([not err for err in errors], dtype=bool)
    failed = [
        (rows.at[i, "sample_id"], _hide_paths(manifest, rows.iloc[i], paths.get(i), err))
        for i, err in enumerate(errors)
        if err
    ]
    if not good.all():
        # Compact the array so that its rows match the kept manifest rows.
        compact_tmp = tmp.with_name(tmp.name + "c")
        compact = np.lib.format.open_memmap(
            compact_tmp, mode="w+", dtype=np.float16, shape=(int(good.sum()), *shape[1:])
        )
        compact[:] = out[good]
        compact.flush()
        del out
        os.replace(compact_tmp, tmp)
    else:
        out.flush()
        del out
    os.replace(tmp, arr_path)
    kept = rows[good].reset_index(drop=True)
    meta = {"kept": kept["sample_id"].tolist(), "failed": failed, "spec": spec.key()}
    meta_tmp = meta_path.with_name(meta_path.name + ".tmp")
    meta_tmp.write_text(json.dumps(meta))
    os.replace(meta_tmp, meta_path)
    array = np.load(arr_path, mmap_mode="r")
    return ImageCache(np.asarray(array) if in_memory else array, kept, failed, arr_path)


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


def _one_file(rows: pd.DataFrame) -> np.ndarray:
    """(N,) True for rows read from files of their own (MedMNIST rows share one .npz)."""
    return (rows["format"] != "npz").to_numpy()


def _preprocessed(
    manifest: Manifest,
    rows: pd.DataFrame,
    spec: PreprocessSpec,
    paths: dict[int, list[Path]],
    workers: int,
) -> Iterator[tuple[int, np.ndarray | None, str]]:
    """(row, (1, *size) float16 array or None, reason it failed) for every row: MedMNIST rows
    from their shared files, the others one file each, in ``workers`` processes when worth it."""
    own = _one_file(rows)
    shared = np.flatnonzero(~own)
    if len(shared):
        yield from _npz_rows(manifest, rows, shared, spec, workers)
    idx = np.flatnonzero(own)
    jobs = [
        (
            rows.at[i, "format"],
            paths[i],
            rows.at[i, "member"],
            spec,
            Path(str(rows.at[i, "source"]).split("|")[0]).name,
            rows.at[i, "modality"],
        )
        for i in idx
    ]
    if workers > 1 and len(jobs) > 32:
        with ProcessPoolExecutor(max_workers=workers, initializer=_one_thread) as pool:
            for i, (array, error) in zip(idx, pool.map(_work, jobs, chunksize=8), strict=True):
                yield int(i), array, error
    else:
        for i, job in zip(idx, jobs, strict=True):
            yield int(i), *_work(job)


class CacheSettings(PreprocessSettings, Protocol):
    """What :func:`load_selection` reads (the config's ``data:`` section has it)."""

    manifest: str
    modalities: list[str]
    cache: str  # "disk" (memory-mapped) or "memory"
    cache_dir: str
    workers: int


def load_selection(
    settings: CacheSettings,
    *,
    splits: list[str] | None,
    labeled: bool,
    max_samples: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> tuple[ImageCache, str]:
    """manifest -> rows -> cache, as pretraining and evaluation both need it: the selected rows
    of ``settings.manifest``, preprocessed and cached, and the manifest's digest."""
    if not settings.manifest:
        raise MedContrastError("data.manifest is not set (make one with `medcontrast index`)")
    manifest = read_manifest(settings.manifest)
    rows = select_rows(
        manifest, settings.ndim, settings.modalities, splits, labeled, max_samples, seed
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
