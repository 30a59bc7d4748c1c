"""The learning-rate study (``gd_jax.studies.lr``): its parsing, its analyses on known
answers, and its CLI."""

import json
import os
import re
import socket
import subprocess
import sys

import numpy as np
import pytest
from conftest import cli

from gd_jax import costs, io
from gd_jax.cli import lr_sweep as lr_cli
from gd_jax.errors import GdJaxError
from gd_jax.studies.lr import range_test, tables
from gd_jax.studies.lr.config import parse_learning_rates
from gd_jax.studies.lr.trace import TraceResult
from gd_jax.sweep import trainer
from gd_jax.sweep.engine import Networks

SMALL = (
    "--dataset=digits", "--layers=8", "--learning_rates=0.3,3,30", "--seeds=2", "--epochs=2",
    "--chunk_size=4", "--full_batch_steps=20", "--track_sharpness_every=10",
    "--sharpness_examples=300", "--lanczos_iters=8", "--range_steps=60",
    "--norounding_check",  # tested on its own below
)  # fmt: skip


def test_learning_rates_as_a_list_or_a_log_range():
    assert parse_learning_rates("0.1,0.3,1,3") == (0.1, 0.3, 1.0, 3.0)
    grid = parse_learning_rates("logspace:0.01:100:13")
    assert len(grid) == 13 and grid[0] == 0.01 and grid[-1] == 100.0
    assert grid[6] == pytest.approx(1.0)  # log-spaced: the middle of 1e-2..1e2 is 1
    for bad in ("", "a,b", "0.1,-1", "logspace:1:0.1:5", "logspace:0:1:5", "logspace:1:2:1"):
        with pytest.raises(GdJaxError, match="--learning_rates"):
            parse_learning_rates(bad)


def test_the_constant_output_bar():
    labels = np.repeat(np.arange(10), 7)
    # ½ Σ p(1 − p) with p = 0.1: ½ · 10 · 0.09 = 0.45; the entropy is log 10.
    assert costs.constant_cost("mse", labels, 10) == pytest.approx(0.45)
    assert costs.constant_cost("cross_entropy", labels, 10) == pytest.approx(np.log(10))
    assert costs.constant_cost("mse", np.zeros(5, int), 10) == pytest.approx(0.0)
    ok = tables.trained(np.array([0.1, 0.44, np.nan, 0.5]), 0.45)
    assert ok.tolist() == [True, False, False, False]


def test_the_stability_edge_of_known_outcomes():
    etas = np.array([3.0, 0.1, 1.0, 10.0, 30.0, 0.01])
    ok = np.array([True, True, True, False, False, False])
    accuracy = np.array([0.9, 0.5, 0.95, 0.1, 0.1, 0.1])
    edge = tables.stability_edge(etas, ok, accuracy)
    assert edge == tables.Edge(largest_trained=3.0, best=1.0, first_failed_above_best=10.0)
    none = tables.stability_edge(etas, np.zeros(6, bool), accuracy)
    assert none.largest_trained is None


def test_range_test_analysis_finds_the_landmarks_of_a_known_curve():
    etas = np.geomspace(1e-3, 1e3, 601)
    x = np.log10(etas)
    # Flat at 2 until η ~ 0.01, falls fastest at η = 0.1, bottoms out at 1, then blows up.
    cost = 1.1 - np.tanh(2 * (x + 1)) + np.where(x > 0, 10 * x**2, 0)
    found = range_test.analysis(range_test.RangeTest(etas, cost), beta=0.0)  # exact landmarks
    assert found.steepest_eta == pytest.approx(0.1, rel=0.05)
    assert found.min_eta == pytest.approx(1.0, rel=0.05)
    assert found.stopped and 1.0 < found.stop_eta < 10.0
    assert found.smoothed[found.stop_index] > 4 * found.min_cost


def test_first_order_rows_and_summary_from_a_trace():
    trace = TraceResult(
        networks=Networks(np.array([0.1, 1.0]), np.array([0, 0])),
        sample_steps=np.array([0, 5, 10]),
        cost=np.full((3, 2), 1.0),
        measured=np.array([[-0.1, -0.5], [-0.1, -0.5], [np.nan, np.nan]]),
        first_order=np.array([[-0.1, -1.0], [-0.1, -1.0], [np.nan, np.nan]]),
        second_order=np.array([[-0.1, -0.5], [-0.1, -0.5], [np.nan, np.nan]]),
        grad_norm_sq=np.ones((3, 2)),
        g_h_g=np.ones((3, 2)),
        lambda_max=np.full((3, 2), 0.5),
        lambda_min=np.full((3, 2), -0.1),
        step_cost=np.ones((10, 2)),
        diverged_step=np.array([-1, -1]),
        seconds=0.0,
    )
    rows = tables.first_order_rows(trace)
    assert len(rows) == 4  # 2 networks × 2 steps (the last sample takes no step)
    first = tables.first_order_at_init(rows)
    assert [r["ratio_to_first_order"] for r in first] == [1.0, 0.5]
    assert [r["ratio_to_second_order"] for r in first] == [1.0, 1.0]


