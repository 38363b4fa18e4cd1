"""A run's log file: the console's lines with timestamps, no progress-bar redraws; metrics as
JSON lines beside the CSV."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pandas as pd
import pytest
from tqdm import tqdm

from medcontrast._version import __version__
from medcontrast.config import PretrainConfig, load_config
from medcontrast.pretrain import pretrain
from medcontrast.run_log import RunLog, clean_line, log_line
from tests.archive.test_pseudonyms import identifying_values

STAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")


@pytest.mark.parametrize(
    ("raw", "kept"),
    [
        ("plain words", "plain words"),
        ("\rbar  10%\rbar  50%\rbar 100%", "bar 100%"),
        ("\x1b[Abar 100%\x1b[K   ", "bar 100%"),
        ("\r      \r", None),  # a bar cleared: nothing to keep
        ("", ""),  # an empty line printed on purpose stays
    ],
)
def test_a_console_line_keeps_what_was_seen_last(raw, kept):
    assert clean_line(raw) == kept


def _lines(path) -> list[str]:
    text = path.read_text()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    assert all(STAMPED.match(line) for line in lines), lines
    return [STAMPED.sub("", line) for line in lines]


def test_the_log_holds_the_console_without_redraws(tmp_path, capsys):
    path = tmp_path / "train.log"
    with RunLog(path, "medcontrast test"):
        print("to stdout")
        print("to stderr", file=sys.stderr)
        for _ in tqdm(range(50), desc="work", file=sys.stderr, mininterval=0, ascii=True):
            pass
        log_line("only in the file")
        print("no newline at the end", end="")
    console = capsys.readouterr()
    assert "to stdout" in console.out and "\r" in console.err  # the console is untouched
    assert "only in the file" not in console.out + console.err
    lines = _lines(path)
    assert lines[0].startswith("=== medcontrast test") and lines[-1] == "=== finished"
    bar = [line for line in lines if line.startswith("work:")]
    assert len(bar) == 1 and "50/50" in bar[0]  # one line: the bar's last state
    for said in ("to stdout", "to stderr", "only in the file", "no newline at the end"):
        assert said in lines
    assert sys.stdout is not None and not hasattr(sys.stdout, "_log")


def test_warnings_reach_the_log(tmp_path):
    # In a process of its own: pytest records warnings instead of printing them.
    code = (
        "import warnings; from medcontrast.run_log import RunLog\n"
        f"with RunLog({str(tmp_path / 'train.log')!r}, 'w'):\n"
        "    warnings.warn('the spacing is odd', UserWarning)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "the spacing is odd" in done.stderr
    assert any("UserWarning: the spacing is odd" in x for x in _lines(tmp_path / "train.log"))


def test_an_error_is_logged_and_a_rerun_appends(tmp_path):
    path = tmp_path / "evaluate.log"
    with pytest.raises(ValueError), RunLog(path, "first"):
        raise ValueError("the manifest is empty")
    with RunLog(path, "second"):
        pass
    lines = _lines(path)
    assert lines[1] == "=== stopped: error: the manifest is empty"
    assert lines[2].startswith("=== second") and lines[-1] == "=== finished"


def test_a_disabled_log_writes_nothing(tmp_path):
    stream = sys.stderr
    with RunLog(tmp_path / "train.log", "rank 1", enabled=False):
        assert sys.stderr is stream
        log_line("nothing")
    assert not (tmp_path / "train.log").exists()


def logged_run_config(manifest, tmp_path, name: str, *extra: str) -> PretrainConfig:
    """A run of 4 steps, each logged, checkpointed at 2: killed there and resumed, it shows
    what a log or a tracker keeps across a resume (tests/trackers use it too)."""
    return load_config(
        PretrainConfig,
        None,
        [
            f"data.manifest={manifest}",
            "data.modalities=[CR,DX]",
            "data.size=[32,32]",
            f"data.cache_dir={tmp_path / 'cache'}",
            f"out_dir={tmp_path / 'runs'}",
            f"name={name}",
            "model.encoder=timm:resnet10t",
            "train.batch_size=8",
            "train.max_steps=4",
            "train.log_every=1",
            "train.checkpoint_every=2",
            "views.path=batched",
            *extra,
        ],
    )


def test_a_run_writes_train_log_and_metrics_as_json_lines(
    phantom_archive, phantom_manifest, tmp_path
):
    cfg = logged_run_config(phantom_manifest, tmp_path, "logged")
    run = pretrain(cfg, stop_after=2)  # with progress bars, as on a console
    pretrain(cfg, resume=True)
    lines = _lines(run / "train.log")
    marks = [re.sub(r" \(process \d+\)", "", x) for x in lines if x.startswith("===")]
    assert marks == [
        f"=== medcontrast {__version__} pretrain logged",
        "=== finished",
        f"=== medcontrast {__version__} pretrain logged --resume",
        "=== finished",
    ]
    assert any(line.startswith("data: ") for line in lines)
    assert any(line.startswith("pretrain: 100%") for line in lines)  # the bar's last state
    steps = [line for line in lines if line.startswith("step ")]
    assert [s.split()[1] for s in steps] == ["1/4", "2/4", "3/4", "4/4"]
    assert all(" loss " in s for s in steps)
    csv = pd.read_csv(run / "metrics.csv")
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]  # resumed at 2: no row twice
    pd.testing.assert_frame_equal(pd.DataFrame(rows)[list(csv.columns)], csv, check_dtype=False)
    text = (run / "train.log").read_text()
    assert not [v for v in identifying_values(phantom_archive) if v in text]
