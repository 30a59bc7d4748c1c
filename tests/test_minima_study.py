"""The local-minima study (``gd_jax.studies.minima``): certification on known critical
points, tables, the CLI."""

import json

import pytest
from conftest import blank, cli

from gd_jax import io
from gd_jax.cli import local_minima as minima_cli
from gd_jax.config import TrainConfig
from gd_jax.errors import GdJaxError
from gd_jax.studies.minima import analysis, classes, report, tables
from gd_jax.studies.minima.config import MinimaConfig, parse_widths
from gd_jax.studies.minima.records import Point
from gd_jax.sweep import trainer

SMALL = (
    "--dataset=digits", "--layers=8", "--widths=3,6", "--seeds=3", "--epochs=3",
    "--lanczos_iters=8", "--max_pairs=2", "--path_points=5", "--train_size=400",
    "--polish_steps=40", "--curve_pairs=1", "--curve_steps=20", "--escape_epochs=2",
)  # fmt: skip


def _points(width, classes_and_accuracy, *, seed0=0, cost=0.1):
    return [
        blank(Point, width=width, seed=seed0 + i, num_params=10, final_train_cost=cost,
              final_test_cost=2 * cost, final_test_accuracy=a, sgd_train_cost=cost,
              sgd_test_cost=2 * cost, sgd_test_accuracy=a - 0.01, classification=k)
        for i, (k, a) in enumerate(classes_and_accuracy)
    ]  # fmt: skip


def test_spread_of_known_endpoints_per_population():
    rows = _points(4, [("minimum", 0.9), ("saddle", 0.8), ("minimum", 0.7),
                       ("minimum", 0.75), ("descending", 0.6)])  # fmt: skip
    noise = {4: {"minima": {"accuracy": {"floor": 0.003, "binomial": 0.004}, "cost": {}}}}
    (row,) = tables.spread_rows(rows, noise)
    # The minima's quality is that of the certified minima: 0.9, 0.7 and 0.75.
    assert row["minima"] == 3 and row["minima_test_accuracy_n"] == 3
    assert row["minima_test_accuracy_range"] == pytest.approx(0.2)
    assert row["minima_test_accuracy_mean"] == pytest.approx(0.7833333)
    assert row["minima_test_accuracy_sd"] == pytest.approx(0.10408, rel=1e-4)
    assert row["minima_test_accuracy_sd_low"] < 0.104 < row["minima_test_accuracy_sd_high"]
    assert row["minima_test_accuracy_floor"] == 0.003
    assert row["minima_test_accuracy_floor_p"] < 1e-6  # 10 points is far above 0.3
    # Every class is shown beside it, never mixed in; the SGD endpoints apart.
    assert row["polished_test_accuracy_range"] == pytest.approx(0.3)
    assert row["sgd_test_accuracy_mean"] == pytest.approx(0.74)
    assert row["sgd_test_accuracy_floor"] is None  # no floor measured for them
    assert (row["minimum"], row["saddle"], row["descending"]) == (3, 1, 1)


def test_a_network_that_learned_nothing_is_left_out_of_the_spread():
    rows = _points(8, [("minimum", 0.90), ("minimum", 0.88)])
    rows += _points(8, [("minimum", 0.10)], seed0=2, cost=0.5)
    (row,) = tables.spread_rows(rows, {}, bar=0.405)
    assert row["learned"] == 2 and row["minima"] == 2 and row["minimum"] == 3
    assert row["minima_test_accuracy_range"] == pytest.approx(0.02)
    assert row["sgd_test_accuracy_n"] == 2


CONFIG = TrainConfig(dataset="digits")
STUDY = MinimaConfig()