def test_the_cli_writes_every_table_and_plot(tmp_path):
    assert cli(lr_cli, *SMALL, f"--workdir={tmp_path}") == 0
    for name in (
        "config.json", "results.csv", "curves.csv", "stability.csv", "first_order.csv",
        "range_test.csv", "summary.json", "report.md", "sweep_curves.png", "sweep_final.png",
        "first_order.png", "sharpness.png", "range_test.png",
    ):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0, name
    rows = io.read_csv(tmp_path / "results.csv")
    assert len(rows) == 6
    columns = "learning_rate seed final_train_cost final_test_cost final_test_accuracy"
    columns += " best_test_accuracy diverged diverged_epoch trained"
    assert set(columns.split()) <= rows[0].keys()
    assert {(float(r["learning_rate"]), int(r["seed"])) for r in rows} == {
        (eta, seed) for eta in (0.3, 3.0, 30.0) for seed in (0, 1)
    }
    curves = io.read_csv(tmp_path / "curves.csv")
    assert len(curves) == 6 * 3  # epochs 0, 1, 2
    # Scored before training and after the last epoch (--eval_every=5 > --epochs=2);
    # every trained epoch has its average training cost.
    scored = {int(r["epoch"]) for r in curves if r["test_accuracy"] not in ("", None)}
    assert scored == {0, 2}
    assert all(r["avg_train_cost"] not in ("", None) for r in curves if int(r["epoch"]) > 0)
    assert all(r["final_grad_norm"] not in ("", None) for r in rows)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best_learning_rate"] in (0.3, 3.0, 30.0)
    assert [s["seed"] for s in summary["stability"]] == [0, 1]
    assert summary["stability"][0]["lambda_max_init"] > 0
    report = (tmp_path / "report.md").read_text()
    for png in ("sweep_curves", "sweep_final", "first_order", "sharpness", "range_test"):
        assert f"]({png}.png)" in report
    assert "Stability, per seed" in report and "2/λ_max" in report


def test_a_killed_sweep_resumes_computing_only_what_is_missing(tmp_path, monkeypatch):
    assert cli(lr_cli, *SMALL, "--nofirst_order_check", "--track_sharpness_every=0",
               "--norange_test", "--norounding_check",
               f"--workdir={tmp_path / 'whole'}") == 0  # fmt: skip
    fit = trainer.fit
    calls = []

    def killed_on_the_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return fit(*args, **kwargs)

    args = (*SMALL, "--nofirst_order_check", "--track_sharpness_every=0", "--norange_test",
            "--norounding_check")  # fmt: skip
    workdir = tmp_path / "killed"
    monkeypatch.setattr(trainer, "fit", killed_on_the_second_chunk)
    assert cli(lr_cli, *args, f"--workdir={workdir}") == 130
    assert (workdir / "chunks" / "sweep_000.npz").exists()
    assert not (workdir / "chunks" / "sweep_001.npz").exists()
    calls.clear()
    monkeypatch.setattr(trainer, "fit", lambda *a, **k: (calls.append(1), fit(*a, **k))[1])
    assert cli(lr_cli, *args, "--resume", f"--workdir={workdir}") == 0
    assert len(calls) == 1  # only the missing chunk
    assert io.read_csv(workdir / "results.csv") == io.read_csv(tmp_path / "whole" / "results.csv")


