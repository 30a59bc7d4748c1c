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
                if not value.HasField("metadata"):  # the HParams' protos are not scalars
                    found.setdefault(value.tag, {})[event.step] = value.simple_value
    return found


def hparams(logdir: Path) -> dict:
    """What the HParams view reads from one run: its hyperparameters (session start),
    the metrics the experiment declares, and whether the session ended."""
    from tensorboardX.proto.plugin_hparams_pb2 import HParamsPluginData

    found = {"hparams": {}, "metrics": [], "ended": False}
    for path in sorted(logdir.glob("events.out.tfevents.*")):
        raw, at = path.read_bytes(), 0
        while at < len(raw):
            (length,) = struct.unpack("<Q", raw[at : at + 8])
            event = Event.FromString(raw[at + 12 : at + 12 + length])
            at += 16 + length
            for value in event.summary.value:
                if value.metadata.plugin_data.plugin_name != "hparams":
                    continue
                data = HParamsPluginData.FromString(value.metadata.plugin_data.content)
                if data.HasField("session_start_info"):
                    for name, v in data.session_start_info.hparams.items():
                        kind = v.WhichOneof("kind")
                        found["hparams"][name] = getattr(v, kind)
                elif data.HasField("experiment"):
                    found["metrics"] = [m.name.tag for m in data.experiment.metric_infos]
                elif data.HasField("session_end_info"):
                    found["ended"] = True
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


def test_a_run_is_in_the_hparams_view_with_its_final_metrics(tmp_path):
    assert cli(train_cli, *QUICK, "--epochs=3", "--learning_rate=0.7", f"--workdir={tmp_path}") == 0
    logdir = tmp_path / "tensorboard"
    found, last = hparams(logdir), io.read_jsonl(tmp_path / io.METRICS)[-1]
    assert found["hparams"]["learning_rate"] == 0.7 and found["hparams"]["layers"] == "8"
    assert found["hparams"]["batch_size"] == 10 and found["ended"]
    assert "final/test_accuracy" in found["metrics"]
    final = scalars(logdir)["final/test_accuracy"]
    assert final == {3: pytest.approx(last["test_accuracy"], rel=1e-6)}


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


def test_each_chunk_of_a_sweep_is_in_tensorboard_as_it_ends_with_its_hparams(tmp_path, monkeypatch):
    # The second chunk fails: the first chunk's networks are there already, each with
    # its η and seed and its final accuracy, as results.csv would have them.
    from gd_jax.studies.lr import stages

    train_chunk, calls = stages.train_chunk, []

    def second_fails(chunk, after=None):
        calls.append(chunk)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return train_chunk(chunk, after)

    monkeypatch.setattr(stages, "train_chunk", second_fails)
    args = ("--dataset=digits", "--layers=8", "--learning_rates=0.5,3", "--seeds=2",
            "--chunk_size=2", "--epochs=2", "--full_batch_steps=0", "--norange_test",
            "--norounding_check")  # fmt: skip
    assert cli(lr_cli, *args, f"--workdir={tmp_path}") != 0
    runs = sorted(p.name for p in (tmp_path / "tensorboard").iterdir())
    assert runs == ["eta=0.5,seed=0", "eta=0.5,seed=1"]
    for seed in (0, 1):
        found = hparams(tmp_path / "tensorboard" / f"eta=0.5,seed={seed}")
        assert found["hparams"]["learning_rate"] == 0.5 and found["hparams"]["seed"] == seed
        assert found["ended"] and "final/test_accuracy" in found["metrics"]
