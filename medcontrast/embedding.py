"""Features of a pretrained encoder for new images: ``medcontrast embed`` and
:func:`medcontrast.embed`.

Inputs are read as ``index`` reads an archive (a folder, single files) or taken from a manifest;
each is preprocessed exactly as the encoder's pretraining data (its ``encoder.json``) through the
same content-keyed cache (so a stopped run resumes, and a second run on the same files reuses
it). Unreadable files are skipped and counted, never fatal. The table holds pseudonyms only:
sample and patient pseudonyms, split, label when known, then the features ``f0000 ...``.
"""

from __future__ import annotations

import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from medcontrast.archive.index import build_index, outside_archive, write_index
from medcontrast.data.cache import build_cache
from medcontrast.data.manifest import Manifest, read_manifest
from medcontrast.encoder_input import input_spec
from medcontrast.errors import MedContrastError
from medcontrast.evaluation.probes import extract_features
from medcontrast.export import load_encoder
from medcontrast.runtime import resolve_device

ID_COLUMNS = ["sample_id", "patient", "split", "label"]
OUT_SUFFIXES = (".parquet", ".npz")


@dataclass
class Skipped:
    """What was not embedded, counted by reason (reasons hold pseudonyms, never a path)."""

    reasons: Counter = field(default_factory=Counter)

    def add(self, reason: str, n: int = 1) -> None:
        self.reasons[reason] += n

    @property
    def total(self) -> int:
        return sum(self.reasons.values())

    def lines(self, n: int = 5) -> list[str]:
        top = self.reasons.most_common(n)
        more = self.total - sum(c for _, c in top)
        return [f"  {c:6d}  {r}" for r, c in top] + ([f"  {more:6d}  other"] if more else [])


def embed(
    run: str | Path,
    inputs: str | Path | Sequence[str | Path],
    out: str | Path | None = None,
    *,
    labels: str | Path | None = None,
    batch_size: int = 64,
    device: str = "auto",
    workers: int | str = "auto",
    cache_dir: str | Path | None = None,
    salt_file: str | Path | None = None,
    progress: bool = True,
) -> pd.DataFrame:
    """Features (N, D) of every usable image of ``inputs`` by the encoder of ``run``.

    Args:
        run: a finished pretraining run folder (its ``encoder.pth`` and ``encoder.json``).
        inputs: folders or files to index (DICOM, NIfTI, PNG/JPEG, MedMNIST ``.npz``), or
            manifests (``.csv`` written by ``medcontrast index``).
        out: ``.parquet`` or ``.npz`` to write (outside every input archive); None: nothing is
            written.
        labels: a labels CSV for the indexed inputs, as ``medcontrast index --labels``.

    Returns:
        One row per embedded sample: ``sample_id``, ``patient``, ``split``, ``label`` ("" when
        unknown), then ``f0000`` ... ``f{D-1}`` (float32). ``attrs["skipped"]``: how many
        samples were not embedded, by reason.
    """
    items = [Path(p) for p in ([inputs] if isinstance(inputs, str | Path) else inputs)]
    if not items:
        raise MedContrastError("embed needs at least one input (a folder, files or a manifest)")
    if out is not None:
        out = checked_out(Path(out), items)
    encoder = load_encoder(run)
    spec = input_spec(run)
    dev = resolve_device(device)
    skipped, parts = Skipped(), []
    with tempfile.TemporaryDirectory(prefix="medcontrast-embed-") as tmp:
        for k, item in enumerate(items):
            manifest = _manifest(item, Path(tmp) / f"{k}.csv", labels, salt_file, progress)
            rows = _usable(manifest, spec.ndim, skipped)
            if rows.empty:
                continue
            cache = build_cache(
                manifest, rows, spec, cache_dir=cache_dir, workers=workers, progress=progress
            )
            for _, reason in cache.failed:
                skipped.add(_reason(reason))
            feats = extract_features(encoder, cache.array, dev, batch_size, progress=progress)
            parts.append(_table(cache.rows, feats))
    if not parts:
        raise MedContrastError(
            f"no readable {spec.ndim}D image in {', '.join(map(str, items))}:\n"
            + "\n".join(skipped.lines())
        )
    table = pd.concat(parts, ignore_index=True)
    if out is not None:
        write_table(table, out)
    table.attrs["skipped"] = dict(skipped.reasons)  # plain, as pandas copies attrs around
    return table


