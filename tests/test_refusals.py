"""Bad input that used to crash, hang or pass silently: each is one paragraph naming its
flag (``GdJaxError.field``), and nothing is written in the run folder."""

import gzip
import logging
import math
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import cli, mlp

from gd_jax import data, memory, model, train
from gd_jax.cli import local_minima as minima_cli
from gd_jax.cli import lr_sweep as lr_cli
from gd_jax.cli import train as train_cli
from gd_jax.config import TrainConfig
from gd_jax.errors import GdJaxError
from gd_jax.fast.paths import Path
from gd_jax.report import tensorboard
from gd_jax.studies.lr.config import LrConfig, parse_learning_rates, show_floats
from gd_jax.studies.minima import pairs
from gd_jax.studies.minima.config import MinimaConfig, check_cost
from gd_jax.studies.minima.context import Width


def test_network_bytes_is_the_documented_formula():
    # 2-3-1: P = 3·3 + 4·1 = 13 parameters, U = 3 + 1 = 4 units; on 5 examples
    # COPIES · 4 · (5·4 + 13) bytes.
    assert memory.network_bytes((2, 3, 1), 5) == memory.COPIES * 4 * (5 * 4 + 13)
    assert memory.chunk_for((2, 3, 1), 5, 2**20 * memory.COPIES * 4 * 33 / 2**30) == 2**20


@pytest.mark.parametrize("entry", [train_cli, lr_cli], ids=["train", "lr_sweep"])
def test_a_network_too_large_for_memory_is_refused_before_the_folder(entry, tmp_path, capsys):
    workdir = tmp_path / "run"
    args = ("--dataset=digits", "--layers=100000,100000", f"--workdir={workdir}")
    tic = time.perf_counter()
    assert cli(entry, *args) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --layers=100000,100000") and err.count("\n") == 1
    # The single run has no --memory_budget: the machine's memory is its budget.
    budget = ("available memory", "free memory") if entry is train_cli else ("--memory_budget",)
    assert "GiB" in err and any(b in err for b in budget)
    assert not workdir.exists()
    assert time.perf_counter() - tic < 20  # refused, not compiled


def test_the_widest_width_counts_against_the_budget():
    config = TrainConfig(dataset="digits")
    with pytest.raises(GdJaxError, match=r"--widths=4,100000 makes a 64-100000-100000-10") as e:
        data.load_for(config, widths=(4, 100000), memory_budget=2.0)
    assert e.value.field == "widths" and "2.0 GiB of --memory_budget=2" in str(e.value)
    data.load_for(config, widths=(4, 16), memory_budget=2.0)  # fits


def test_a_budget_under_one_gib_is_named_with_its_digits():
    config = TrainConfig(dataset="digits")
    with pytest.raises(GdJaxError) as e:
        data.load_for(config, widths=(4, 2000), memory_budget=0.015)
    # Not "needs about 0.0 GiB ... more than the 0.0 GiB".
    assert "more than the 0.015 GiB of --memory_budget=0.015" in str(e.value)
    assert "about 0.0 GiB" not in str(e.value)


@pytest.mark.parametrize("value", [math.nan, math.inf, 0.0, -1.0, "nan"])
def test_the_memory_budget_is_a_finite_positive_number(value):
    with pytest.raises(GdJaxError, match=r"--memory_budget=.* finite positive") as e:
        memory.check_budget(value)
    assert e.value.field == "memory_budget"
    assert memory.check_budget(0.5) == 0.5


@pytest.mark.parametrize("entry", [lr_cli, minima_cli], ids=["lr_sweep", "local_minima"])
@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_a_bad_memory_budget_is_refused_by_the_studies(entry, value, tmp_path, capsys):
    workdir = tmp_path / "run"
    assert cli(entry, "--dataset=digits", f"--memory_budget={value}", f"--workdir={workdir}") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --memory_budget=") and "Traceback" not in err
    assert not workdir.exists()


def test_curves_train_on_a_training_set_smaller_than_their_batch():
    n = pairs.CURVE_BATCH - 1
    model_config = mlp((6, 3, 4))
    x = jax.random.uniform(jax.random.key(0), (n, 6))
    labels = jnp.arange(n) % 4
    ends = [model.init_params(jax.random.key(k), model_config.sizes) for k in range(3)]
    study = MinimaConfig(curve_steps=2, path_points=3)
    evaluate = train.make_evaluate(model_config)
    context = Width(model_config, TrainConfig(), study, (x, labels), (x, labels),
                    bar=1.0, devices=None, budget=1.0, chunk=2,
                    path=Path("plain", "xla", "--epoch_path=plain"))  # fmt: skip
    ((naive, matched),) = pairs.fit_curves(context, [tuple(ends)], evaluate)
    assert naive.shape == matched.shape == (3,)
    assert np.all(np.isfinite(naive)) and np.all(np.isfinite(matched))


