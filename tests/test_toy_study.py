"""gd_jax.studies.toy: gradient descent on functions whose answers are known in closed
form, and experiments/toy_descent.py end to end."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import cli

from gd_jax.cli import toy_descent
from gd_jax.studies.toy import descent
from gd_jax.studies.toy.functions import Banana, DoubleWell, Quadratic, stable_learning_rate
from gd_jax.studies.toy.summary import coordinate_factor

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(f, start, learning_rate, steps):
    """One path with its outcome."""
    path = np.asarray(descent.descend(f, start, learning_rate, steps), dtype=float)
    values, norms = descent.profile(f, path)
    return path, descent.classify(path, values, norms)


# --- ½λv² ------------------------------------------------------------------------------


@pytest.mark.parametrize("lam", [0.5, 4.0])
@pytest.mark.parametrize("ratio", [0.1, 0.5, 0.85, 0.99, 1.01, 1.05])
def test_parabola_iterates_are_the_closed_form(lam, ratio):
    """v_t = (1 − ηλ)^t v₀ for f = ½λv², whatever η."""
    eta = ratio * 2 / lam
    path, _ = run(Quadratic((lam,)), [1.5], eta, 40)
    expected = 1.5 * (1 - eta * lam) ** np.arange(41)
    np.testing.assert_allclose(path[:, 0], expected, rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("lam", [0.5, 4.0])
def test_parabola_converges_below_2_over_lambda_and_diverges_above(lam):
    f = Quadratic((lam,))
    below, outcome_below = run(f, [1.0], 0.95 * 2 / lam, 400)
    above, outcome_above = run(f, [1.0], 1.05 * 2 / lam, 400)
    assert outcome_below == descent.CONVERGED and abs(below[-1, 0]) < 1e-6
    assert outcome_above == descent.DIVERGED
    # 1.05^t passes the bound of 1000 at t = 142; the path stops there.
    assert descent.escape_step(above) == int(np.ceil(np.log(1e3) / np.log(1.1)))
    assert np.isnan(above[-1, 0]) and np.all(np.isfinite(above[: descent.escape_step(above) + 1]))


@pytest.mark.parametrize("lam", [0.5, 4.0, 10.0])
def test_eta_one_over_lambda_reaches_the_minimum_in_one_step(lam):
    path, outcome = run(Quadratic((lam,)), [1.7], 1 / lam, 3)
    assert abs(path[1, 0]) < 1e-6 and outcome == descent.CONVERGED


# --- the elongated bowl ----------------------------------------------------------------


@pytest.mark.parametrize("eta", [0.02, 0.1, 0.15, 0.19])
def test_bowl_slow_direction_shrinks_by_one_minus_eta_lambda_min(eta):
    bowl = Quadratic((0.5, 10.0))
    path, _ = run(bowl, [-4.0, 1.5], eta, 30)
    ratios = path[1:, 0] / path[:-1, 0]  # x_{t+1} / x_t, step by step
    np.testing.assert_allclose(ratios, 1 - eta * 0.5, rtol=1e-5)
    assert coordinate_factor(path, 0) == pytest.approx(1 - eta * 0.5, rel=1e-5)
    assert coordinate_factor(path, 1) == pytest.approx(1 - eta * 10.0, rel=1e-4, abs=1e-6)


def test_bowl_converges_just_below_2_over_lambda_max_and_diverges_just_above():
    bowl = Quadratic((0.5, 10.0))
    limit = stable_learning_rate(bowl, [0.0, 0.0])
    assert limit == pytest.approx(2 / 10.0)
    _, below = run(bowl, [-4.0, 1.5], 0.98 * limit, 400)
    _, above = run(bowl, [-4.0, 1.5], 1.02 * limit, 400)
    assert (below, above) == (descent.CONVERGED, descent.DIVERGED)


# --- two minima -------------------------------------------------------------------------


def test_double_well_minima_are_where_the_gradient_vanishes_and_deepest_first():
    wells = DoubleWell(tilt=0.3, y_curvature=1.0)
    minima = wells.minima()
    assert minima.shape == (2, 2)
    np.testing.assert_allclose(minima[:, 0], [-1.12542, 0.78648], atol=1e-5)
    grads = jax.jit(jax.vmap(jax.grad(wells)))(jnp.asarray(minima, jnp.float32))
    np.testing.assert_allclose(grads, 0.0, atol=1e-5)
    values = descent.values_at(wells, minima)
    assert values[0] < values[1]  # deep first
    assert wells.barrier()[0] == pytest.approx(0.33894, abs=1e-5)


@pytest.mark.parametrize(
    "start, eta, reached",
    [
        ([-1.5, 1.0], 0.1, 0),  # left of the barrier: the deep minimum
        ([1.5, 1.0], 0.1, 1),  # right of it: the shallow one
        ([2.0, -0.8], 0.1, 1),
        ([2.0, -0.8], 0.4, 0),  # same start, bigger η: the first step jumps the barrier
    ],
)
def test_two_minima_the_start_and_eta_decide_which_is_reached(start, eta, reached):
    wells = DoubleWell(tilt=0.3, y_curvature=1.0)
    path, outcome = run(wells, start, eta, 200)
    assert outcome == descent.CONVERGED
    assert descent.nearest_minimum(wells, path[-1]) == reached


def test_eta_above_2_over_lambda_at_the_deep_minimum_cannot_settle_there():
    wells = DoubleWell(tilt=0.3, y_curvature=1.0)
    deep = wells.minima()[0]
    assert stable_learning_rate(wells, deep) == pytest.approx(0.7144, abs=1e-4)
    path, outcome = run(wells, [-1.5, 1.0], 0.8, 200)
    assert outcome == descent.OSCILLATING
    assert descent.nearest_minimum(wells, path[-1]) is None


def test_basins_label_each_start_by_the_minimum_it_reaches():
    wells = DoubleWell(tilt=0.3, y_curvature=1.0)
    which = descent.basins(wells, np.array([-1.5, 0.0, 1.0]), np.array([-1.0, 1.0]), 0.1, 200)
    np.testing.assert_array_equal(which, [[0, 0, 1], [0, 0, 1]])


# --- functions, Hessians, classification -----------------------------------------------


@pytest.mark.parametrize(
    "fn, point",
    [
        (Quadratic((0.5, 10.0)), [0.3, -0.7]),
        (DoubleWell(0.3), [0.4]),
        (DoubleWell(0.3, y_curvature=2.0), [-0.9, 0.5]),
        (Banana(b=100.0), [-1.2, 1.0]),
        (Banana(b=10.0, a=0.5), [0.3, 0.2]),
    ],
)
def test_analytic_hessians_match_autodiff(fn, point):
    expected = jax.jit(jax.hessian(fn))(jnp.asarray(point, jnp.float32))
    np.testing.assert_allclose(fn.hessian(point), expected, rtol=1e-4, atol=1e-3)


def test_rosenbrock_minimum_and_its_stability_limit():
    valley = Banana(b=100.0)
    np.testing.assert_array_equal(valley.minima(), [[1.0, 1.0]])
    # Hessian [[802, −400], [−400, 200]] at (1, 1): λ_max = 501 + √(301² + 400²).
    assert stable_learning_rate(valley, [1.0, 1.0]) == pytest.approx(2 / (501 + np.hypot(301, 400)))


@pytest.mark.parametrize(
    "ratio, steps, expected",
    [
        (0.1, 10, descent.CREEPING),  # downhill all the way, not there yet
        (0.85, 100, descent.CONVERGED),
        (1.0, 50, descent.OSCILLATING),  # η = 2/λ: v flips between ±v₀ for ever
        (1.05, 30, descent.DIVERGED),  # still inside the bound, but f has grown
        (50.0, 30, descent.DIVERGED),  # leaves the bound at once
    ],
)
def test_classification_of_known_paths(ratio, steps, expected):
    lam = 4.0
    _, outcome = run(Quadratic((lam,)), [1.0], ratio * 2 / lam, steps)
    assert outcome == expected


def test_descend_all_matches_descend_path_by_path():
    bowl = Quadratic((0.5, 10.0))
    starts = np.array([[-4.0, 1.5], [2.0, -1.0], [0.5, 0.5]])
    etas = np.array([0.05, 0.18, 0.21])
    batch = descent.descend_all(bowl, starts, etas, 25)
    for i in range(3):
        single = descent.descend(bowl, starts[i], etas[i], 25)
        np.testing.assert_allclose(batch.paths[i], single, rtol=1e-6)
        values, norms = descent.profile(bowl, single)
        np.testing.assert_allclose(batch.values[i], values, rtol=1e-6)
        np.testing.assert_allclose(batch.grad_norms[i], norms, rtol=1e-6)


def test_a_new_learning_rate_or_start_does_not_recompile(compile_counter):
    bowl = Quadratic((0.5, 10.0))
    descent.descend(bowl, [-4.0, 1.5], 0.1, 20)
    descent.descend_all(bowl, [[-4.0, 1.5], [1.0, 1.0]], [0.1, 0.2], 20)
    with compile_counter() as compiles:
        descent.descend(bowl, [-4.0, 1.5], 0.19, 20)
        descent.descend(bowl, [3.0, -2.0], 0.05, 20)
        descent.descend(Quadratic((0.5, 10.0)), [3.0, -2.0], 0.3, 20)  # an equal function
        descent.descend_all(bowl, [[2.0, 1.0], [0.0, 1.0]], [0.3, 0.01], 20)
    assert compiles == []


# --- the entry point --------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("toy")
    (workdir / "notes.txt").write_text("mine")
    (workdir / "report.md").write_text("an old report")
    assert cli(toy_descent, f"--workdir={workdir}") == 0
    return workdir


def test_the_cli_writes_every_figure_the_report_embeds(run_folder):
    pngs = ["one_parameter", "one_parameter_two_wells", "bowl", "valley", "two_minima"]
    report = (run_folder / "report.md").read_text()
    for name in pngs:
        assert (run_folder / f"{name}.png").read_bytes()[:8] == PNG_MAGIC, name
        assert f"]({name}.png)" in report
    assert sorted(p.name for p in run_folder.glob("*.png")) == sorted(f"{n}.png" for n in pngs)
    assert (run_folder / "notes.txt").read_text() == "mine"  # other files are left alone
    assert (run_folder / "runs.csv").read_text().startswith("scene,start,learning_rate")
    assert json.loads((run_folder / "config.json").read_text())["kind"] == "toy_descent"


def test_the_summary_holds_the_numbers_the_report_quotes(run_folder):
    summary = json.loads((run_folder / "summary.json").read_text())
    scenes = {s["key"]: s for s in summary["scenes"]}
    parabola = scenes["one_parameter"]
    assert parabola["stable_limit"] == pytest.approx(0.5)
    outcomes = [r["outcome"] for r in parabola["runs"]]
    assert outcomes == [descent.CREEPING, descent.CONVERGED, descent.CONVERGED, descent.DIVERGED]
    for r in parabola["runs"]:
        factor = r["factors"][0]
        assert factor["measured"] == pytest.approx(factor["theory"], abs=1e-6)
    assert parabola["runs"][1]["steps_to_tolerance"] == 1  # η = 1/λ
    bowl = scenes["bowl"]
    assert bowl["condition_number"] == pytest.approx(20)
    assert [r["outcome"] for r in bowl["runs"]][-1] == descent.DIVERGED
    wells = scenes["two_minima"]
    from_right = [r["minimum"] for r in wells["runs"] if r["start"] == [2.0, -0.8]]
    assert from_right[0].startswith("shallow") and from_right[1].startswith("deep")
    report = (run_folder / "report.md").read_text()
    for scene in summary["scenes"]:
        assert f"## {scene['title']}" in report
        assert scene["lessons"] and all(lesson in report for lesson in scene["lessons"])


def test_a_workdir_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert cli(toy_descent, f"--workdir={target}") == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --workdir=") and "Traceback" not in err
