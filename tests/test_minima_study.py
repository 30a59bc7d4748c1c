"""The local-minima study (``gd_jax.studies.minima``): certification on known critical
points, tables, the CLI."""

import json

import pytest
from conftest import blank, cli

from experiments import local_minima as minima_cli
from gd_jax import io
from gd_jax.config import TrainConfig
from gd_jax.errors import GdJaxError
from gd_jax.studies.minima import analysis, classes, report, tables
from gd_jax.studies.minima.config import MinimaConfig, parse_widths
from gd_jax.studies.minima.records import Point
from gd_jax.sweep import trainer

SMALL = (
    "--dataset=digits", "--layers=8", "--widths=3,6", "--seeds=3", "--epochs=3",
    "--lanczos_iters=8", "--max_pairs=2", "--path_points=5", "--train_size=400",
    "--polish_steps=40", "--curve_pairs=1", "--curve_steps=20",
)  # fmt: skip


def test_spread_of_known_endpoints():
    rows = [
        blank(Point, width=4, num_params=10, final_train_cost=c, final_test_cost=2 * c,
              final_test_accuracy=a, classification=k)
        for c, a, k in [(0.1, 0.9, "minimum"), (0.2, 0.8, "saddle"), (0.3, 0.7, "minimum"),
                        (0.25, 0.75, "minimum"), (0.4, 0.6, "descending")]
    ]  # fmt: skip
    (row,) = tables.spread_rows(rows)
    # The quality is the certified minima's: 0.9, 0.75 and 0.7.
    assert row["minima"] == 3
    assert row["test_accuracy_range"] == pytest.approx(0.2)
    assert row["test_accuracy_mean"] == pytest.approx(0.7833333)
    assert row["test_accuracy_iqr"] == pytest.approx(0.1)
    assert row["train_test_cost_correlation"] == pytest.approx(1.0)
    # Every class is shown beside it, never mixed in.
    assert row["all_test_accuracy_range"] == pytest.approx(0.3)
    assert (row["minimum"], row["saddle"], row["descending"]) == (3, 1, 1)


def test_a_network_that_learned_nothing_is_left_out_of_the_spread():
    rows = [
        blank(Point, width=8, num_params=10, final_train_cost=c, final_test_cost=c,
              final_test_accuracy=a, classification=k)
        for c, a, k in [(0.1, 0.90, "minimum"), (0.12, 0.88, "minimum"),
                        (0.5, 0.10, "minimum")]
    ]  # fmt: skip
    (row,) = tables.spread_rows(rows, bar=0.405)
    assert row["learned"] == 2 and row["minima"] == 2 and row["minimum"] == 3
    assert row["test_accuracy_range"] == pytest.approx(0.02)
    assert row["test_accuracy_range_all"] == pytest.approx(0.80)


def _width(width, spread, *, minima=8, descending=0):
    return {"width": width, "seeds": 8, "learned": 8, "minima": minima, "minimum": minima,
            "saddle": 0, "descending": descending, "gradient-flat": 0,
            "unconverged": 8 - minima - descending, "test_accuracy_range": spread,
            "test_accuracy_range_low": spread and spread / 2,
            "test_accuracy_range_high": spread}  # fmt: skip


CONFIG = TrainConfig(dataset="digits")
STUDY = MinimaConfig()


def test_the_verdict_reads_the_whole_curve_not_its_two_ends():
    # The ends alone say "does not narrow" (0.20 → 0.21); the middle is where it holds.
    curve = [_width(4, 0.20), _width(16, 0.015), _width(64, 0.21)]
    text = tables.verdict(CONFIG, STUDY, curve)
    assert "certified minima's test accuracy" in text and "is not monotone in width" in text
    assert "w=16: 1.50 [0.75–1.50] (8 minima of 8 points)" in text
    assert "smallest at width 16 (1.50 points)" in text
    assert "within 2.00 points at width 16 only" in text


@pytest.mark.parametrize(
    "spreads, shape, holds",
    [((0.2, 0.05, 0.01), "narrows steadily with width", "at width 64 only"),
     ((0.01, 0.05, 0.2), "widens steadily with width", "at width 4 only"),
     ((0.02, 0.01, 0.01), "narrows steadily", "at every such width they are within 2.00"),
     ((0.1, 0.2, 0.3), "widens steadily", "at no width are they within 2.00 points")],
)  # fmt: skip
def test_the_verdict_names_the_shape_and_where_the_claim_holds(spreads, shape, holds):
    text = tables.verdict(
        CONFIG, STUDY, [_width(w, s) for w, s in zip((4, 16, 64), spreads, strict=True)]
    )
    assert shape in text and holds in text


