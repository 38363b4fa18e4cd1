"""results.csv survives a kill: torn rows and runs cut short are dropped and redone."""

from __future__ import annotations

import pandas as pd
import pytest

from medcontrast.errors import MedContrastError
from medcontrast.evaluation.results_file import RESULT_COLUMNS, append_results, read_results


def _run(init: str, seed: int) -> list[dict]:
    base = dict.fromkeys(RESULT_COLUMNS, "")
    base.update(init=init, protocol="linear", budget="2-shot", seed=seed, note="C=1")
    return [{**base, "metric": m, "value": v} for m, v in (("seconds", 1.5), ("auroc", 0.75))]


def test_rows_of_a_run_are_written_seconds_last(tmp_path):
    path = tmp_path / "results.csv"
    append_results(path, _run("ssl", 0))
    append_results(path, _run("ssl", 1))
    table = read_results(path)
    assert list(table["metric"]) == ["auroc", "seconds", "auroc", "seconds"]
    assert table["seed"].tolist() == [0, 0, 1, 1]
    assert read_results(tmp_path / "absent.csv").empty


@pytest.mark.parametrize("cut", [3, 12, 30])  # inside the last value, note, or a whole row
def test_a_torn_tail_is_dropped_and_the_file_repaired(tmp_path, capsys, cut):
    path = tmp_path / "results.csv"
    append_results(path, _run("ssl", 0))
    append_results(path, _run("ssl", 1))
    text = path.read_text()
    path.write_text(text[:-cut])
    table = read_results(path, repair=True)
    assert table["seed"].tolist() == [0, 0]  # the cut run is gone, whole
    assert "cut short" in capsys.readouterr().err
    append_results(path, _run("ssl", 1))  # the redone run appends to a clean file
    assert read_results(path)["seed"].tolist() == [0, 0, 1, 1]
    assert pd.read_csv(path)["value"].notna().all()


def test_a_run_cut_between_rows_is_dropped(tmp_path, capsys):
    path = tmp_path / "results.csv"
    append_results(path, _run("ssl", 0))
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[:2]))  # header and the auroc row; no seconds row
    assert read_results(path).empty
    assert "1 run(s) cut short" in capsys.readouterr().err
    assert len(path.read_text().splitlines()) == 2  # without repair the file is left alone


def test_a_damaged_file_is_named(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("something else\n1,2,3\n")
    with pytest.raises(MedContrastError, match=r"results\.csv"):
        read_results(path)


@pytest.mark.parametrize(("column", "bad"), [("value", "0.8x"), ("seed", "one")])
def test_a_run_holding_a_value_that_is_not_a_number_is_dropped(tmp_path, capsys, column, bad):
    """A hand edit or a disk fault: the run is left out (and redone), never a crash in the
    report's number formatting."""
    path = tmp_path / "results.csv"
    for seed in (0, 1):
        append_results(path, _run("ssl", seed))
    table = pd.read_csv(path, dtype=str)
    table.loc[2, column] = bad  # a row of the run of seed 1
    table.to_csv(path, index=False)
    append_results(path, _run("random", 0))
    kept = read_results(path, repair=True)
    assert kept["value"].dtype == float
    # a bad value costs its run; a bad seed every seed of its setting (its run is unknown)
    expected = [("ssl", 0), ("random", 0)] if column == "value" else [("random", 0)]
    assert kept[["init", "seed"]].drop_duplicates().apply(tuple, axis=1).tolist() == expected
    assert "not a number are left out and redone" in capsys.readouterr().err
    assert len(pd.read_csv(path)) == len(kept)