def checked_out(out: Path, items: list[Path]) -> Path:
    """``out`` resolved; an error for another format or a place inside an input archive."""
    if out.suffix not in OUT_SUFFIXES:
        raise MedContrastError(f"--out {out}: write a .parquet or a .npz file")
    for item in items:
        out = outside_archive(out, read_manifest(item).root if item.suffix == ".csv" else item)
    return out


def _manifest(
    item: Path, path: Path, labels: str | Path | None, salt_file, progress: bool
) -> Manifest:
    """A manifest given, or the input indexed as ``medcontrast index`` does (without its
    decoding pass: the cache decodes every sample anyway and skips what fails)."""
    if not item.exists():
        raise MedContrastError(f"{item} does not exist")
    if item.suffix == ".csv":
        return read_manifest(item)
    result = build_index(item, labels=labels, salt_file=salt_file, verify=False, progress=progress)
    write_index(result, path, item)
    return read_manifest(path)


def _usable(manifest: Manifest, ndim: int, skipped: Skipped) -> pd.DataFrame:
    """The rows the encoder can take; the rest counted by reason."""
    table = manifest.table
    for reason, n in Counter(table.loc[table["status"] != "ok", "reason"]).items():
        skipped.add(_reason(reason), n)
    ok = manifest.ok
    other = int((ok["ndim"] != ndim).sum())
    if other:
        skipped.add(f"{3 if ndim == 2 else 2}D sample; the encoder takes {ndim}D", other)
    return ok[ok["ndim"] == ndim]


def _reason(text: str) -> str:
    # "name: reason" -> "reason", so that counts gather the same cause over many files
    return text.split(": ", 1)[1] if ": " in text else text


def _table(rows: pd.DataFrame, feats: np.ndarray) -> pd.DataFrame:
    ids = rows[ID_COLUMNS].reset_index(drop=True).astype(str)
    width = max(4, len(str(feats.shape[1] - 1)))
    cols = pd.DataFrame(
        feats.astype(np.float32), columns=[f"f{i:0{width}d}" for i in range(feats.shape[1])]
    )
    return pd.concat([ids, cols], axis=1)


def feature_columns(table: pd.DataFrame) -> list[str]:
    """The feature block's columns of an embed table, in order."""
    return [c for c in table.columns if c not in ID_COLUMNS]


def write_table(table: pd.DataFrame, out: Path) -> None:
    """Parquet (one column per feature, readable by pandas, polars, Spark) or ``.npz``
    (``features`` (N, D) float32 and one string array per id column)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    if out.suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
        except ImportError as exc:
            raise MedContrastError(
                f"writing {out.name} needs pyarrow (`pip install medcontrast[parquet]`); or "
                "write a .npz file"
            ) from exc
        table.to_parquet(tmp, index=False)
    else:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                features=table[feature_columns(table)].to_numpy(np.float32),
                **{c: table[c].to_numpy(str) for c in ID_COLUMNS},
            )
    tmp.replace(out)


def read_table(path: str | Path) -> pd.DataFrame:
    """An embed output back as the table :func:`embed` returned."""
    path = Path(path)
    if path.suffix == ".parquet":
        return pd.read_parquet(path)
    with np.load(path, allow_pickle=False) as data:
        return _table(pd.DataFrame({c: data[c] for c in ID_COLUMNS}), data["features"])


def print_summary(table: pd.DataFrame, out: Path | None) -> None:
    """What was embedded, where it went and what was skipped (to stderr)."""
    n, d = len(table), len(feature_columns(table))
    where = f" -> {out}" if out else ""
    print(f"embedded {n} samples ({d} features each){where}", file=sys.stderr)
    skipped = Skipped(Counter(table.attrs.get("skipped", {})))
    if skipped.total:
        print(f"skipped {skipped.total}:", file=sys.stderr)
        print("\n".join(skipped.lines()), file=sys.stderr)
