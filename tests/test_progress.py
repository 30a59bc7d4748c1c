"""Progress: a bar where someone watches, log lines without carriage returns where no
one does, and one line when the work ends."""

import logging
import math
import sys

import pytest

from gd_jax import progress

QUICK = ("--dataset=digits", "--layers=8", "--batch_size=10", "--epochs=3")


@pytest.fixture
def logged(caplog):
    caplog.set_level(logging.INFO, logger="absl")
    return caplog


def test_the_mode_is_forced_by_the_environment_and_is_log_without_a_terminal(monkeypatch):
    monkeypatch.delenv(progress.ENV, raising=False)
    assert progress.mode() == "log"  # pytest captures stderr: not a terminal
    monkeypatch.setenv(progress.ENV, "bar")
    assert progress.mode() == "bar"
    monkeypatch.setenv(progress.ENV, "LOG")
    assert progress.mode() == "log"
    monkeypatch.setenv(progress.ENV, "sometimes")  # not a mode: the default decides
    assert progress.mode() == "log"


def test_time_left_and_clock():
    assert progress.eta(2, 10, 4.0) == 16.0 and math.isnan(progress.eta(0, 10, 4.0))
    assert progress.clock(3723) == "1:02:03" and progress.clock(83) == "1:23"
    assert progress.clock(math.nan) == "?"


def test_log_mode_writes_a_line_now_and_then_and_one_at_the_end(monkeypatch, logged):
    monkeypatch.setenv(progress.ENV, "log")
    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    with progress.bar("Polishing 4-3-2", 10, "network", start=2) as shown:
        for _ in range(8):
            now[0] += 10.0  # a piece every 10 s: a line every third piece
            shown.update(note="1 critical")
    lines = [r.getMessage() for r in logged.records]
    # After 30 s: 5 of 10 done, 3 in 30 s, so 5 more take 50 s.
    assert (
        lines[0] == "Polishing 4-3-2: 5 of 10 networks, 0:30 elapsed, about 0:50 left (1 critical)"
    )
    assert lines[1].startswith("Polishing 4-3-2: 8 of 10 networks, 1:00 elapsed, about 0:20 left")
    assert lines[-1] == "Polishing 4-3-2: 10 of 10 networks done in 1:20 (1 critical)."
    assert len(lines) == 3


def test_bar_mode_draws_a_bar_and_still_logs_the_end(monkeypatch, logged, capsys):
    monkeypatch.setenv(progress.ENV, "bar")
    shown = progress.Epochs("width 4", 3)
    for epoch in (2, 3):  # resumed after epoch 1
        shown.report(epoch, f"epoch {epoch} text")
    err = capsys.readouterr().err
    assert "\r" in err  # drawn over itself, as on a terminal
    assert "width 4" in err and "3/3" in err and "epoch 3 text" in err
    assert [r.getMessage() for r in logged.records] == [
        "width 4: 3 of 3 epochs done in 0:00 (epoch 3 text)."
    ]


def test_epochs_in_log_mode_are_one_line_each(monkeypatch, logged):
    monkeypatch.setenv(progress.ENV, "log")
    shown = progress.Epochs("sweep chunk 1/2", 2)
    shown.report(1, "a")
    shown.report(2, "b")
    assert [r.getMessage() for r in logged.records] == [
        "sweep chunk 1/2 epoch 1/2: a",
        "sweep chunk 1/2 epoch 2/2: b",
    ]


def test_a_command_logs_without_carriage_returns_where_no_one_watches(
    tmp_path, monkeypatch, capfd, logged
):
    from conftest import cli

    from gd_jax.cli import train as train_cli

    monkeypatch.setenv(progress.ENV, "log")
    assert cli(train_cli, *QUICK, f"--workdir={tmp_path}") == 0
    assert "\r" not in capfd.readouterr().err  # no bar drawn
    lines = [r.getMessage() for r in logged.records]
    assert any(line.startswith("training epoch 3/3: avg train cost") for line in lines)
    assert not any("\r" in line for line in lines)


def test_a_log_line_written_while_a_bar_is_drawn_goes_above_it(monkeypatch, capsys):
    from absl import logging as absl_logging

    handler = absl_logging.get_absl_handler().python_handler
    monkeypatch.setattr(handler, "stream", sys.stderr)  # pytest's, so it is captured
    monkeypatch.setenv(progress.ENV, "bar")
    with progress.bar("Polishing 4-3-2", 3, "network") as shown:
        shown.update()
        # What absl's handler does with a record (whether pytest routes it there or not).
        handler.stream.write("I1207 polish.py:1] critical point found\n")
        shown.update(2)
    assert handler.stream is sys.stderr  # given back
    pieces = capsys.readouterr().err.replace("\r", "\n").split("\n")
    # Its own line, not glued to the bar's text.
    assert any(p.startswith("I") and p.endswith("critical point found") for p in pieces)
    assert not any(p.startswith("Polishing") and "critical point" in p for p in pieces)


def test_fit_in_a_notebook_or_terminal_shows_its_epochs(monkeypatch, capsys):
    import gd_jax

    monkeypatch.setenv(progress.ENV, "bar")
    fitted = gd_jax.fit(gd_jax.TrainConfig(dataset="digits", layers=(8,), epochs=2))
    err = capsys.readouterr().err
    assert "training" in err and "2/2" in err and len(fitted.history) == 3
