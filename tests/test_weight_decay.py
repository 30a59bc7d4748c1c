"""Weight decay, the textbook's convention: C = C₀ + (λ/2n) Σ_w w² over the weights
(not the biases), n the training examples, so that gradient descent updates
w ← (1 − ηλ/n) w − η ∂C₀/∂w (``network2.py``'s ``update_mini_batch``)."""

import dataclasses
import itertools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from conftest import cli, mlp
from test_gradients import backprop

import gd_jax
from gd_jax import costs, io, optim, train
from gd_jax.cli import local_minima as minima_cli
from gd_jax.config import TrainConfig
from gd_jax.errors import GdJaxError
from gd_jax.fast import check, paths
from gd_jax.studies.minima import classes, newton, pairs
from gd_jax.studies.minima.config import MinimaConfig

SIZES = (4, 3, 3)
N, BATCH, ETA, LAMBDA = 12, 3, 0.7, 2.0


def test_the_penalty_is_half_the_decay_times_the_squared_weights_not_the_biases():
    params = [(jnp.full((2, 3), 2.0), jnp.full((3,), 100.0)), (jnp.ones((3, 1)), jnp.ones(1))]
    # ½ · 0.1 · (6 · 4 + 3 · 1): the biases do not count.
    assert float(costs.weight_penalty(params, 0.1)) == pytest.approx(0.05 * 27)
    model_config = TrainConfig(weight_decay=5.0).model_config(784, 10, train_examples=50_000)
    assert model_config.decay == pytest.approx(1e-4)  # the textbook's λ/n on MNIST
    assert TrainConfig().model_config(784, 10, train_examples=50_000).train_examples == 0
    with pytest.raises(ValueError, match="needs the number of training examples"):
        TrainConfig(weight_decay=5.0).model_config(784, 10)


def test_gradient_descent_with_weight_decay_follows_the_textbooks_update():
    # Three mini-batch steps of the core against the rule written out, with the
    # gradient of C₀ from hand-written backpropagation, in float64.
    with jax.enable_x64(True):
        model_config = dataclasses.replace(mlp(SIZES), weight_decay=LAMBDA, train_examples=N)
        rng = np.random.default_rng(0)
        x, labels = rng.normal(size=(N, SIZES[0])), rng.integers(0, SIZES[-1], N)
        params = [
            (rng.normal(size=(i, j)), rng.normal(size=j)) for i, j in itertools.pairwise(SIZES)
        ]
        tx = optim.gd(ETA)
        step = jax.jit(train.make_step(train.make_loss(model_config), tx))
        state = train.init_state(jax.tree.map(jnp.asarray, params), tx)
        expected = params
        for s in range(3):
            batch = slice(s * BATCH, (s + 1) * BATCH)
            state, _ = step(state, jnp.asarray(x[batch]), jnp.asarray(labels[batch]))
            grads = backprop(expected, x[batch], labels[batch])
            expected = [
                ((1 - ETA * LAMBDA / N) * w - ETA * gw, b - ETA * gb)
                for (w, b), (gw, gb) in zip(expected, grads, strict=True)
            ]
        for (w, b), (ew, eb) in zip(state.params, expected, strict=True):
            np.testing.assert_allclose(w, ew, rtol=1e-12)
            np.testing.assert_allclose(b, eb, rtol=1e-12)


def test_the_cost_minimised_carries_the_penalty_and_the_scores_do_not():
    config = TrainConfig(dataset="digits", layers=(8,), epochs=2, weight_decay=3.0, train_size=300)
    dataset = gd_jax.load(config)
    fitted = gd_jax.fit(config, dataset)
    last = fitted.history[-1]
    model_config = config.model_config(64, 10, train_examples=300)
    penalty = float(costs.weight_penalty(fitted.params, model_config.decay))
    assert last["penalty"] == pytest.approx(penalty, rel=1e-5) and penalty > 0
    # train_cost is the data's cost C₀; the cost minimised is C₀ plus the penalty.
    x, labels = jnp.asarray(dataset.train.x), jnp.asarray(dataset.train.labels)
    assert float(train.make_loss(model_config)(fitted.params, x, labels)) == pytest.approx(
        last["train_cost"] + last["penalty"], rel=1e-5
    )
    without = gd_jax.fit(dataclasses.replace(config, weight_decay=0.0), dataset)
    assert "penalty" not in without.history[-1]
    assert without.history[-1]["train_cost"] != pytest.approx(last["train_cost"], rel=1e-3)


def test_weight_decay_trains_on_the_plain_path_and_a_fast_path_asked_for_is_refused():
    config = TrainConfig(weight_decay=1.0)
    model_config = config.model_config(7, 3, train_examples=100)
    for sweep, batch_size in ((False, 10), (True, 10), (False, 0), (True, 0)):
        chosen = paths.choose(
            dataclasses.replace(config, batch_size=batch_size), model_config, sweep=sweep
        )
        assert chosen.epoch == "plain" and "--weight_decay=1" in chosen.why
    for fast, batch_size in (("delayed", 10), ("column", 0)):
        asked = dataclasses.replace(config, epoch_path=fast, batch_size=batch_size)
        with pytest.raises(GdJaxError, match="fast paths do not add the penalty"):
            paths.choose(asked, model_config, sweep=False)
    # The check itself, which knows nothing of the flag, finds that the fast paths do
    # not follow the penalty: the stand-in keeps the weight decay.
    assert check.stand_in(model_config).decay == model_config.decay
    assert "differs from the core's" in check.delayed_path(model_config, full=False, native=False)
    assert "differs from the core's" in check.column_layout(model_config)


