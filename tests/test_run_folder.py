"""The run folder: one owner, one kind of run, checked before anything is written."""

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import gd_jax
from gd_jax import io, run_folder, watchdog
from gd_jax.errors import GdJaxError
from gd_jax.run_folder import RunFolder


def test_a_folder_refuses_to_be_overwritten_or_mixed(tmp_path):
    folder = RunFolder(tmp_path / "run")
    flags = {"learning_rate": 3.0, "epochs": 2}
    assert folder.check("train", flags, resume=False) is False
    io.write_json(folder / io.CONFIG, {"kind": "train", "flags": flags})
    with pytest.raises(GdJaxError, match=r"already holds a run.*--resume"):
        folder.check("train", flags, resume=False)
    assert folder.check("train", {**flags, "epochs": 5}, resume=True) is True  # longer is fine
    with pytest.raises(GdJaxError, match=r"--epochs: 2 there, 1 now.*may only grow"):
        folder.check("train", {**flags, "epochs": 1}, resume=True)
    with pytest.raises(GdJaxError, match=r"different run.*--learning_rate: 3\.0 there, 0\.5 now"):
        folder.check("train", {**flags, "learning_rate": 0.5}, resume=True)
    with pytest.raises(GdJaxError, match=r"holds a train run, not a toy_descent run"):
        folder.check("toy_descent", None, resume=True)
    assert json.loads((folder / io.CONFIG).read_text()) == {"kind": "train", "flags": flags}


@pytest.mark.parametrize(
    "flags, kind",
    [({"dataset": "digits", "learning_rates": [1.0]}, "lr_sweep"),
     ({"dataset": "digits", "widths": [4]}, "local_minima"),
     ({"dataset": "digits"}, "train"),
     ({"workdir": "x"}, "toy_descent")],
)  # fmt: skip
def test_a_folder_from_before_kinds_were_recorded_is_told_by_its_flags(tmp_path, flags, kind):
    folder = RunFolder(tmp_path)
    io.write_json(folder / io.CONFIG, {"flags": flags})
    other = "train" if kind != "train" else "lr_sweep"
    with pytest.raises(GdJaxError, match=f"holds a {kind} run, not a {other} run"):
        folder.check(other, flags, resume=True)


@pytest.mark.parametrize("content", ["[1, 2]", '{"flags": null}', '{"flags": [1]}', "{", ""])
def test_a_config_json_that_is_not_a_record_is_named(tmp_path, content):
    (tmp_path / io.CONFIG).write_text(content)
    with pytest.raises(GdJaxError, match=r"config\.json is not the record of a run"):
        RunFolder(tmp_path).check("train", {}, resume=True)


@pytest.mark.parametrize("workdir", ["", "  "])
def test_an_empty_workdir_is_refused(workdir):
    with pytest.raises(GdJaxError, match="--workdir is empty") as caught:
        RunFolder(workdir)
    assert caught.value.field == "workdir"


@pytest.mark.parametrize("workdir", ["/proc/gd_jax_x", "/dev/null/x"])
def test_a_folder_that_cannot_be_made_is_a_clear_error(workdir):
    with (
        pytest.raises(GdJaxError, match=f"--workdir={workdir} cannot be used"),
        RunFolder(workdir).claim(),
    ):
        pass


def test_a_failed_start_leaves_no_folder_behind(tmp_path):
    def failing_load():
        raise GdJaxError("no data")

    start = lambda where: run_folder.start_run(where, "train", {}, resume=False, load=failing_load)
    with pytest.raises(GdJaxError, match="no data"), start(tmp_path / "new"):
        pass
    assert not (tmp_path / "new").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "mine.txt").write_text("x")
    with pytest.raises(GdJaxError, match="no data"), start(tmp_path / "kept"):
        pass
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == [".lock", "mine.txt"]


HOLD = """
import sys, time
from gd_jax.run_folder import RunFolder
with RunFolder(sys.argv[1]).claim():
    print("held", flush=True)
    time.sleep(60)
"""