def test_the_study_cost_is_logged_before_the_work(caplog):
    dataset = data.load("digits")
    study = MinimaConfig(widths=(4, 16), seeds=8)
    with caplog.at_level(logging.INFO, logger="absl"):
        cost = check_cost(TrainConfig(dataset="digits"), study, dataset, memory_budget=2.0)
    # 64-4-4-10: 65·4 + 5·4 + 5·10 = 330; 64-16-16-10: 65·16 + 17·16 + 17·10 = 1,482.
    assert cost.networks == 16 and cost.params == (330, 1482) and cost.widest == 16
    assert cost.stacked_gib == pytest.approx(8 * 4 * 1482 / 2**30)
    assert "2 widths × 8 seeds = 16 networks of 330/1,482 parameters" in caplog.text


def test_seeds_whose_parameters_cannot_fit_are_refused():
    dataset = data.load("digits")
    study = MinimaConfig(widths=(4, 16, 64), seeds=100000)
    with pytest.raises(GdJaxError, match=r"--seeds=100000 with --widths=4,16,64") as e:
        check_cost(TrainConfig(dataset="digits"), study, dataset, memory_budget=2.0)
    # 64-64-64-10 has 8,970 parameters: 2 GiB holds 2·2³⁰ // (4·8,970) of them.
    assert e.value.field == "seeds" and f"--seeds={2 * 2**30 // (4 * 8970)} " in str(e.value)
    check_cost(TrainConfig(dataset="digits"), study, dataset, memory_budget=2.0, devices=2)


def _idx(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_a_training_set_of_one_class_is_refused(tmp_path, capsys):
    rng = np.random.default_rng(0)
    folder = tmp_path / "idx"
    folder.mkdir()
    for prefix, n in (("train", 12), ("t10k", 5)):
        images = rng.integers(0, 256, (n, 4, 4))
        labels = np.zeros(n) if prefix == "train" else np.arange(n)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx(images, 2051)))
        (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(_idx(labels, 2049))
    with pytest.raises(GdJaxError, match="has only class 0 in its training set") as e:
        data.load(f"idx:{folder}")
    assert e.value.field == "dataset"
    workdir = tmp_path / "run"
    assert cli(train_cli, f"--dataset=idx:{folder}", f"--workdir={workdir}") == 2
    assert "--dataset=idx:" in capsys.readouterr().err and not workdir.exists()


def test_a_train_size_that_leaves_one_class_is_refused():
    with pytest.raises(GdJaxError, match="--train_size") as e:
        data.load("digits", train_size=1)
    assert e.value.field == "train_size"
    assert len(np.unique(data.load("digits", train_size=20).train.labels)) > 1


def test_a_fine_log_range_keeps_every_value():
    etas = parse_learning_rates("logspace:1:2:2000")
    assert len(set(etas)) == 2000 and etas == tuple(sorted(etas))
    assert etas[0] == 1.0 and etas[-1] == 2.0
    assert LrConfig(learning_rates=etas).learning_rates == etas
    assert parse_learning_rates(show_floats(etas)) == etas  # the flag's spelling is exact
    # A coarse range keeps its four digits, so the default grid is unchanged.
    assert parse_learning_rates("logspace:0.01:100:13")[1] == 0.02154


def test_duplicate_learning_rates_are_found_fast_and_told_briefly():
    etas = tuple(float(v) for v in np.repeat(np.arange(1, 20001), 2))
    tic = time.perf_counter()
    with pytest.raises(
        GdJaxError, match=r"names 20,000 values more than once \(1,2,3,4,5 and 19,995 more\)"
    ) as e:
        LrConfig(learning_rates=etas)
    assert time.perf_counter() - tic < 1
    assert e.value.field == "learning_rates" and len(str(e.value)) < 300


def test_network_names_are_distinct_however_close_the_learning_rates():
    etas = [0.1, 0.1000001, 0.1000002, 3.0, 0.1]
    names = tensorboard.network_names(etas, [0, 0, 0, 0, 1])
    assert len(set(names)) == len(names)
    assert names[0] == "eta=0.1,seed=0" and names[1] == "eta=0.1000001,seed=0"
    assert names[3] == "eta=3,seed=0" and names[4] == "eta=0.1,seed=1"
    # Well separated η keep %g's spelling.
    assert tensorboard.network_names([0.01, 0.02154], [0, 0]) == [
        "eta=0.01,seed=0",
        "eta=0.02154,seed=0",
    ]
    # Past 16 digits each name spells its η exactly.
    close = tensorboard.network_names([1.0, 1.0 + 2**-52], [0, 0])
    assert close == ["eta=1.0,seed=0", "eta=1.0000000000000002,seed=0"]


def test_a_missing_checkpoint_beside_recorded_epochs_is_refused_and_nothing_changes(
    tmp_path, capsys
):
    from conftest import cli, snapshot

    from gd_jax.cli import train as train_cli

    args = ("--dataset=digits", "--layers=8", "--epochs=2", "--notensorboard")
    assert cli(train_cli, *args, f"--workdir={tmp_path}") == 0
    (tmp_path / "checkpoint.npz").unlink()
    before = snapshot(tmp_path)
    capsys.readouterr()
    assert cli(train_cli, *args, "--epochs=3", "--resume", f"--workdir={tmp_path}") == 2
    assert "records 2 trained epochs, but" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_scoring_every_zero_epochs_is_refused():
    with pytest.raises(GdJaxError, match="--eval_every=0") as caught:
        LrConfig(eval_every=0)
    assert caught.value.field == "eval_every"
