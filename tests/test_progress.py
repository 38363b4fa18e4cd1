"""Progress on a terminal redraws one line; anywhere else it prints whole lines now and then."""

from __future__ import annotations

import io

import pytest
from tqdm import tqdm

from medcontrast import progress
from medcontrast.progress import LineBar, progress_bar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_tqdm_and_anything_else_lines():
    for stream, kind in ((_Terminal(), tqdm), (io.StringIO(), LineBar)):
        bar = progress_bar(total=3, file=stream)
        assert type(bar) is kind
        bar.close()


def test_lines_come_every_tenth_of_the_work_and_the_last_state_once(monkeypatch):
    clock = iter(range(1000, 10_000, 3))  # each refresh 3 s later: past the gap between lines
    monkeypatch.setattr(progress.time, "time", lambda: float(next(clock)))
    out = io.StringIO()
    bar = progress_bar(total=20, desc="evaluate", unit="img", file=out, mininterval=0)
    for i in range(20):  # 5% a refresh
        bar.update(1)
        if i == 10:
            bar.set_postfix_str("3/8 runs, ssl finetune 1% seed 0: epoch 2/30")
    bar.close()
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = text.splitlines()
    percents = [int(line.split("%")[0].split()[-1]) for line in lines]
    assert percents == list(range(0, 101, 10))  # the start, each 10%, the end once
    assert lines[-1].startswith("evaluate: 100% 20/20") and "epoch 2/30" in lines[-1]


def test_a_slow_bar_prints_a_line_every_interval(monkeypatch):
    clock = iter(range(0, 10_000, 20))  # each refresh 20 s later
    monkeypatch.setattr(progress.time, "time", lambda: float(next(clock)))
    out = io.StringIO()
    bar = LineBar(total=1000, desc="pretrain", file=out, mininterval=0, miniters=1)
    for _ in range(10):  # 1% of the work a refresh: under the 10% mark, but 30 s pass
        bar.update(1)
    bar.close()
    assert 4 <= len(out.getvalue().splitlines()) <= 7  # start, ~every 30 s, the end


def test_a_fast_bar_prints_its_start_and_end():
    out = io.StringIO()
    for _ in progress_bar(range(1000), desc="scan", file=out, mininterval=0):
        pass
    assert [line.split(":")[1].split("%")[0].strip() for line in out.getvalue().splitlines()] == [
        "0",
        "100",
    ]


@pytest.mark.parametrize("leave", [True, False])
def test_a_bar_without_a_total_or_not_kept_still_writes_no_carriage_return(leave):
    out = io.StringIO()
    for _ in progress_bar(iter(range(5)), desc="walk", file=out, leave=leave):
        pass
    assert "\r" not in out.getvalue() and out.getvalue().splitlines()[-1].startswith("walk: 5")
