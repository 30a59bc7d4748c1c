"""The local-minima study (``gd_jax.studies.minima``): certification on known critical
points, tables, the CLI."""

import json

import jax
import jax.numpy as jnp
import pytest
from conftest import blank, cli

from experiments import local_minima as minima_cli
from gd_jax import curvature, io
from gd_jax.config import TrainConfig
from gd_jax.errors import GdJaxError
from gd_jax.studies.minima import analysis, report, tables
from gd_jax.studies.minima.config import MinimaConfig, parse_widths
from gd_jax.studies.minima.records import Point
from gd_jax.sweep import trainer

SMALL = (
    "--dataset=digits", "--layers=8", "--widths=3,6", "--seeds=3", "--epochs=3",
    "--lanczos_iters=8", "--max_pairs=2", "--path_points=5", "--train_size=400",
    "--polish_steps=40", "--curve_pairs=1", "--curve_steps=20",
)  # fmt: skip


def certify(f, point):
    """Classifies a point of f(v) with the study's own tools."""
    v = jnp.asarray(point, jnp.float32)
    grad_norm = float(jnp.linalg.norm(jax.grad(f)(v)))
    low, high = curvature.extreme_eigenvalues(lambda p: f(p), v, key=jax.random.key(0), num_iters=4)
    kw = {"grad_tol": 1e-3, "negative_tol": 1e-2, "bar": 1.0}
    return analysis.classify(
        grad_norm, float(low), float(high), float(f(v)), analysis.Thresholds(**kw)
    )


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
        blank(Point, width=4, num_params=10, final_train_cost=c, final_test_cost=2 * c,
              final_test_accuracy=a, classification=k)
        for c, a, k in [(0.1, 0.9, "minimum"), (0.2, 0.8, "saddle"), (0.3, 0.7, "minimum"),
                        (0.4, 0.6, "unconverged")]
    ]  # fmt: skip
    (row,) = tables.spread_rows(rows)
    assert row["test_accuracy_range"] == pytest.approx(0.3)
    assert row["test_accuracy_mean"] == pytest.approx(0.75)
    assert row["test_accuracy_iqr"] == pytest.approx(0.15)
    assert row["train_test_cost_correlation"] == pytest.approx(1.0)
    assert (row["minimum"], row["saddle"], row["unconverged"]) == (2, 1, 1)


def test_a_network_that_learned_nothing_is_left_out_of_the_spread():
    rows = [
        blank(Point, width=8, num_params=10, final_train_cost=c, final_test_cost=c,
              final_test_accuracy=a, classification=k)
        for c, a, k in [(0.1, 0.90, "minimum"), (0.12, 0.88, "minimum"),
                        (0.5, 0.10, "plateau")]
    ]  # fmt: skip
    (row,) = tables.spread_rows(rows, bar=0.405)
    assert row["learned"] == 2 and row["plateau"] == 1
    assert row["test_accuracy_range"] == pytest.approx(0.02)
    assert row["test_accuracy_range_all"] == pytest.approx(0.80)


def _width(width, spread, *, minima=8, learned=8, plateau=0):
    return {"width": width, "seeds": 8, "learned": learned, "minimum": minima,
            "plateau": plateau, "test_accuracy_range": spread,
            "test_accuracy_range_low": spread and spread / 2,
            "test_accuracy_range_high": spread}  # fmt: skip


CONFIG = TrainConfig(dataset="digits")
STUDY = MinimaConfig(equal_tol=0.02)


def test_the_verdict_reads_the_whole_curve_not_its_two_ends():
    # The ends alone say "does not narrow" (0.20 → 0.21); the middle is where it holds.
    curve = [_width(4, 0.20), _width(16, 0.015), _width(64, 0.21)]
    text = tables.verdict(CONFIG, STUDY, curve)
    assert "is not monotone in width" in text
    assert "w=16: 1.50 [0.75–1.50] (8/8 minima)" in text
    assert "smallest at width 16 (1.50 points)" in text
    assert "within 2.00 points at width 16 only" in text


@pytest.mark.parametrize(
    "spreads, shape, holds",
    [((0.2, 0.05, 0.01), "narrows steadily with width", "at width 64 only"),
     ((0.01, 0.05, 0.2), "widens steadily with width", "at width 4 only"),
     ((0.02, 0.01, 0.01), "narrows steadily", "at every width they are within 2.00"),
     ((0.1, 0.2, 0.3), "widens steadily", "at no width are they within 2.00 points")],
)  # fmt: skip
def test_the_verdict_names_the_shape_and_where_the_claim_holds(spreads, shape, holds):
    text = tables.verdict(
        CONFIG, STUDY, [_width(w, s) for w, s in zip((4, 16, 64), spreads, strict=True)]
    )
    assert shape in text and holds in text


def test_a_width_where_nothing_was_learned_is_named_not_called_equal():
    # Eight constant outputs agree perfectly; that is not eight minima of equal quality.
    curve = [_width(16, 0.03), _width(64, 0.01, learned=7, plateau=1),
             _width(256, None, minima=0, learned=0, plateau=8)]  # fmt: skip
    text = tables.verdict(CONFIG, STUDY, curve)
    assert "smallest at width 64" in text and "w=256:" not in text.split("Left out")[0]
    assert "(8/8 minima), w=64: 1.00 [0.50–1.00] (8/8 minima, 7 learned)" in text
    assert "Left out: w=256, where 0 of 8 networks learned" in text and "8 plateaus" in text
    nothing = tables.verdict(CONFIG, STUDY, [_width(256, None, learned=0, plateau=8)])
    assert nothing.startswith("On digits, no width has two learned networks")


