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

    A torn last line and the rows of a run cut short are left out with a one-line note on
    stderr; with ``repair`` the file itself is rewritten without them (through a temporary file
    and a rename), so that the appends that follow start on a clean line.
    """
    path = Path(path)
    if not path.exists():
        return pd.DataFrame(columns=RESULT_COLUMNS)
    text = path.read_text()
    torn = bool(text) and not text.endswith("\n")
    if torn:
        text = text[: text.rfind("\n") + 1]
    table = _parse(path, text)
    complete = _complete(table)
    cut = table.loc[~complete, RUN_KEY].drop_duplicates()
    if torn or len(cut):
        runs = ", ".join(" ".join(str(v) for v in r) for r in cut.itertuples(index=False))
        print(
            f"note: {path}: {'a torn last row and ' if torn else ''}{len(cut)} run(s) cut short "
            f"by an interruption are left out{' and redone' if repair else ''}"
            f"{': ' + runs if runs else ''}",
            file=sys.stderr,
        )
        table = table[complete].reset_index(drop=True)
        if repair:
            write_results(path, table)
    return table.astype({"seed": int})


def write_results(path: Path, table: pd.DataFrame) -> None:
    """Replace ``path`` with ``table`` (temporary file, then rename)."""
    tmp = path.with_name(path.name + ".tmp")
    table[RESULT_COLUMNS].to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, path)


def append_results(path: Path, rows: list[dict]) -> None:
    """Append one run's rows in a single write and flush, ``seconds`` row last."""
    rows = sorted(rows, key=lambda r: r["metric"] == LAST_METRIC)
    append_csv(path, RESULT_COLUMNS, rows, sync=True)
