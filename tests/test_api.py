"""The Python front door: ``gd_jax.fit`` trains in memory on exactly the CLI's path."""

import jax
import numpy as np
from conftest import assert_trees_equal, cli

import gd_jax
from gd_jax import io, optim, train, watchdog
from gd_jax.cli import train as train_cli

FLAGS = ("--dataset=digits", "--epochs=2", "--train_size=300", "--layers=10")


def test_fit_gives_the_numbers_of_experiments_train(tmp_path, monkeypatch):
    watched, enter = [], watchdog.Watchdog.__enter__
    record = lambda self: watched.append(self) or enter(self)
    monkeypatch.setattr(watchdog.Watchdog, "__enter__", record)
    config = gd_jax.TrainConfig(dataset="digits", epochs=2, train_size=300, layers=(10,))
    monkeypatch.chdir(tmp_path)
    fitted = gd_jax.fit(config)
    assert list(tmp_path.iterdir()) == [] and watched == []  # no folder, no watchdog
    assert cli(train_cli, *FLAGS, f"--workdir={tmp_path / 'run'}") == 0
    assert len(watched) == 1  # the entry point arms it

    tx = optim.make("gd", config.learning_rate)
    like = train.init_state(fitted.params, tx)
    saved, meta = io.load_checkpoint(tmp_path / "run" / io.CHECKPOINT, like=like)
    assert meta["epoch"] == 2
    assert_trees_equal(fitted.params, saved.params)
    timing = {"seconds", "compile_seconds"}
    for ours, theirs in zip(fitted.history, io.read_jsonl(tmp_path / "run" / io.METRICS),
                            strict=True):  # fmt: skip
        assert {k: v for k, v in ours.items() if k not in timing} == {
            k: v for k, v in theirs.items() if k not in timing
        }
    summary = io.read_json(tmp_path / "run" / io.SUMMARY)
    for key in ("final_train_cost", "final_test_accuracy", "epoch_path", "head", "steps"):
        assert fitted.summary[key] == summary[key]
    assert fitted.summary["epoch_path"] == "delayed"  # on a CPU, as the CLI's


def test_load_takes_a_config_or_a_name():
    digits = gd_jax.load("digits")
    assert digits.train.x.shape == (1347, 64) and digits.num_classes == 10
    held = gd_jax.load(gd_jax.TrainConfig(dataset="digits", validation_size=100))
    assert len(held.validation.labels) == 100 and len(held.train.labels) == 1247
    np.testing.assert_array_equal(held.train.x, digits.train.x[:1247])


def test_fit_takes_data_already_loaded():
    digits = gd_jax.load("digits")
    config = gd_jax.TrainConfig(dataset="digits", epochs=1, layers=(8,), optimizer="adam",
                                learning_rate=0.01)  # fmt: skip
    fitted = gd_jax.fit(config, data=digits)
    assert fitted.summary["epoch_path"] == "plain" and fitted.summary["status"] == "completed"
    assert [m["epoch"] for m in fitted.history] == [0, 1]
    assert jax.tree.structure(fitted.params) == jax.tree.structure([(0, 0), (0, 0)])
