"""TensorBoard event files: written beside the records, read back to the same numbers."""

import struct
from pathlib import Path

import pytest
from conftest import cli
from tensorboardX.proto.event_pb2 import Event

from gd_jax import io
from gd_jax.cli import lr_sweep as lr_cli
from gd_jax.cli import train as train_cli


def scalars(logdir: Path) -> dict[str, dict[int, float]]:
    """Every scalar of the event files in ``logdir``: tag -> {step: value}."""
    found: dict[str, dict[int, float]] = {}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        raw = path.read_bytes()
        at = 0
        while at < len(raw):  # TFRecord: length, its crc, the record, its crc
            (length,) = struct.unpack("<Q", raw[at : at + 8])
            event = Event.FromString(raw[at + 12 : at + 12 + length])
            at += 16 + length
            if event.file_version:
                continue
            if event.session_log.status:
                continue
            for value in event.summary.value:
                found.setdefault(value.tag, {})[event.step] = value.simple_value
    return found


QUICK = ("--dataset=digits", "--layers=8", "--batch_size=10")


def test_a_run_writes_each_epochs_scalars_and_they_read_back(tmp_path):
    assert cli(train_cli, *QUICK, "--epochs=3", f"--workdir={tmp_path}") == 0
    found = scalars(tmp_path / "tensorboard")
    history = io.read_jsonl(tmp_path / io.METRICS)
    for key in ("train_cost", "test_accuracy", "grad_norm", "avg_train_cost", "learning_rate"):
        expected = {m["epoch"]: m[key] for m in history if m[key] is not None}
        assert found[key].keys() == expected.keys(), key
        for epoch, value in expected.items():
            assert found[key][epoch] == pytest.approx(value, rel=1e-6), (key, epoch)
    assert "diverged" not in found and "epoch" not in found


def test_a_resumed_run_continues_its_curves(tmp_path):
    assert cli(train_cli, *QUICK, "--epochs=2", f"--workdir={tmp_path}") == 0
    assert cli(train_cli, *QUICK, "--epochs=4", "--resume", f"--workdir={tmp_path}") == 0
    assert sorted(scalars(tmp_path / "tensorboard")["train_cost"]) == [0, 1, 2, 3, 4]


def test_no_event_files_when_asked_not_to(tmp_path):
    assert cli(train_cli, *QUICK, "--epochs=1", "--notensorboard", f"--workdir={tmp_path}") == 0
    assert not (tmp_path / "tensorboard").exists()


def test_a_sweep_writes_one_run_per_network(tmp_path):
    args = ("--dataset=digits", "--layers=8", "--learning_rates=0.5,3", "--seeds=2",
            "--epochs=2", "--full_batch_steps=0", "--norange_test")  # fmt: skip
    assert cli(lr_cli, *args, f"--workdir={tmp_path}") == 0
    runs = sorted(p.name for p in (tmp_path / "tensorboard").iterdir())
    assert runs == ["eta=0.5,seed=0", "eta=0.5,seed=1", "eta=3,seed=0", "eta=3,seed=1"]
    curves = io.read_csv(tmp_path / "curves.csv")
    for row in curves:
        name = f"eta={float(row['learning_rate']):g},seed={row['seed']}"
        written, epoch = scalars(tmp_path / "tensorboard" / name), int(row["epoch"])
        if row["train_cost"] in ("", None):  # an epoch not scored (--eval_every=5)
            assert epoch == 1 and epoch not in written["train_cost"]
        else:
            assert written["train_cost"][epoch] == pytest.approx(float(row["train_cost"]), rel=1e-6)
        if epoch:  # every trained epoch has its average cost
            cost = float(row["avg_train_cost"])
            assert written["avg_train_cost"][epoch] == pytest.approx(cost, rel=1e-6)


def test_runs_of_a_sweep_skip_what_a_stopped_network_did_not_record(tmp_path):
    import numpy as np

    from gd_jax.report import tensorboard

    metrics = {"train_cost": np.array([[0.5, 0.4], [0.3, np.nan]])}  # network 1 diverged
    runs = tensorboard.sweep_runs(["a", "b"], np.array([0, 1]), metrics)
    tensorboard.write_runs(tmp_path, runs)
    assert scalars(tmp_path / "tensorboard" / "a")["train_cost"] == pytest.approx({0: 0.5, 1: 0.3})
    assert scalars(tmp_path / "tensorboard" / "b")["train_cost"] == pytest.approx({0: 0.4})
