"""Where a run stops and what it says: a signal while XLA compiles, a disk that fills,
a study grown to more epochs, a second interruption."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY_LR, TINY_MINIMA, cli

from gd_jax import io, run_folder, watchdog
from gd_jax.cli import common
from gd_jax.cli import local_minima as minima_cli
from gd_jax.cli import lr_sweep as lr_cli
from gd_jax.errors import GdJaxError
from gd_jax.report import tensorboard
from gd_jax.studies.minima import analysis

ENV = {**os.environ, "JAX_PLATFORMS": "cpu"}


# --- a signal: asked at once, honoured at the next beat, never raised inside JAX -----------


def test_the_first_signal_asks_and_the_next_beat_stops():
    watchdog.stop_handled()
    try:
        common._interrupt(signal.SIGTERM, None)  # returns: nothing is raised here
        assert watchdog.stop_requested()
        with pytest.raises(KeyboardInterrupt):
            watchdog.beat("an epoch finished")
        with pytest.raises(KeyboardInterrupt):
            watchdog.beat("and the next")  # until someone handles it
    finally:
        watchdog.stop_handled()
        common._received["signal"] = None
    watchdog.beat("going on")


def lines_until(process, text: str, timeout: float = 120.0) -> list[str]:
    """The child's stderr lines up to the first holding ``text``."""
    deadline, seen = time.monotonic() + timeout, []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        if not line:
            break
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"{text!r} never came:\n{''.join(seen[-20:])}")


def test_a_signal_while_xla_compiles_stops_cleanly(tmp_path):
    # SIGTERM takes the same handler (test_kill_resume sends it to a sweep).
    stop, delay = signal.SIGINT, 0.3
    # The study's first epoch is compiled right after the path is logged: the signal
    # lands in XLA's compiler (or just after), where raising used to crash the process.
    args = [sys.executable, "-m", "experiments.local_minima", *TINY_MINIMA, "--vary=init",
            f"--workdir={tmp_path}"]  # fmt: skip
    with subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True) as process:  # fmt: skip
        lines_until(process, "Path:")
        time.sleep(delay)
        process.send_signal(stop)
        _, err = process.communicate(timeout=300)
    assert process.returncode in (0, 128 + stop), err[-3000:]  # 0: it had finished
    assert "Fatal Python error" not in err and "Traceback" not in err
    if process.returncode:
        assert f"interrupted by {stop.name}" in err
        assert json.loads((tmp_path / io.SUMMARY).read_text())["status"] == "interrupted"


def test_a_second_signal_ends_the_process_at_once(tmp_path):
    # A trace of 20,000 full-batch steps: one compiled program, no beat for a long time.
    args = [sys.executable, "-m", "experiments.lr_sweep", "--dataset=digits", "--layers=8",
            "--learning_rates=0.5", "--seeds=1", "--epochs=1", "--full_batch_steps=20000",
            "--track_sharpness_every=0", "--norange_test",
            "--norounding_check", "--train_size=200", f"--workdir={tmp_path}"]  # fmt: skip
    with subprocess.Popen(args, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True) as process:  # fmt: skip
        lines_until(process, "Full-batch trace:")
        time.sleep(1.0)
        process.send_signal(signal.SIGINT)
        time.sleep(0.5)
        assert process.poll() is None  # the first waits for the next beat
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=60)
    assert process.returncode == -signal.SIGINT
    assert "SIGINT again: stopping now." in err


