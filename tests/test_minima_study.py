"""The local-minima study (``gd_jax.studies.minima``): certification on known critical
points, tables, the CLI."""

import json

import jax
import jax.numpy as jnp
import pytest
from conftest import cli

from experiments import local_minima as minima_cli
from gd_jax import curvature, io
from gd_jax.errors import GdJaxError
from gd_jax.studies.minima import analysis, tables
from gd_jax.studies.minima import run as minima_run
from gd_jax.studies.minima.config import parse_widths
from gd_jax.sweep import trainer

SMALL = (
    "--dataset=digits", "--layers=8", "--widths=3,6", "--seeds=3", "--epochs=3",
    "--lanczos_iters=8", "--max_pairs=2", "--path_points=5", "--train_size=400",
)  # fmt: skip


def certify(f, point):
    """Classifies a point of f(v) with the study's own tools."""
    v = jnp.asarray(point, jnp.float32)
    grad_norm = float(jnp.linalg.norm(jax.grad(f)(v)))
    low, high = curvature.extreme_eigenvalues(lambda p: f(p), v, key=jax.random.key(0), num_iters=4)
    kw = {"grad_tol": 1e-3, "negative_tol": 1e-2, "bar": 1.0}
    return analysis.classify(grad_norm, float(low), float(high), float(f(v)), **kw)


def test_certification_of_known_critical_points():
    bowl = lambda v: v[0] ** 2 + v[1] ** 2
    saddle = lambda v: v[0] ** 2 - v[1] ** 2
    assert certify(bowl, [0.0, 0.0]) == analysis.MINIMUM
    assert certify(saddle, [0.0, 0.0]) == analysis.SADDLE
    assert certify(bowl, [0.5, 0.0]) == analysis.UNCONVERGED
    assert (
        certify(lambda v: 2.0 + bowl(v), [0.0, 0.0]) == analysis.PLATEAU
    )  # no better than the bar
    flat_ish = lambda v: v[0] ** 2 - 1e-4 * v[1] ** 2  # negative, but not clearly
    assert certify(flat_ish, [0.0, 0.0]) == analysis.MINIMUM


def test_spread_of_known_endpoints():
    rows = [
        {"width": 4, "num_params": 10, "final_train_cost": c, "final_test_cost": 2 * c,
         "final_test_accuracy": a, "classification": k}
        for c, a, k in [(0.1, 0.9, "minimum"), (0.2, 0.8, "saddle"), (0.3, 0.7, "minimum"),
                        (0.4, 0.6, "unconverged")]
    ]  # fmt: skip
    (row,) = tables.spread_rows(rows)
    assert row["test_accuracy_range"] == pytest.approx(0.3)
    assert row["test_accuracy_mean"] == pytest.approx(0.75)
    assert row["test_accuracy_iqr"] == pytest.approx(0.15)
    assert row["train_test_cost_correlation"] == pytest.approx(1.0)
    assert (row["minimum"], row["saddle"], row["unconverged"]) == (2, 1, 1)


def test_widths_parse_or_fail_clearly():
    assert parse_widths("4,16,64") == (4, 16, 64)
    for bad in ("", "4,x", "0,4"):
        with pytest.raises(GdJaxError, match="--widths"):
            parse_widths(bad)


def test_the_cli_writes_every_table_and_plot(tmp_path):
    assert cli(minima_cli, *SMALL, f"--workdir={tmp_path}") == 0
    for name in (
        "config.json", "results.csv", "pairs.csv", "spread.csv", "ensemble.csv",
        "summary.json", "report.md", "quality.png", "spread.png", "barriers.png", "paths.png",
        "ensemble.png", "surface.png", "surface.json",
    ):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0, name
    rows = io.read_csv(tmp_path / "results.csv")
    assert [(r["width"], r["seed"]) for r in rows] == [(w, s) for w in "36" for s in "012"]
    columns = "final_train_cost final_test_accuracy grad_norm lambda_max lambda_min classification"
    assert set(columns.split()) <= rows[0].keys()
    assert all(r["negative_eigenvalues"] != "" for r in rows)  # small: dense spectra counted
    pairs = io.read_csv(tmp_path / "pairs.csv")
    assert len(pairs) == 4  # 2 per width
    assert all(float(p["aligned_distance"]) <= float(p["distance"]) + 1e-4 for p in pairs)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["networks"] == 6 and "verdict" in summary
    report = (tmp_path / "report.md").read_text()
    assert summary["verdict"] in report
    for png in ("quality", "spread", "barriers", "paths", "ensemble", "surface"):
        assert f"]({png}.png)" in report
    runs = sorted(p.name for p in (tmp_path / "tensorboard").iterdir())
    assert runs == [f"w={w},seed={s}" for w in (3, 6) for s in (0, 1, 2)]


def test_a_killed_study_resumes_with_nothing_lost(tmp_path, monkeypatch):
    assert cli(minima_cli, *SMALL, f"--workdir={tmp_path / 'whole'}") == 0
    analyse = analysis.analyse
    calls = []

    def killed_in_the_second_width(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return analyse(*args, **kwargs)

    workdir = tmp_path / "killed"
    monkeypatch.setattr(minima_run, "analyse", killed_in_the_second_width)
    assert cli(minima_cli, *SMALL, f"--workdir={workdir}") == 130
    assert (workdir / "widths" / "analysis_3.json").exists()
    assert (workdir / "widths" / "width_6.npz").exists()  # trained before the kill
    monkeypatch.setattr(minima_run, "analyse", analyse)
    fits = []
    fit = trainer.fit
    monkeypatch.setattr(trainer, "fit", lambda *a, **k: (fits.append(1), fit(*a, **k))[1])
    assert cli(minima_cli, *SMALL, "--resume", f"--workdir={workdir}") == 0
    assert fits == []  # nothing trained again
    for name in ("results.csv", "pairs.csv", "spread.csv"):
        assert io.read_csv(workdir / name) == io.read_csv(tmp_path / "whole" / name), name


def test_bad_flags_exit_with_a_message(tmp_path, capsys):
    assert cli(minima_cli, "--dataset=digits", "--widths=a", f"--workdir={tmp_path / 'a'}") == 2
    assert "--widths='a'" in capsys.readouterr().err
    assert cli(minima_cli, "--dataset=digits", "--seeds=1", f"--workdir={tmp_path / 'b'}") == 2
    assert "--seeds=1" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