@pytest.mark.parametrize("value", [-1.0, float("nan"), float("inf")])
def test_a_bad_weight_decay_is_refused_in_one_line(value):
    with pytest.raises(GdJaxError, match=r"--weight_decay=.* must be zero") as refused:
        TrainConfig(weight_decay=value)
    assert "\n" not in str(refused.value)


def regularised_problem():
    """A sigmoid network 3-3-2 on 30 random examples with λ = 0.3: the penalty makes
    the cost grow without bound with the weights, so it has minima at finite weights,
    which it does not without one (the examples can be fitted ever better as units
    saturate)."""
    rng = np.random.default_rng(1)
    x, labels = rng.normal(size=(30, 3)), rng.integers(0, 2, 30).astype(np.int32)
    model_config = dataclasses.replace(
        mlp((3, 3, 2), init="scaled"), weight_decay=0.3, train_examples=30
    )
    return model_config, x, labels


def test_the_polish_certifies_the_minimum_a_dense_float64_solver_finds():
    model_config, x, labels = regularised_problem()
    loss = train.make_loss(model_config)
    study = MinimaConfig(polish_steps=400, polish_every=20, newton_iters=12, lanczos_iters=12)
    with jax.enable_x64(True):
        start = jax.tree.map(
            lambda a: jnp.asarray(a, jnp.float64), model_config.init_params(jax.random.key(0))
        )
        flat, unravel = newton.flatten(start)
        args = (jnp.asarray(x), jnp.asarray(labels))
        cost = jax.jit(lambda v: loss(unravel(v), *args))
        hessian = jax.jit(jax.hessian(cost))
        reference = scipy.optimize.minimize(
            cost, flat, jac=jax.jit(jax.grad(cost)), hess=hessian, method="trust-exact",
            options={"gtol": 1e-13, "maxiter": 2000},
        )  # fmt: skip
        eigenvalues = np.linalg.eigvalsh(np.asarray(hessian(reference.x)))
        assert reference.success and eigenvalues.min() > 0  # an isolated minimum
        problem = newton.Problem(
            lambda v, xs, ys: loss(unravel(v), xs, ys), args, (args[0][::-1], args[1][::-1])
        )
        found = newton.polish(problem, np.asarray(flat), study.budget(), study.criteria())
        continued = newton.continue_from(problem, found, study.budget(), study.criteria(),
                                         lbfgs=True)  # fmt: skip
        lambdas = (found.local.lambda_min, found.local.lambda_max)
        kind = classes.classify(found, continued, lambdas, negative_tol=study.negative_tol,
                                criteria=study.criteria())  # fmt: skip
    assert kind == classes.MINIMUM
    assert continued.moved < 0.01 and abs(continued.cost_change) < 0.01
    # The same point as the dense solver's (from the same start, the same basin).
    np.testing.assert_allclose(found.flat, reference.x, rtol=0, atol=1e-6 * np.linalg.norm(flat))
    assert found.local.cost == pytest.approx(reference.fun, rel=1e-10)
    # The dense Hessian's class agrees with the one from Lanczos' extremes.
    dense = (eigenvalues[0], eigenvalues[-1])
    assert classes.kind(classes.verdict(found, continued, study.criteria(), lambdas), dense,
                        negative_tol=study.negative_tol) == kind  # fmt: skip


def test_the_study_certifies_minima_with_weight_decay_and_the_dense_hessian_agrees(tmp_path):
    # Digits at 400 training images, λ = 0.3 (λ/n = 7.5e-4): the polished points of
    # width 6 are minima at finite weights, which the same study without weight decay
    # never certifies (tests/test_minima_study.py: descending or unconverged).
    args = (
        "--dataset=digits", "--layers=8", "--widths=6", "--seeds=3", "--epochs=3",
        "--lanczos_iters=8", "--max_pairs=1", "--path_points=5", "--train_size=400",
        "--polish_steps=200", "--polish_every=20", "--curve_pairs=0", "--escape_points=0",
        "--weight_decay=0.3",
    )  # fmt: skip
    assert cli(minima_cli, *args, f"--workdir={tmp_path}") == 0
    rows = io.read_csv(tmp_path / "results.csv")
    minima = [r for r in rows if r["classification"] == classes.MINIMUM]
    assert len(minima) >= 2
    for r in minima:  # each passed the continuation
        assert float(r["continued_moved"]) < 0.01 and abs(float(r["continued_cost_change"])) < 0.01
    for r in rows:  # 460 parameters: every eigenvalue of the dense Hessian computed
        assert r["dense_classification"] == r["classification"]
        assert float(r["dense_lambda_min"]) <= float(r["lambda_min"]) + 1e-9  # Ritz ≥ true
        assert float(r["penalty"]) > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["certified_minima"] == len(minima) and summary["weight_decay"] == 0.3
    assert summary["dense_checked"] == summary["dense_agree"] == 3
    polish = summary["per_width"][0]["polish"]
    assert 0 < polish["median_penalty_share"] < 1
    assert polish["median_objective"] > polish["median_final_train_cost"]
    relations = [p["relation"] for p in io.read_csv(tmp_path / "pairs.csv")]
    assert relations and set(relations) <= set(pairs.RELATIONS)  # every pair: two minima
    width = summary["per_width"][0]
    counts = [width[f"pairs_{n.replace(' ', '_').replace(',', '')}"] for n in pairs.RELATIONS]
    assert sum(counts) == width["minima_pairs"] == len(relations)
    report = (tmp_path / "report.md").read_text()
    assert "## Pairs of minima: one minimum, or two?" in report
    assert "weight decay λ = 0.3" in report and "dense float64 Hessian" in report
