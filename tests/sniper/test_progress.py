"""sniper.progress: the one progress reporter (tqdm on a terminal, log lines otherwise)."""

from __future__ import annotations

import logging

import pytest

from sniper.progress import Progress, format_eta, progress_line, track


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "sniper.progress"]


def test_format_eta_and_line():
    assert format_eta(3661) == "1:01:01" and format_eta(59.6) == "0:01:00"
    assert format_eta(float("nan")) == "?" == format_eta(float("inf")) == format_eta(-1)
    assert progress_line("x", 5, 10, 2.0, "images") == (
        "x: 5/10 images (50.0%), 2.50 images/s, ETA 0:00:02"
    )
    assert progress_line("x", 3, None, 2.0, "files") == "x: 3 files, 1.50 files/s"
    assert progress_line("x", 0, 4, 0.0, "images").endswith("0.00 images/s, ETA ?")
    assert (
        progress_line("x", 0, 0, 0.0, "images")
        == "x: 0/0 images (100.0%), 0.00 images/s, ETA 0:00:00"
    )


def test_log_lines_every_n_items_and_a_last_one(caplog):
    with caplog.at_level(logging.INFO, logger="sniper.progress"):
        assert list(track(range(5), desc="job", terminal=False, every_n=2)) == [0, 1, 2, 3, 4]
    lines = _lines(caplog)
    assert [line.split(" images")[0] for line in lines] == ["job: 2/5", "job: 4/5", "job: 5/5"]


def test_no_duplicate_last_line_and_a_line_for_no_items(caplog):
    with caplog.at_level(logging.INFO, logger="sniper.progress"):
        list(track([1, 2], desc="even", terminal=False, every_n=2))
        list(track([], desc="none", terminal=False))
    assert [line.split(" images")[0] for line in _lines(caplog)] == ["even: 2/2", "none: 0/0"]


def test_disabled_is_silent_and_terminal_draws_a_bar(caplog, capsys):
    with caplog.at_level(logging.INFO, logger="sniper.progress"):
        assert list(track(range(3), desc="rank1", enabled=False, terminal=False)) == [0, 1, 2]
        assert list(track(range(3), desc="bar", terminal=True)) == [0, 1, 2]
    assert _lines(caplog) == []
    err = capsys.readouterr().err
    assert "bar" in err and "3/3" in err and "images/s" in err


def test_update_by_hand_caps_at_total(caplog):
    with caplog.at_level(logging.INFO, logger="sniper.progress"):
        with Progress(desc="p", total=4, terminal=False, every_n=100) as progress:
            progress.update(3)
            progress.update(3)
    assert progress.done == 4
    assert [line.split(" images")[0] for line in _lines(caplog)] == ["p: 4/4"]


@pytest.mark.parametrize(("every_n", "every_s"), [(0, 1.0), (1.5, 1.0), (1, 0.0)])
def test_bad_periods_are_rejected(every_n, every_s):
    with pytest.raises(ValueError, match="every_"):
        Progress(desc="p", every_n=every_n, every_s=every_s)
