"""``results.csv``: one row per init, protocol, budget, seed and metric, safe to interrupt.

Each run's rows are written in one ``write`` and flushed, its ``seconds`` row last, so a run is
complete exactly when its ``seconds`` row is there and ends in a newline. A kill can still cut
the file inside a run's rows; reading drops that run (and says so in one line) and the
evaluation redoes it, instead of failing on the torn row forever. pandas and the csv module have
no notion of a torn trailing row (pandas reads it as NA), hence this small reader.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path

import pandas as pd

from medcontrast.errors import MedContrastError, first_line
from medcontrast.runs import append_csv

RESULT_COLUMNS = [
    "init",
    "protocol",
    "budget",
    "budget_kind",
    "budget_value",
    "labels_used",
    "patients_used",
    "seed",
    "metric",
    "value",
    "note",
]
RUN_KEY = ["init", "protocol", "budget", "seed"]
LAST_METRIC = "seconds"  # written last for every run: its presence marks a complete run


def _parse(path: Path, text: str) -> pd.DataFrame:
    if not text.strip():
        return pd.DataFrame(columns=RESULT_COLUMNS)
    try:
        table = pd.read_csv(io.StringIO(text))
    except (pd.errors.ParserError, ValueError) as exc:
        raise MedContrastError(
            f"{path} is damaged ({first_line(exc)}); move it away to redo every run"
        ) from exc
    missing = [c for c in RESULT_COLUMNS if c not in table.columns]
    if missing:
        raise MedContrastError(f"{path} is not a results file: it lacks {', '.join(missing)}")
    return table


def _complete(table: pd.DataFrame) -> pd.Series:
    """True for the rows of runs that have every row (their ``seconds`` row is present)."""
    last = table["metric"] == LAST_METRIC
    return last.groupby([table[k] for k in RUN_KEY], dropna=False).transform("any")


def read_results(path: str | os.PathLike[str], repair: bool = False) -> pd.DataFrame:
    """The complete runs' rows of ``path`` (an empty table when it does not exist).

    A torn last line, the rows of a run cut short and the rows of a run with a value or seed
    that is not a number (a hand edit, a disk fault) are left out with a one-line note on
    stderr; with ``repair`` the file itself is rewritten without them (through a temporary file
    and a rename), so that the appends that follow start on a clean line and the evaluation
    redoes those runs.
    """
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=RESULT_COLUMNS)
    text = path.read_text()
    torn = bool(text) and not text.endswith("\n")
    if torn:
        text = text[: text.rfind("\n") + 1]
    table = _parse(path, text)
    value = pd.to_numeric(table["value"], errors="coerce")
    seed = pd.to_numeric(table["seed"], errors="coerce")
    bad_value = value.isna() & table["value"].notna()
    bad_seed = seed.isna() | (seed % 1 != 0)  # its run unknown: every seed of its setting goes
    damaged = bad_value | bad_seed
    table = table.assign(value=value, seed=seed)
    keep = _complete(table) & ~_spread(table, bad_value, RUN_KEY)
    keep &= ~_spread(table, bad_seed, [k for k in RUN_KEY if k != "seed"])
    if torn or not keep.all():
        dropped = table.loc[~keep, RUN_KEY].drop_duplicates()
        runs = ", ".join(" ".join(str(v) for v in r) for r in dropped.itertuples(index=False))
        why = "cut short by an interruption"
        if damaged.any():
            why += " or holding a value that is not a number"
        print(
            f"note: {path}: {'a torn last row and ' if torn else ''}{len(dropped)} run(s) {why} "
            f"are left out{' and redone' if repair else ''}{': ' + runs if runs else ''}",
            file=sys.stderr,
        )
        table = table[keep].reset_index(drop=True)
        if repair:
            write_results(path, table)
    return table.astype({"seed": int})


def _spread(table: pd.DataFrame, rows: pd.Series, key: list[str]) -> pd.Series:
    """True for every row that shares ``key`` with a row in ``rows``."""
    return rows.groupby([table[k] for k in key], dropna=False).transform("any")


def write_results(path: Path, table: pd.DataFrame) -> None:
    """Replace ``path`` with ``table`` (temporary file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    table[RESULT_COLUMNS].to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, path)


def append_results(path: Path, rows: list[dict]) -> None:
    """Append one run's rows in a single write and flush, ``seconds`` row last."""
    rows = sorted(rows, key=lambda r: r["metric"] == LAST_METRIC)
    append_csv(path, RESULT_COLUMNS, rows, sync=True)