def test_bad_sweep_flags_are_clear_errors(tmp_path, capsys):
    assert cli(lr_cli, "--dataset=digits", "--learning_rates=fast", f"--workdir={tmp_path}/a") == 2
    assert "--learning_rates='fast'" in capsys.readouterr().err
    assert cli(lr_cli, "--dataset=digits", "--seeds=0", f"--workdir={tmp_path}/b") == 2
    assert "--seeds=0" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_joined_by_jax_distributed_give_one_processs_results(tmp_path):
    args = [sys.executable, "-m", "experiments.lr_sweep", "--dataset=digits", "--layers=8",
            "--learning_rates=0.3,3,30", "--seeds=3", "--epochs=2", "--chunk_size=9",
            "--full_batch_steps=0", "--norange_test", "--norounding_check"]  # fmt: skip
    # The native head runs on one device only: both runs take XLA's head, so that they
    # compare the same arithmetic, split over one process or two.
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "GD_JAX_NATIVE_HEAD": "0"}
    one = subprocess.run([*args, f"--workdir={tmp_path / 'one'}"], env=env, capture_output=True,
                         timeout=300)  # fmt: skip
    assert one.returncode == 0, one.stderr[-2000:]
    joined = [*args, "--num_processes=2", f"--coordinator_address=127.0.0.1:{free_port()}"]
    # Each process is given its own folder: only process 0 may write one.
    procs = [
        subprocess.Popen(
            [*joined, f"--process_id={i}", f"--workdir={tmp_path / f'two_{i}'}"],
            env=env,
            stderr=subprocess.PIPE,
        )
        for i in (0, 1)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    assert not (tmp_path / "two_1").exists()
    # The processes joined: process 0 saw both processes' devices, and the networks
    # were sharded over them.
    assert len(json.loads((tmp_path / "one" / io.CONFIG).read_text())["devices"]) == 1
    written = json.loads((tmp_path / "two_0" / io.CONFIG).read_text())
    assert len(written["devices"]) == 2 and "--process_id=0" in written["command"]
    mine, theirs = (io.read_csv(tmp_path / d / "results.csv") for d in ("one", "two_0"))
    assert [(r["learning_rate"], r["seed"]) for r in mine] == [
        (r["learning_rate"], r["seed"]) for r in theirs
    ]
    for a, b in zip(mine, theirs, strict=True):
        for key, value in a.items():
            if value in ("", "True", "False") or key in ("epoch_path", "head"):
                assert b[key] == value, key
            else:  # the shards' reductions may round differently in the last bits
                assert float(b[key]) == pytest.approx(float(value), rel=1e-5), key


def test_a_simulated_slurm_job_joins_with_no_flags(tmp_path):
    """srun's environment alone (the variables JAX reads) joins the two processes."""
    args = [sys.executable, "-m", "experiments.lr_sweep", "--dataset=digits", "--layers=8",
            "--learning_rates=0.3,3,30", "--seeds=3", "--epochs=2", "--chunk_size=9",
            "--full_batch_steps=0", "--norange_test", "--norounding_check"]  # fmt: skip
    port = str(free_port())
    procs = []
    for rank in (0, 1):
        env = {**os.environ, "JAX_PLATFORMS": "cpu", "SLURM_JOB_ID": "4242",
               "SLURM_STEP_NODELIST": "localhost", "SLURM_NTASKS": "2",
               "SLURM_PROCID": str(rank), "SLURM_LOCALID": str(rank),
               "JAX_COORDINATOR_PORT": port}  # fmt: skip
        workdir = tmp_path / f"rank_{rank}"
        procs.append(
            subprocess.Popen([*args, f"--workdir={workdir}"], env=env, stderr=subprocess.PIPE)
        )
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-2000:]
    assert not (tmp_path / "rank_1").exists()  # only process 0 writes
    written = json.loads((tmp_path / "rank_0" / io.CONFIG).read_text())
    assert len(written["devices"]) == 2  # both processes' devices: they joined
    rows = io.read_csv(tmp_path / "rank_0" / "results.csv")
    assert [(float(r["learning_rate"]), int(r["seed"])) for r in rows] == [
        (eta, seed) for eta in (0.3, 3.0, 30.0) for seed in (0, 1, 2)
    ]


def test_a_partial_slurm_environment_runs_alone_and_says_why(tmp_path, monkeypatch, caplog):
    from gd_jax.sweep import mesh

    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    for name in ("SLURM_STEP_NODELIST", "SLURM_PROCID", "SLURM_LOCALID", "OMPI_MCA_orte_hnp_uri"):
        monkeypatch.delenv(name, raising=False)
    assert mesh.cluster_processes() is None
    assert mesh.join() == 1
    assert "SLURM_STEP_NODELIST, SLURM_PROCID, SLURM_LOCALID not" in caplog.text
    monkeypatch.setenv("SLURM_STEP_NODELIST", "localhost")
    monkeypatch.setenv("SLURM_PROCID", "0")
    monkeypatch.setenv("SLURM_LOCALID", "0")
    assert mesh.cluster_processes() == ("Slurm", 4)
    monkeypatch.setenv("SLURM_NTASKS", "1")
    assert mesh.join() == 1  # a one-task step has nothing to join
    assert mesh.join(num_processes=1) == 1


def test_the_trace_estimate_counts_its_work():
    from gd_jax.studies.lr.config import LrConfig
    from gd_jax.studies.lr.trace import estimate as trace_estimate

    examples = {"train": 1000, "eval": 1000}
    study = LrConfig(full_batch_steps=100, track_sharpness_every=0)
    one = trace_estimate(study, examples, 1.0, networks=10, per_chunk=10)
    # 100 gradients (3 passes each) and 21 samples (one every 5 steps, 10 passes each) of
    # 1,000 examples, against an evaluation of 4 × 1,000 + 1,000 passes that took 1 s.
    assert one == pytest.approx((300 + 210) / 5)
    assert trace_estimate(study, examples, 1.0, networks=40, per_chunk=10) == 4 * one
    sharp = LrConfig(full_batch_steps=100, track_sharpness_every=10, sharpness_examples=500)
    assert trace_estimate(sharp, examples, 1.0, networks=10, per_chunk=10) > one