def test_a_second_process_on_a_folder_is_refused_and_writes_nothing(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        before = sorted(p.name for p in tmp_path.iterdir())
        with (
            pytest.raises(GdJaxError, match=rf"in use by another run \(process {holder.pid}\)"),
            run_folder.start_run(tmp_path, "train", {}, resume=False, load=lambda: None),
        ):
            pass
        assert sorted(p.name for p in tmp_path.iterdir()) == before == [".lock"]
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    # The kernel released the dead process's lock: the folder can be claimed again.
    with run_folder.start_run(tmp_path, "train", {}, resume=False, load=lambda: "data") as (f, d):
        assert d == "data" and (f / io.CONFIG).exists()
    assert json.loads((tmp_path / io.CONFIG).read_text())["kind"] == "train"


def test_files_get_the_permissions_the_umask_allows(tmp_path):
    io.write_text(tmp_path / "a.txt", "x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o666 & ~mask


def test_a_full_disk_is_a_clear_error_and_keeps_the_old_file(tmp_path, monkeypatch):
    io.write_text(tmp_path / "a.txt", "old")

    def no_space(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(GdJaxError, match=r"a\.txt could not be written \(No space left"):
        io.write_text(tmp_path / "a.txt", "new")
    assert (tmp_path / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]  # no temporary file left


def test_a_stop_requested_is_raised_after_the_next_write(tmp_path):
    watchdog.request_stop()
    try:
        with pytest.raises(KeyboardInterrupt):
            io.write_text(tmp_path / "a.txt", "x")
        assert (tmp_path / "a.txt").read_text() == "x"  # written first
        with pytest.raises(KeyboardInterrupt):
            io.write_text(tmp_path / "b.txt", "x")  # until someone handles it
    finally:
        watchdog.stop_handled()
    io.write_text(tmp_path / "c.txt", "x")


def test_a_run_records_the_commit_machine_and_date_it_ran_under(tmp_path):
    from conftest import cli

    from gd_jax.cli import train as train_cli

    args = ("--dataset=digits", "--layers=4", "--epochs=1", f"--workdir={tmp_path}")
    assert cli(train_cli, *args) == 0
    record = io.read_json(tmp_path / io.CONFIG)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                          cwd=Path(run_folder.__file__).parent, check=False,
                          timeout=30)  # fmt: skip
    if head.returncode == 0:  # a checkout: its commit, and whether gd_jax/ is modified
        assert record["source"]["commit"] == head.stdout.strip()
        assert isinstance(record["source"]["modified"], bool)
    assert record["source"]["version"] == gd_jax.__version__
    assert record["machine"]["cores"] == os.cpu_count() and record["machine"]["cpu"]
    assert record["date"].endswith("Z") and "earlier_sources" not in record


def test_a_run_resumed_under_other_code_names_both(tmp_path, monkeypatch):
    from conftest import cli

    from gd_jax.cli import train as train_cli

    args = ("--dataset=digits", "--layers=4", f"--workdir={tmp_path}")
    assert cli(train_cli, *args, "--epochs=1") == 0
    first = io.read_json(tmp_path / io.CONFIG)["source"]
    later = {**first, "commit": "0" * 40, "modified": False}
    monkeypatch.setattr(run_folder, "source", lambda: later)
    assert cli(train_cli, *args, "--epochs=2", "--resume") == 0
    record = io.read_json(tmp_path / io.CONFIG)
    assert record["source"] == later and record["earlier_sources"] == [first]
    # Back under the first code: the later one is the earlier now, and only it.
    monkeypatch.setattr(run_folder, "source", lambda: first)
    assert cli(train_cli, *args, "--epochs=3", "--resume") == 0
    record = io.read_json(tmp_path / io.CONFIG)
    assert record["source"] == first and record["earlier_sources"] == [later]


def test_a_run_resumed_from_a_record_without_a_source_says_so(tmp_path):
    from conftest import cli

    from gd_jax.cli import train as train_cli

    args = ("--dataset=digits", "--layers=4", f"--workdir={tmp_path}")
    assert cli(train_cli, *args, "--epochs=1") == 0
    record = io.read_json(tmp_path / io.CONFIG)
    del record["source"]  # as code from before the source was recorded wrote it
    io.write_json(tmp_path / io.CONFIG, record)
    assert cli(train_cli, *args, "--epochs=2", "--resume") == 0
    unknown = {"version": None, "commit": None, "modified": None}
    assert io.read_json(tmp_path / io.CONFIG)["earlier_sources"] == [unknown]