# --- a disk that fills up ----------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs, mounted for the test (skipped where mounting is not allowed)."""
    where = tmp_path / "disk"
    where.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(where)],
                             capture_output=True, timeout=30)  # fmt: skip
    if mounted.returncode:
        pytest.skip(f"no tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)


def fill(disk: Path, leave: int) -> None:
    """Fills ``disk`` but ``leave`` bytes."""
    free = shutil.disk_usage(disk).free
    (disk / "filler").write_bytes(b"\0" * max(free - leave, 0))


def test_a_full_disk_under_tensorboard_is_one_message(small_disk):
    fill(small_disk, 0)
    with pytest.raises(GdJaxError, match=r"events\.out\.tfevents\..* could not be written \(No"):
        tensorboard.Scalars(small_disk / "tensorboard")
    runs = tensorboard.sweep_runs(["a"], [0, 1], {"train_cost": np.array([[0.5], [0.4]])})
    with pytest.raises(GdJaxError, match=r"tensorboard/a/events.* could not be written \(No"):
        tensorboard.write_runs(small_disk, runs)
    (small_disk / "filler").unlink()
    scalars = tensorboard.Scalars(small_disk / "filling")  # a disk that fills as it runs
    fill(small_disk, 100)
    with pytest.raises(GdJaxError, match="could not be written"):
        for epoch in range(100):
            scalars.add({f"metric_{k}": 0.5 for k in range(20)}, epoch)


def test_a_study_that_fills_the_disk_stops_with_one_line(small_disk):
    fill(small_disk, 88_000)  # a sweep's chunks fit; its figures and event files do not
    quick = ("--full_batch_steps=0", "--norange_test", f"--workdir={small_disk / 'run'}")
    args = [sys.executable, "-m", "experiments.lr_sweep", *TINY_LR, *quick]
    done = subprocess.run(args, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "could not be written (No space left on device)" in errors[0]
    assert "Traceback" not in done.stderr


def test_a_disk_full_from_the_start_is_one_message(small_disk, capsys):
    fill(small_disk, 0)
    workdir = small_disk / "run"
    folder = run_folder.RunFolder(workdir)
    with (
        pytest.raises(GdJaxError, match=r"\.lock could not be written \(No space"),
        folder.claim(),
    ):
        pass
    assert not workdir.exists()  # the folder made for it is gone again


# --- a study grown to more epochs --------------------------------------------------------

LR_TABLES = ("results.csv", "curves.csv", "stability.csv", "first_order.csv")
# One width, one data order (the delayed path and its head train it).
MINIMA = (*[a for a in TINY_MINIMA if not a.startswith("--widths")], "--widths=3", "--vary=init")


def tables_of(workdir, names) -> dict:
    timing = ("seconds", "compile_seconds")
    found = {name: io.read_csv(workdir / name) for name in names}
    summary = json.loads((workdir / io.SUMMARY).read_text())
    found["summary"] = {k: v for k, v in summary.items() if not any(t in k for t in timing)}
    return found


def grow(entry, args, workdir, caplog, *, short: int, long_: int) -> list[str]:
    """Runs a study to ``short`` epochs, then resumes it to ``long_``; the stages carried
    on, as the log names them."""
    assert cli(entry, *args, f"--epochs={short}", f"--workdir={workdir}") == 0
    caplog.clear()
    assert cli(entry, *args, f"--epochs={long_}", "--resume", f"--workdir={workdir}") == 0
    return [r.getMessage() for r in caplog.records if "carried on" in r.getMessage()]


def test_a_sweep_resumed_with_more_epochs_trains_on_to_a_fresh_runs_numbers(tmp_path, caplog):
    caplog.set_level("INFO")
    args = [a for a in (*TINY_LR, "--norange_test") if not a.startswith("--epochs")]
    assert cli(lr_cli, *args, "--epochs=4", f"--workdir={tmp_path / 'fresh'}") == 0
    carried = grow(lr_cli, args, tmp_path / "grown", caplog, short=2, long_=4)
    # Every chunk trained on; the trace, which does not depend on --epochs, kept.
    assert len(carried) == 3 and "other inputs" not in caplog.text
    assert "trace: already on disk, kept." in caplog.text
    assert tables_of(tmp_path / "grown", LR_TABLES) == tables_of(tmp_path / "fresh", LR_TABLES)


def test_a_minima_study_resumed_with_more_epochs_trains_its_widths_on(tmp_path, caplog):
    # (That training on equals training from the start is the trainer's: test_sweep.)
    caplog.set_level("INFO")
    args = [a for a in MINIMA if not a.startswith("--epochs")]
    carried = grow(minima_cli, args, tmp_path, caplog, short=2, long_=3)
    assert carried == ["widths/width_3: on disk, and carried on from there."]
    assert "polished_3.npz was computed from other inputs" in caplog.text
    assert np.load(tmp_path / "widths" / "width_3.npz")["epochs"][-1] == 3


# --- the latest stop is the one recorded -------------------------------------------------


def test_a_second_interruption_records_where_it_stopped(tmp_path, monkeypatch):
    certify = analysis.certify
    calls = []

    def stopped_at(n):
        def certify_or_stop(*args, **kwargs):
            calls.append(1)
            if len(calls) == n:
                raise KeyboardInterrupt
            return certify(*args, **kwargs)

        return certify_or_stop

    monkeypatch.setattr(analysis, "certify", stopped_at(1))  # in width 3's analysis
    assert cli(minima_cli, *TINY_MINIMA, f"--workdir={tmp_path}") == 130
    first = io.read_json(tmp_path / io.SUMMARY)["interrupted_at"]
    calls.clear()
    monkeypatch.setattr(analysis, "certify", stopped_at(2))  # now in width 5's
    assert cli(minima_cli, *TINY_MINIMA, f"--workdir={tmp_path}") == 130
    second = io.read_json(tmp_path / io.SUMMARY)["interrupted_at"]
    assert "width 3" in first and "width 5" in second, (first, second)