def test_the_progress_line_counts_the_trace_still_to_come(tmp_path, caplog, monkeypatch):
    from gd_jax.studies.lr import run as lr_run

    caplog.set_level("INFO")
    monkeypatch.setattr(lr_run, "trace_estimate", lambda *a, **k: 3600.0)
    assert cli(lr_cli, *SMALL, "--rounding_check", "--norange_test", f"--workdir={tmp_path}") == 0
    lines = [r.getMessage() for r in caplog.records if "ETA" in r.getMessage()]
    last_of_sweep = [line for line in lines if line.startswith("sweep chunk 2/2 epoch 2/2")]
    # The trace's hour still to come, and the rounding check's few seconds.
    assert len(last_of_sweep) == 1 and re.search(r"ETA 60m0\ds$", last_of_sweep[0])
    # Every network trained again, nudged: 6 twins in chunks of 4.
    assert lines[-1].startswith("rounding chunk 2/2 epoch 2/2")


def test_rounding_rows_flag_a_change_past_the_limit():
    from gd_jax.sweep.results import SweepResult

    rows = [
        tables.NetworkResult(
            learning_rate=eta, seed=0, final_train_cost=0.1, final_train_accuracy=None,
            final_test_cost=None, final_test_accuracy=None, best_test_accuracy=None,
            final_grad_norm=None, diverged=False, diverged_epoch=None, trained=True,
            epoch_path="delayed", head="xla",
        )
        for eta in (1.0, 10.0, 30.0)
    ]  # fmt: skip
    twin_cost = np.array([[np.nan, np.nan, np.nan], [0.1 * (1 + 1e-6), 0.1 * 1.5, np.nan]])
    nudged = SweepResult(
        networks=Networks(np.array([1.0, 10.0, 30.0]), np.zeros(3, int)),
        epochs=np.array([0, 1]), metrics={"train_cost": twin_cost}, params=[],
        diverged_step=np.full(3, -1), diverged_epoch=np.full(3, -1),
        converged_epoch=np.full(3, -1), seconds_per_epoch=1.0, compile_seconds=1.0,
        epoch_path=np.full(3, "delayed"), head=np.full(3, "xla"), opt_state=[],
        step=np.full(3, 10),
    )  # fmt: skip
    found = tables.rounding_rows(rows, nudged)
    assert [r.sensitive_to_rounding for r in found] == [False, True, True]
    assert found[0].relative_change == pytest.approx(1e-6, rel=1e-6)
    assert found[1].relative_change == pytest.approx(0.5)
    assert found[2].relative_change is None  # the twin failed where the run did not


def test_a_nudge_of_rounding_size_is_flagged_where_training_is_chaotic(tmp_path):
    # Digits, batch 10: at η = 10 a 1e-7 difference grows about 300-fold an epoch, at
    # η = 1 it barely grows.
    args = ("--dataset=digits", "--layers=16,16", "--learning_rates=1,10", "--seeds=1",
            "--epochs=8", "--full_batch_steps=0", "--norange_test", "--notensorboard")  # fmt: skip
    assert cli(lr_cli, *args, f"--workdir={tmp_path}") == 0
    rows = {float(r["learning_rate"]): r for r in io.read_csv(tmp_path / "rounding.csv")}
    assert rows[1.0]["sensitive_to_rounding"] == "False"
    assert float(rows[1.0]["relative_change"]) < 1e-5
    assert rows[10.0]["sensitive_to_rounding"] == "True"
    summary = json.loads((tmp_path / io.SUMMARY).read_text())
    assert [r["learning_rate"] for r in summary["sensitive_to_rounding"]] == [10.0]
    assert "**Sensitive to rounding**" in (tmp_path / "report.md").read_text()


def test_a_network_does_not_depend_on_its_neighbours_where_training_is_not_chaotic():
    from gd_jax import data
    from gd_jax.config import TrainConfig

    config = TrainConfig(dataset="digits", layers=(16, 16), epochs=5)
    dataset = data.load_for(config)
    model_config = config.model_config(dataset.train.x.shape[1], dataset.num_classes)
    train_xy = data.on_device(dataset.train)
    evals = {"test": data.on_device(dataset.test)}
    networks = Networks(np.array([0.5, 3.0, 1.0]), np.array([0, 1, 2]))
    together = trainer.fit(networks, model_config, config, train_xy, evals)
    for i in range(3):
        alone = trainer.fit(networks.take([i]), model_config, config, train_xy, evals)
        np.testing.assert_allclose(
            alone.metrics["train_cost"][-1, 0], together.metrics["train_cost"][-1, i], rtol=1e-6
        )