def test_the_report_says_which_points_were_not_polished_and_what_they_did():
    grew = {"width": 4, "seed": 0, "polish_steps": 500, "sgd_grad_norm": 0.02,
            "grad_norm": 0.005, "sgd_lambda_max": 0.07, "lambda_max": 44.7,
            "sgd_saturation": 0.49, "saturation": 0.78, "sgd_param_norm": 46.6,
            "param_norm": 196.0}  # fmt: skip
    stuck = {**grew, "seed": 3, "lambda_max": 0.05, "saturation": 0.4, "param_norm": 40.0}
    text = report._unpolished([grew, stuck], MinimaConfig(polish_steps=500), 2)
    assert text.startswith("2 point(s) stayed above ‖∇C‖ = 0.001 after 500 L-BFGS steps")
    assert "1 of them grew their weights" in text
    assert "| 4 | 0 | 500 | 0.02 → 0.005 | 0.07 → 44.7 | 49.00% → 78.00% | 46.6 → 196 |" in text
    assert "grew" not in report._unpolished([stuck], MinimaConfig(), 1)


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
        "ensemble.png", "surface.png", "surface.json", "spectrum.png", "curves.png",
    ):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0, name
    rows = io.read_csv(tmp_path / "results.csv")
    assert [(r["width"], r["seed"]) for r in rows] == [(w, s) for w in "36" for s in "012"]
    # Both points of every network: the SGD endpoint and the polished point.
    columns = (
        "sgd_train_cost sgd_test_accuracy sgd_grad_norm sgd_lambda_max sgd_saturation "
        "sgd_param_norm sgd_classification final_train_cost final_test_accuracy grad_norm "
        "lambda_max lambda_min saturation param_norm classification polish_steps "
        "distance_moved negative_mass top_eigenvalues bottom_eigenvalues"
    )
    assert set(columns.split()) <= rows[0].keys()
    for r in rows:
        assert 1 <= int(r["polish_steps"]) <= 40 and float(r["distance_moved"]) > 0
        assert float(r["final_train_cost"]) < float(r["sgd_train_cost"])  # L-BFGS went down
        assert len(r["top_eigenvalues"].split()) == 5
        if int(r["polish_steps"]) < 40:  # stopped early: it met the tolerance
            assert float(r["grad_norm"]) < 1e-4 and r["classification"] != "unconverged"
    assert all(r["negative_eigenvalues"] != "" for r in rows)  # small: dense spectra counted
    pairs = io.read_csv(tmp_path / "pairs.csv")
    assert len(pairs) == 4  # 2 per width
    assert all(float(p["one_pass_distance"]) <= float(p["distance"]) + 1e-4 for p in pairs)
    for i, p in enumerate(pairs):
        barriers = ("naive_barrier", "one_pass_barrier", "matched_barrier")
        assert all(p[k] != "" for k in barriers)
        # The first pair of each width is also joined by trained curves.
        assert (p["curve_barrier"] != "") == (i % 2 == 0)
        assert (p["matched_curve_barrier"] != "") == (i % 2 == 0)
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["networks"] == 6 and "verdict" in summary
    for width in summary["per_width"]:
        assert width["test_accuracy_range_low"] <= width["test_accuracy_range"]
        assert width["test_accuracy_mean_low"] <= width["test_accuracy_mean"]
        assert width["test_accuracy_mean"] <= width["test_accuracy_mean_high"]
        spectrum = width["spectrum"]
        assert len(spectrum["density"]) == len(spectrum["density_grid"]) == 201
        assert 0 <= spectrum["negative_mass"] <= 1
    report = (tmp_path / "report.md").read_text()
    assert summary["verdict"] in report
    for png in ("quality", "spread", "barriers", "paths", "ensemble", "surface"):
        assert f"]({png}.png)" in report
    runs = sorted(p.name for p in (tmp_path / "tensorboard").iterdir())
    assert runs == [f"w={w},seed={s}" for w in (3, 6) for s in (0, 1, 2)]


def test_a_killed_study_resumes_with_nothing_lost(tmp_path, monkeypatch):
    assert cli(minima_cli, *SMALL, f"--workdir={tmp_path / 'whole'}") == 0
    certify = analysis.certify
    calls = []

    def killed_in_the_second_width(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return certify(*args, **kwargs)

    workdir = tmp_path / "killed"
    monkeypatch.setattr(analysis, "certify", killed_in_the_second_width)
    assert cli(minima_cli, *SMALL, f"--workdir={workdir}") == 130
    assert (workdir / "widths" / "analysis_3.json").exists()
    assert (workdir / "widths" / "width_6.npz").exists()  # trained before the kill
    assert (workdir / "widths" / "polished_6.npz").exists()  # and polished
    monkeypatch.setattr(analysis, "certify", certify)
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
