"""Runs under faults: damaged files, resumed records, bad flags, a Ctrl-C that Python
swallowed. Each case gives a clear error and no traceback, or the right result."""

import json
import shutil

import conftest
import jax
import numpy as np
import pytest
from conftest import TINY_LR, TINY_MINIMA, cli, snapshot

from gd_jax import data, io, watchdog
from gd_jax.cli import local_minima as minima_cli
from gd_jax.cli import lr_sweep as lr_cli
from gd_jax.cli import toy_descent as toy_cli
from gd_jax.cli import train as train_cli
from gd_jax.fast import native
from gd_jax.sweep import trainer

TRAIN = ("--dataset=digits", "--layers=8", "--batch_size=10")
LR, MINIMA = TINY_LR, TINY_MINIMA
TIMING = {"seconds_per_epoch", "compile_seconds", "sweep_seconds_per_epoch",
          "sweep_compile_seconds", "trace_seconds"}  # fmt: skip


def epochs_of(workdir):
    return [m["epoch"] for m in io.read_jsonl(workdir / io.METRICS)]


def tables_of(workdir, names):
    """The named CSV tables (bytes) and summary.json without its timings."""
    found = {name: (workdir / name).read_bytes() for name in names}
    summary = json.loads((workdir / io.SUMMARY).read_text())
    found["summary"] = {k: v for k, v in summary.items() if k not in TIMING}
    return found