def _judged(minima_per_width: dict[int, int], sds: dict[int, float]):
    """32 points per width, ``minima`` of them certified minima, the rest descending;
    test accuracies normal about 0.9 with the width's sd (fixed draws)."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = []
    for width, minima in minima_per_width.items():
        kinds = ["minimum"] * minima + ["descending"] * (32 - minima)
        accuracy = rng.normal(0.9, sds[width], 32)
        rows += _points(width, list(zip(kinds, accuracy, strict=True)))
    spread = tables.spread_rows(rows, {})
    tests = tables.spread_tests(rows, bar=float("inf"), alpha=0.05)
    return tables.verdict(CONFIG, STUDY, spread, tests)


def test_the_verdict_is_on_minima_where_there_are_enough():
    text = _judged({16: 20, 64: 12}, {16: 0.003, 64: 0.003})
    assert text.startswith("On digits, learned certified minima per width: w=16: 20 of 32")
    assert "The spread of the certified minima's test accuracy does not differ" in text
    assert "(w=16, n=20)" in text and "(w=64, n=12)" in text


def test_without_minima_the_verdict_says_so_and_judges_the_sgd_endpoints_apart():
    text = _judged({16: 0, 64: 2}, {16: 0.02, 64: 0.002})
    assert "too few points are certified minima to judge the claim on minima" in text
    assert "w=16: 0 of 32 (32 descending); w=64: 2 of 32 (2 minimum, 30 descending)" in text
    assert "The spread of the SGD endpoints' test accuracy shrinks with width" in text
    assert "(w=16, n=32)" in text


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


@pytest.fixture(scope="module")
def small_study(tmp_path_factory):
    """The SMALL study run once, uninterrupted: what the CLI writes, and what a killed
    and resumed study must end with."""
    workdir = tmp_path_factory.mktemp("small")
    assert cli(minima_cli, *SMALL, f"--workdir={workdir}") == 0
    return workdir


def test_the_cli_writes_every_table_and_plot(small_study):
    tmp_path = small_study
    for name in (
        "config.json", "results.csv", "pairs.csv", "spread.csv", "ensemble.csv",
        "summary.json", "report.md", "quality.png", "spread.png", "barriers.png", "paths.png",
        "distribution.png", "escape.csv",
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
        sgd = tables.of_population([width], "sgd", "test_accuracy")[0]
        if sgd["n"] >= 2:  # intervals whose ends are not the estimate
            assert sgd["sd_low"] < sgd["sd"] < sgd["sd_high"]
            assert sgd["floor"] is not None and sgd["binomial"] >= sgd["floor"]
        assert width["dead_class_points"] <= 3
        spectrum = width["spectrum"]
        assert len(spectrum["density"]) == len(spectrum["density_grid"]) == 201
        assert 0 <= spectrum["negative_mass"] <= 1
    report = (tmp_path / "report.md").read_text()
    assert summary["verdict"] in report
    assert "Brown–Forsythe" in report and "noise floor" in report
    for png in ("quality", "polish", "spread", "barriers", "paths", "ensemble", "surface",
                "distribution"):  # fmt: skip
        assert f"]({png}.png)" in report
    runs = sorted(p.name for p in (tmp_path / "tensorboard").iterdir())
    assert runs == [f"w={w},seed={s}" for w in (3, 6) for s in (0, 1, 2)]
    from test_tensorboard import hparams

    listed = hparams(tmp_path / "tensorboard" / "w=6,seed=2")
    assert listed["hparams"]["width"] == 6 and listed["hparams"]["seed"] == 2
    assert listed["ended"] and "final/test_accuracy" in listed["metrics"]


def test_a_killed_study_resumes_with_nothing_lost(tmp_path, monkeypatch, small_study):
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
    started = lambda k: "from init" if k.get("start") is None else "from endpoints"
    monkeypatch.setattr(trainer, "fit", lambda *a, **k: (fits.append(started(k)), fit(*a, **k))[1])
    assert cli(minima_cli, *SMALL, "--resume", f"--workdir={workdir}") == 0
    # Nothing trained again; only the escape attempts of the width not yet analysed.
    assert fits == ["from endpoints"]
    for name in ("results.csv", "pairs.csv", "spread.csv", "escape.csv"):
        assert io.read_csv(workdir / name) == io.read_csv(small_study / name), name


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


@pytest.mark.parametrize("path, head, rtol", [("plain", "xla", 1e-5), ("delayed", "native", 0)])
def test_a_seed_trains_the_same_network_whichever_seeds_train_beside_it(path, head, rtol):
    # A study's widest width is published in runs of a few seeds (--seed, --seeds). A
    # network's seed alone decides its initialisation and data order; its arithmetic is
    # its own bit for bit on the delayed path and native head (the study without weight
    # decay), while the plain path's programs, vectorised over the networks, round in the
    # last bits differently with other networks beside it (the study with weight decay):
    # there the runs of a few seeds are the same draws as one run of all the seeds, not
    # the same numbers.
    import numpy as np

    from gd_jax import data
    from gd_jax.studies.minima import stages

    config = TrainConfig(dataset="digits", layers=(5, 5), epochs=2, learning_rate=3.0,
                         batch_size=10, init="scaled", train_size=300, epoch_path=path,
                         head=head)  # fmt: skip
    dataset = data.load_for(config)
    model_config = config.model_config(dataset.train.x.shape[1], dataset.num_classes)
    train_xy, evals = data.on_device(dataset.train), {"test": data.on_device(dataset.test)}

    def trained(seeds):
        networks = stages.varied(np.asarray(seeds), 3.0, vary="both", base=seeds[0])
        return trainer.fit(networks, model_config, config, train_xy, evals)

    four, two = trained([0, 1, 2, 3]), trained([2, 3])
    assert set(four.epoch_path) == {path} and set(four.head) == {head}
    for (w4, b4), (w2, b2) in zip(four.params, two.params, strict=True):
        for together, alone in ((w4, w2), (b4, b2)):
            together, alone = np.asarray(together)[2:], np.asarray(alone)
            np.testing.assert_allclose(together, alone, rtol=rtol, atol=1e-7 if rtol else 0)