def test_a_width_without_two_minima_is_named_with_what_its_points_were():
    # Eight points on a slope that goes on are not eight minima of equal quality.
    curve = [_width(16, 0.03), _width(64, 0.01, minima=2, descending=5),
             _width(256, 0.001, minima=1, descending=7)]  # fmt: skip
    text = tables.verdict(CONFIG, STUDY, curve)
    assert "smallest at width 64" in text and "w=256:" not in text.split("Too few")[0]
    assert "w=64: 1.00 [0.50–1.00] (2 minima of 8 points)" in text
    assert "Too few minima to judge: w=256: 1 learned minimum of 8 points" in text
    assert "(1 minimum, 7 descending)" in text
    nothing = tables.verdict(CONFIG, STUDY, [_width(16, 0.1, minima=0, descending=8)])
    assert nothing.startswith("On digits, no width has two certified minima")
    assert "cannot be judged" in nothing and "(8 descending)" in nothing


def test_the_report_says_which_points_were_not_certified_and_what_they_did():
    falling = {"width": 16, "seed": 0, "classification": "descending", "lbfgs_steps": 500,
               "rel_grad": 5.2, "newton_step": 0.04, "null_share": 0.0,
               "descent_slope": -1.1, "sgd_train_cost": 0.11, "final_train_cost": 0.038,
               "sgd_saturation": 0.67, "saturation": 0.85, "sgd_param_norm": 134.0,
               "param_norm": 209.0, "continued_moved": None,
               "continued_cost_change": None}  # fmt: skip
    stuck = {**falling, "seed": 3, "classification": "unconverged", "continued_moved": 0.05,
             "continued_cost_change": -0.02}  # fmt: skip
    text = report._uncertified([falling, stuck])
    assert text.startswith("2 point(s) are not certified critical. 1 of them were still")
    assert "| 16 | 0 | descending | 500 | 5.2 | 0.04 | 0 | -1.1 | 0.11 → 0.038 |" in text
    assert "| 5.00%, -2.00% |" in text
    assert "descending" not in report._uncertified([stuck]).split("\n")[0]


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
        "polish.csv", "polish.png",
    ):  # fmt: skip
        assert (tmp_path / name).stat().st_size > 0, name
    rows = io.read_csv(tmp_path / "results.csv")
    assert [(r["width"], r["seed"]) for r in rows] == [(w, s) for w in "36" for s in "012"]
    # Both points of every network: the SGD endpoint and the polished point.
    columns = (
        "sgd_train_cost sgd_test_accuracy sgd_grad_norm sgd_lambda_max sgd_saturation "
        "sgd_param_norm final_train_cost final_test_accuracy grad_norm lambda_max "
        "lambda_min saturation param_norm classification lbfgs_steps newton_steps "
        "rel_grad newton_step newton_decrement null_share critical continued_moved "
        "continued_cost_change descent_slope distance_moved negative_mass top_eigenvalues "
        "bottom_eigenvalues"
    )
    assert set(columns.split()) <= rows[0].keys()
    for r in rows:
        assert 1 <= int(r["lbfgs_steps"]) <= 40 and float(r["distance_moved"]) > 0
        assert len(r["top_eigenvalues"].split()) == 5
        assert r["classification"] in classes.CLASSES
        if r["classification"] in classes.CRITICAL:  # stopped by the stop, and stayed
            assert r["critical"] == "True" and float(r["continued_moved"]) < 0.01
        else:
            assert r["continued_moved"] == "" or r["critical"] == "True"
    trajectory = io.read_csv(tmp_path / "polish.csv")
    assert {(r["width"], r["seed"]) for r in trajectory} == {(w, s) for w in "36" for s in "012"}
    assert {"cost", "param_norm", "newton_step", "null_share", "lambda_min"} <= trajectory[0].keys()
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
        assert sum(width[c] for c in classes.CLASSES) == 3
        if width["minima"] >= 2:
            assert width["test_accuracy_range_low"] <= width["test_accuracy_range"]
            assert width["test_accuracy_mean_low"] <= width["test_accuracy_mean"]
            assert width["test_accuracy_mean"] <= width["test_accuracy_mean_high"]
        spectrum = width["spectrum"]
        assert len(spectrum["density"]) == len(spectrum["density_grid"]) == 201
        assert 0 <= spectrum["negative_mass"] <= 1
    report = (tmp_path / "report.md").read_text()
    assert summary["verdict"] in report
    for png in ("quality", "polish", "spread", "barriers", "paths", "ensemble", "surface"):
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


def test_the_report_gives_each_certified_point_its_stop_and_its_continuation():
    point = {"width": 4, "seed": 2, "classification": "minimum", "lbfgs_steps": 300,
             "newton_steps": 3, "rel_grad": 2e-9, "newton_step": 1e-8,
             "newton_decrement": 1e-15, "null_share": 0.01, "lambda_min": 0.002,
             "lambda_max": 2.0, "continued_steps": 120, "continued_moved": 3e-7,
             "continued_cost_change": -1e-12, "final_test_accuracy": 0.8}  # fmt: skip
    text = report._certified([point])
    assert text.startswith("1 point(s) are certified critical")
    assert "| 4 | 2 | minimum | 300 + 3 | 2e-09 | 1e-08 | 1e-15 | 0.01 | 0.001 | 120 |" in text