def error_of(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return err


# --- the single run ----------------------------------------------------------------


def test_resuming_an_epoch_zero_checkpoint_records_each_epoch_once(tmp_path):
    assert cli(train_cli, *TRAIN, "--epochs=0", f"--workdir={tmp_path}") == 0
    assert cli(train_cli, *TRAIN, "--epochs=3", "--resume", f"--workdir={tmp_path}") == 0
    assert epochs_of(tmp_path) == [0, 1, 2, 3]
    assert len(io.read_csv(tmp_path / "metrics.csv")) == 4


def test_resuming_a_diverged_run_records_each_epoch_once(tmp_path):
    args = ("--dataset=digits", "--cost=cross_entropy", "--activation=relu", "--batch_size=0",
            "--learning_rate=1e20", "--epochs=30", f"--workdir={tmp_path}")  # fmt: skip
    assert cli(train_cli, *args) == 1
    diverged = epochs_of(tmp_path)
    assert len(diverged) >= 2  # a checkpoint before the epoch that diverged
    assert cli(train_cli, *args, "--resume") == 1
    assert epochs_of(tmp_path) == diverged == list(range(len(diverged)))


@pytest.mark.parametrize(
    "damage",
    [lambda lines: lines[:2], lambda lines: [], lambda lines: lines[:1] + lines[2:], None],
    ids=["cut", "emptied", "hole", "deleted"],
)
def test_a_history_that_misses_epochs_is_named_not_resumed(tmp_path, capsys, damage):
    assert cli(train_cli, *TRAIN, "--epochs=4", f"--workdir={tmp_path}") == 0
    path = tmp_path / io.METRICS
    if damage is None:
        path.unlink()
    else:
        path.write_text("".join(damage(path.read_text().splitlines(keepends=True))))
    before = path.read_bytes() if path.exists() else None
    assert cli(train_cli, *TRAIN, "--epochs=6", "--resume", f"--workdir={tmp_path}") == 2
    err = error_of(capsys)
    assert "metrics.jsonl does not hold the history of the checkpoint's 4 epochs" in err
    assert (path.read_bytes() if path.exists() else None) == before


def test_a_history_cut_mid_line_is_named(tmp_path, capsys):
    assert cli(train_cli, *TRAIN, "--epochs=2", f"--workdir={tmp_path}") == 0
    path = tmp_path / io.METRICS
    path.write_text(path.read_text()[:-20])
    assert cli(train_cli, *TRAIN, "--epochs=3", "--resume", f"--workdir={tmp_path}") == 2
    assert "metrics.jsonl is damaged: line 3 is not a JSON record" in error_of(capsys)


def test_a_truncated_checkpoint_is_named(tmp_path, capsys):
    assert cli(train_cli, *TRAIN, "--epochs=2", f"--workdir={tmp_path}") == 0
    path = tmp_path / io.CHECKPOINT
    path.write_bytes(path.read_bytes()[:100])
    assert cli(train_cli, *TRAIN, "--epochs=3", "--resume", f"--workdir={tmp_path}") == 2
    assert "checkpoint.npz cannot be read" in error_of(capsys)


def test_fewer_epochs_on_resume_are_refused_and_the_config_kept(tmp_path, capsys):
    assert cli(train_cli, *TRAIN, "--epochs=3", f"--workdir={tmp_path}") == 0
    before = (tmp_path / io.CONFIG).read_bytes()
    assert cli(train_cli, *TRAIN, "--epochs=2", "--resume", f"--workdir={tmp_path}") == 2
    assert "--epochs: 3 there, 2 now" in error_of(capsys)
    assert (tmp_path / io.CONFIG).read_bytes() == before


def test_the_toy_experiment_never_writes_into_a_training_run(tmp_path, capsys):
    assert cli(train_cli, *TRAIN, "--epochs=1", f"--workdir={tmp_path}") == 0
    before = snapshot(tmp_path)
    assert cli(toy_cli, f"--workdir={tmp_path}") == 2
    assert "holds a train run, not a toy_descent run" in error_of(capsys)
    assert snapshot(tmp_path) == before
    assert cli(train_cli, *TRAIN, "--epochs=2", "--resume", f"--workdir={tmp_path}") == 0


def test_an_interrupt_python_swallowed_stops_the_run_at_its_next_write(tmp_path, monkeypatch):
    load = data.load_for

    def interrupted_while_loading(config):
        watchdog.request_stop()  # as the Ctrl-C handler does before its KeyboardInterrupt is lost
        return load(config)

    monkeypatch.setattr(data, "load_for", interrupted_while_loading)
    assert cli(train_cli, *TRAIN, "--epochs=3", f"--workdir={tmp_path}") == 130
    monkeypatch.setattr(data, "load_for", load)
    assert cli(train_cli, *TRAIN, "--epochs=3", "--resume", f"--workdir={tmp_path}") == 0
    assert epochs_of(tmp_path) == [0, 1, 2, 3]


# --- bad flags: an error, no traceback, no folder -------------------------------------

BAD = [
    (train_cli, ("--dataset=digits", "--learning_rate=inf"), "--learning_rate=inf"),
    (train_cli, ("--dataset=digits", "--seed=99999999999999999999"), "--seed=99999999999999999999"),
    (train_cli, ("--dataset=digits", "--momentum=nan", "--optimizer=sgd"), "--momentum=nan"),
    (minima_cli, ("--dataset=digits", "--learning_rate=inf"), "--learning_rate=inf"),
    (minima_cli, ("--dataset=digits", "--grad_tol=inf"), "--grad_tol=inf"),
    (minima_cli, ("--dataset=digits", "--negative_tol=nan"), "--negative_tol=nan"),
    (minima_cli, ("--dataset=digits", "--widths=4,4"), "--widths=4,4"),
    (minima_cli, ("--dataset=digits", "--layers=none", "--widths=4,16"), "--layers=none has none"),
    (minima_cli, ("--dataset=digits", "--seed=2147483647"), "--seed=2147483647 is out of range"),
    (minima_cli, ("--dataset=digits", "--devices=64"), "devices=64"),
    (lr_cli, ("--dataset=digits", "--learning_rates=logspace:0.1:inf:3"), "logspace:0.1:inf:3"),
    (lr_cli, ("--dataset=digits", "--learning_rates=1,1.0,1e0"), "names 1 more than once"),
    (lr_cli, ("--dataset=digits", "--range_max=inf"), "--range_max=inf"),
    (lr_cli, ("--dataset=digits", "--epochs=0"), "--epochs=0"),
    (lr_cli, ("--dataset=digits", "--lanczos_iters=0"), "--lanczos_iters=0"),
    (lr_cli, ("--dataset=digits", "--sharpness_examples=0"), "--sharpness_examples=0"),
    (lr_cli, ("--dataset=digits", "--sharpness_examples=-5"), "--sharpness_examples=-5"),
    (lr_cli, ("--dataset=digits", "--devices=64"), "devices=64"),
    (train_cli, ("--dataset=idx:/etc/hostname",), "is a file; idx: takes the folder"),
]


@pytest.mark.parametrize(
    "entry, args, says", BAD, ids=[f"{e.__name__.split('.')[-1]}:{a[-1]}" for e, a, _ in BAD]
)
def test_a_bad_value_is_one_paragraph_and_leaves_no_folder(tmp_path, capsys, entry, args, says):
    workdir = tmp_path / "run"
    assert cli(entry, *args, f"--workdir={workdir}") == 2
    assert says in error_of(capsys)
    assert not workdir.exists()


def test_an_empty_workdir_is_refused_and_nothing_is_written(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert cli(train_cli, "--dataset=digits", "--epochs=1", "--workdir=") == 2
    assert "--workdir is empty" in error_of(capsys)
    assert list(tmp_path.iterdir()) == []


# --- the studies' caches: damaged, recomputed, the same tables ------------------------

LR_TABLES = ("results.csv", "curves.csv", "stability.csv", "first_order.csv", "range_test.csv")


@pytest.fixture(scope="module")
def lr_reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("lr") / "whole"
    assert cli(lr_cli, *LR, f"--workdir={workdir}") == 0
    return workdir


@pytest.mark.parametrize(
    "damage",
    [("chunks/sweep_001.npz", lambda b: b[:200]),
     ("trace.npz", lambda b: b[: len(b) // 2]),
     ("range_test.npz", lambda b: b[: len(b) // 3])],
    ids=["chunk", "trace", "range-test"],
)  # fmt: skip
def test_a_damaged_lr_cache_is_computed_again(tmp_path, lr_reference, caplog, damage):
    name, cut = damage
    workdir = tmp_path / "damaged"
    shutil.copytree(lr_reference, workdir)
    (workdir / name).write_bytes(cut((workdir / name).read_bytes()))
    assert cli(lr_cli, *LR, "--resume", f"--workdir={workdir}") == 0
    assert f"{name} is damaged" in caplog.text
    assert tables_of(workdir, LR_TABLES) == tables_of(lr_reference, LR_TABLES)


MINIMA_TABLES = ("results.csv", "pairs.csv", "spread.csv", "ensemble.csv")


@pytest.fixture(scope="module")
def minima_reference(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("minima") / "whole"
    assert cli(minima_cli, *MINIMA, f"--workdir={workdir}") == 0
    return workdir


@pytest.mark.parametrize(
    "names", [("widths/width_5.npz", "widths/analysis_5.json"), ("widths/analysis_3.json",),
              ("surface.json",)], ids=["width", "analysis", "surface"],
)  # fmt: skip
def test_a_damaged_minima_cache_is_computed_again(tmp_path, minima_reference, caplog, names):
    workdir = tmp_path / "damaged"
    shutil.copytree(minima_reference, workdir)
    for name in names:
        (workdir / name).write_bytes((workdir / name).read_bytes()[:50])
    assert cli(minima_cli, *MINIMA, "--resume", f"--workdir={workdir}") == 0
    for name in names:
        assert f"{name} is damaged" in caplog.text
    assert tables_of(workdir, MINIMA_TABLES) == tables_of(minima_reference, MINIMA_TABLES)
    plane = json.loads((workdir / "surface.json").read_text())
    expected = json.loads((minima_reference / "surface.json").read_text())
    np.testing.assert_allclose(plane["cost"], expected["cost"], rtol=1e-6)


# --- the path a study trained on: recorded, and never mixed on resume --------------------


def test_a_resume_where_the_recorded_head_is_missing_is_refused_then_recomputed(
    tmp_path, lr_reference, capsys, caplog, monkeypatch
):
    caplog.set_level("INFO")
    recorded = io.read_json(lr_reference / io.CONFIG)["path"]
    if recorded["head"] != "native":
        pytest.skip("the native head is not available here")
    assert {r["head"] for r in io.read_csv(lr_reference / "results.csv")} == {"native"}
    workdir = tmp_path / "moved"
    shutil.copytree(lr_reference, workdir)
    before = snapshot(workdir)
    monkeypatch.setenv("GD_JAX_NATIVE_HEAD", "off")  # a machine without it
    native._library.cache_clear()
    try:
        assert cli(lr_cli, *LR, "--resume", f"--workdir={workdir}") == 2
        message = error_of(capsys)
        assert "--epoch_path=delayed --head=native (config.json)" in message
        assert "resume with --epoch_path=delayed --head=xla" in message
        assert snapshot(workdir) == before  # nothing changed
        # Named, the other head goes on, and trains again what the native head trained.
        assert cli(lr_cli, *LR, "--resume", "--head=xla", f"--workdir={workdir}") == 0
    finally:
        native._library.cache_clear()
    assert "chunks/sweep_000 was computed from other inputs" in caplog.text.replace(".npz", "")
    assert {r["head"] for r in io.read_csv(workdir / "results.csv")} == {"xla"}
    assert io.read_json(workdir / io.CONFIG)["path"] == {"epoch_path": "delayed", "head": "xla"}
    assert io.read_json(workdir / io.SUMMARY)["head"] == "xla"
    # The trace and the range test do not depend on the head: kept.
    assert "trace: already on disk, kept." in caplog.text


def test_a_study_resumed_with_the_other_head_is_that_heads_study(tmp_path, caplog):
    # One data order (--vary=init), so the delayed path and its heads train the study.
    # Its SGD endpoints trained again with the other head: everything that read them is
    # computed again, and the tables are those of a fresh run with that head.
    if native.unavailable(conftest.mlp((64, 3, 10))):
        pytest.skip("the native head is not available here")
    caplog.set_level("INFO")
    args = (*[a for a in MINIMA if not a.startswith("--widths")], "--widths=3", "--vary=init")
    first = tmp_path / "a"
    assert cli(minima_cli, *args, f"--workdir={first}") == 0
    assert io.read_json(first / io.CONFIG)["path"] == {"epoch_path": "delayed", "head": "native"}
    workdir = tmp_path / "b"
    shutil.copytree(first, workdir)
    (workdir / "widths" / "width_3.npz").unlink()
    assert cli(minima_cli, *args, "--resume", "--head=xla", f"--workdir={workdir}") == 0
    for name in ("polished_3", "analysis_3", "escape_3", "surface"):
        assert f"{name} was computed from other inputs" in kept_or_not(caplog)
    fresh = tmp_path / "fresh"
    assert cli(minima_cli, *args, "--head=xla", f"--workdir={fresh}") == 0
    names = (*MINIMA_TABLES, "polish.csv", "escape.csv")
    assert tables_of(workdir, names) == tables_of(fresh, names)
    assert {r["head"] for r in io.read_csv(workdir / "results.csv")} == {"xla"}


def kept_or_not(caplog) -> str:
    """The log, stage files named as their stages are."""
    return caplog.text.replace(".npz", "").replace(".json", "").replace("widths/", "")


def test_a_stage_is_keyed_on_what_it_read(tmp_path, minima_reference, caplog, monkeypatch):
    # Width 3 trained again to other numbers under the same key (a nudge stands in for
    # a nondeterministic machine): what read it is computed again, width 5 is kept.
    caplog.set_level("INFO")
    fit = trainer.fit

    def nudged(*args, **kwargs):
        found = fit(*args, **kwargs)
        return found._replace(params=jax.tree.map(lambda a: a * np.float32(1.001), found.params))

    monkeypatch.setattr(trainer, "fit", nudged)
    workdir = tmp_path / "b"
    shutil.copytree(minima_reference, workdir)
    (workdir / "widths" / "width_3.npz").unlink()
    assert cli(minima_cli, *MINIMA, "--resume", f"--workdir={workdir}") == 0
    log = kept_or_not(caplog)
    for name in ("polished_3", "analysis_3", "escape_3"):
        assert f"{name} was computed from other inputs" in log
    for name in ("width_5", "polished_5", "analysis_5", "surface"):
        assert f"{name}: already on disk, kept." in log


def test_a_stage_computed_again_to_the_same_numbers_keeps_what_read_it(
    tmp_path, minima_reference, caplog
):
    caplog.set_level("INFO")
    workdir = tmp_path / "b"
    shutil.copytree(minima_reference, workdir)
    (workdir / "widths" / "width_3.npz").unlink()
    assert cli(minima_cli, *MINIMA, "--resume", f"--workdir={workdir}") == 0
    for name in ("polished_3", "analysis_3", "escape_3", "surface"):
        assert f"{name}: already on disk, kept." in kept_or_not(caplog)
    assert tables_of(workdir, MINIMA_TABLES) == tables_of(minima_reference, MINIMA_TABLES)
