"""The float64 search for critical points, on costs whose answer is known.

Each cost is searched as the study searches a network's (``newton.polish``), continued
with ten times the budget where it was called critical (``newton.continue_from``) and
classified (``classes.classify``); the answer is known in closed form, or from an
independent float64 solver with the dense Hessian.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize
from conftest import mlp

from gd_jax import stage, train
from gd_jax.studies.minima import classes, newton, polish
from gd_jax.studies.minima.config import MinimaConfig

CRITERIA = newton.Criteria()
BUDGET = newton.Budget(lbfgs_steps=200, newton_steps=20, every=10, krylov=10)
NEWTON_ONLY = BUDGET._replace(lbfgs_steps=0)


def searched(f, start, budget=BUDGET, *, args=(), reordered=None):
    """The search, the continuation of a critical point, and the class."""
    with jax.enable_x64(True):
        problem = newton.Problem(f, args, reordered)
        found = newton.polish(problem, np.asarray(start, np.float64), budget, CRITERIA)
        lambdas = (found.local.lambda_min, found.local.lambda_max)
        continued = None
        if found.critical:
            saddle = lambdas[0] < -1e-2 * lambdas[1]
            continued = newton.continue_from(problem, found, budget, CRITERIA, lbfgs=not saddle)
        kind = classes.classify(found, continued, lambdas, negative_tol=1e-2, criteria=CRITERIA)
    return found, continued, kind


def bowl(v):
    return 1.0 + (v[0] - 1) ** 2 + 10 * (v[1] - 2) ** 2


def test_a_quadratic_bowl_is_a_minimum_where_its_minimum_is():
    found, continued, kind = searched(bowl, [0.0, 0.0])
    assert kind == classes.MINIMUM
    np.testing.assert_allclose(found.flat, [1.0, 2.0], rtol=1e-10)
    # The Ritz values of the gradient's Krylov space are the Hessian's: 2 and 20.
    assert found.local.lambda_min == pytest.approx(2.0) and found.local.lambda_max == pytest.approx(
        20
    )
    assert continued.stable() and continued.moved < 1e-10


@pytest.mark.parametrize(
    "start, budget", [([0.3, 0.2], NEWTON_ONLY), ([1.0, 0.0], BUDGET)], ids=["newton-mr", "lbfgs"]
)
def test_x2_minus_y2_is_found_and_labelled_a_saddle(start, budget):
    # Newton-MR goes to the saddle from anywhere near it; L-BFGS only from its stable
    # manifold (y = 0): elsewhere a descent method slides off down −y².
    found, continued, kind = searched(lambda v: 1.0 + v[0] ** 2 - v[1] ** 2, start, budget)
    assert kind == classes.SADDLE
    np.testing.assert_allclose(found.flat, [0.0, 0.0], atol=1e-12)
    assert found.local.lambda_min == pytest.approx(-2.0)
    assert continued.stable()


def test_a_saddle_between_two_minima_is_told_from_them():
    double_well = lambda v: 1.0 + v[0] ** 2 + (v[1] ** 2 - 1) ** 2
    _, _, kind = searched(double_well, [0.5, 0.1], NEWTON_ONLY)
    assert kind == classes.SADDLE  # Newton-MR: the nearest critical point, (0, 0)
    found, _, kind = searched(double_well, [1.0, 0.1])
    assert kind == classes.MINIMUM  # L-BFGS off the stable manifold: down to (0, 1)
    np.testing.assert_allclose(found.flat, [0.0, 1.0], atol=1e-8)


def test_a_cost_with_no_minimum_is_descending_not_critical():
    # exp(−x) + y² has no minimum: the cost falls for ever as x, and ‖θ‖, grow, and the
    # gradient falls with it below any fixed tolerance.
    found, continued, kind = searched(lambda v: jnp.exp(-v[0]) + v[1] ** 2, [0.0, 1.0])
    assert kind == classes.DESCENDING and continued is None and not found.critical
    assert found.local.grad_norm < 1e-10  # a fixed tolerance would have called it critical
    slope = classes.descent(found.rows).slope
    assert slope < -1  # log C falls faster than log ‖θ‖ grows: C = e^{−‖θ‖}


def test_a_flat_valley_is_gradient_flat():
    # Along the valley floor y = 1 the cost rises with slope 0.1 at x = 0, where its
    # curvature vanishes: Newton-MR, minimising ‖∇C‖², stops there with the gradient in
    # the Hessian's null space (Frye et al. 2021), not at a critical point.
    cubic = lambda v: 1.0 + (v[1] - 1) ** 2 + 0.1 * (v[0] ** 3 / 3 + v[0])
    found, _, kind = searched(cubic, [0.5, 0.0], NEWTON_ONLY)
    assert kind == classes.GRADIENT_FLAT and not found.critical
    assert found.rows[-1]["null_share"] > 0.99
    assert found.rows[-1]["rel_grad"] == pytest.approx(0.1 * np.hypot(0, 1), rel=1e-3)


def test_a_plateau_where_the_gradient_underflows_is_not_critical():
    # (½ − σ(x))² + y² at x = 1000: σ'(1000) = e^{−1000} is below float64's range, so
    # the gradient and the curvature in x are exactly 0 although the only critical point
    # is at x = 0 (C = 0): an exact zero with a null direction beside it is underflow,
    # not a certificate.
    plateau = lambda v: (0.5 - jax.nn.sigmoid(v[0])) ** 2 + v[1] ** 2
    with jax.enable_x64(True):
        at = newton.local(plateau, jnp.asarray([1000.0, 0.0]), (), CRITERIA, 2)
        assert at.grad_norm == 0 and at.cost == 0.25
        assert (at.lambda_min, at.lambda_max) == (0.0, 2.0)  # x's curvature underflowed
        assert at.null_share == 1 and not at.critical(CRITERIA)
        # Where the gradient is exactly 0 and the curvature is not null, it is critical.
        exact = newton.local(bowl, jnp.asarray([1.0, 2.0]), (), CRITERIA, 2)
        assert exact.grad_norm == 0 and exact.null_share == 0 and exact.critical(CRITERIA)
    found, continued, kind = searched(plateau, [1000.0, 0.0])
    assert kind == classes.GRADIENT_FLAT and continued is None and not found.critical


def test_an_lbfgs_block_that_ends_higher_is_undone():
    # The guard on each block of L-BFGS steps: finite and no higher than it began.
    with jax.enable_x64(True):
        f = lambda v: jnp.sum(v**2)
        assert newton._descended(f, np.asarray([1.0, 0.0]), (), cost=1.0)
        assert not newton._descended(f, np.asarray([2.0, 0.0]), (), cost=1.0)
        assert not newton._descended(f, np.asarray([np.inf, 0.0]), (), cost=1.0)


def test_the_scale_of_the_cost_does_not_change_the_answer():
    # The stop is relative: a cost a million times smaller has the same critical points
    # and the same classes (an absolute ‖∇C‖ tolerance would not).
    for scale in (1e-6, 1.0, 1e6):
        found, _, kind = searched(lambda v, s=scale: s * bowl(v), [0.0, 0.0])
        assert kind == classes.MINIMUM
        np.testing.assert_allclose(found.flat, [1.0, 2.0], rtol=1e-9)


def tiny_problem():
    """A sigmoid network 2-2-2 and 2,000 examples: 20 inputs, each seen 100 times with
    labels 0 and 1 in the proportions a teacher network of the same shape gives it.
    Most such problems have no minimum at finite weights (the cost keeps falling as
    units saturate); this one, checked below, has an isolated one, at ‖θ‖ ≈ 7.6."""
    rng = np.random.default_rng(3)
    inputs = rng.normal(size=(20, 2))
    w, b, v, c = rng.normal(size=(2, 2)), rng.normal(size=2), rng.normal(size=2), rng.normal()
    sigmoid = lambda z: 1 / (1 + np.exp(-z))
    zeros = np.round(100 * sigmoid(sigmoid(inputs @ w + b) @ v + c)).astype(int)
    x = np.concatenate([np.repeat(inputs, zeros, 0), np.repeat(inputs, 100 - zeros, 0)])
    labels = np.concatenate([np.zeros(zeros.sum()), np.ones((100 - zeros).sum())])
    return mlp((2, 2, 2), init="scaled"), x, labels.astype(np.int32)


def test_a_tiny_sigmoid_network_reaches_the_float64_reference_minimum():
    model_config, x, labels = tiny_problem()
    loss = train.make_loss(model_config)
    with jax.enable_x64(True):
        start = jax.tree.map(
            lambda a: jnp.asarray(a, jnp.float64), model_config.init_params(jax.random.key(3))
        )
        flat, unravel = newton.flatten(start)
        f = lambda v, xs, ys: loss(unravel(v), xs, ys)
        args = (jnp.asarray(x), jnp.asarray(labels))
        # The reference: scipy's exact trust region on the dense float64 Hessian.
        cost = jax.jit(lambda v: f(v, *args))
        reference = scipy.optimize.minimize(
            cost, flat, jac=jax.jit(jax.grad(cost)), hess=jax.jit(jax.hessian(cost)),
            method="trust-exact", options={"gtol": 1e-13, "maxiter": 2000},
        )  # fmt: skip
        eigenvalues = np.linalg.eigvalsh(np.asarray(jax.hessian(cost)(reference.x)))
        assert eigenvalues.min() > 1e-7 * eigenvalues.max()  # an isolated minimum
        reordered = (args[0][::-1], args[1][::-1])
    found, continued, kind = searched(
        f, flat, newton.Budget(500, 20, 25, 12), args=args, reordered=reordered
    )
    assert kind == classes.MINIMUM and continued.stable()
    # The same minimum up to the network's symmetries: its hidden units swapped, or one
    # flipped (σ(−z) = 1 − σ(z)). The nearest of the eight copies of the reference.
    copies = [newton.flatten(copy)[0] for copy in symmetric_copies(unravel(reference.x))]
    nearest = min(np.linalg.norm(found.flat - c) for c in copies)
    assert nearest < 1e-6 * np.linalg.norm(reference.x)
    assert found.local.cost == pytest.approx(reference.fun, rel=1e-12)


def symmetric_copies(params):
    """Every network of hidden width 2 that computes what ``params`` does: each hidden
    unit flipped or not (W₁ and b₁ negated, its outgoing weights negated and added to
    the output bias), in either order."""
    (w1, b1), (w2, b2) = [(np.asarray(w), np.asarray(b)) for w, b in params]
    copies = []
    for flips in ((), (0,), (1,), (0, 1)):
        fw1, fb1, fw2, fb2 = w1.copy(), b1.copy(), w2.copy(), b2.copy()
        for j in flips:
            fw1[:, j], fb1[j] = -fw1[:, j], -fb1[j]
            fb2 = fb2 + fw2[j]
            fw2[j] = -fw2[j]
        for order in ([0, 1], [1, 0]):
            copies.append([(fw1[:, order], fb1[order]), (fw2[order], fb2)])
    return copies


def test_the_study_polish_certifies_the_tiny_minimum_and_keeps_it_in_float64():
    model_config, x, labels = tiny_problem()
    study = MinimaConfig(polish_steps=500, polish_every=25, newton_iters=12, lanczos_iters=12)
    start = model_config.init_params(jax.random.key(3))
    stacked = jax.tree.map(lambda *leaves: np.stack(leaves), start, start)
    key = jax.random.key(0)
    found = polish.polish_networks(model_config, stacked, (x, labels), study, key=key)
    assert found.params[0][0].dtype == np.float64
    assert found.verdicts["critical"].tolist() == [True, True]
    assert found.verdicts["stable"].tolist() == [True, True]
    assert found.verdicts["continued_moved"].max() < 1e-6
    assert sorted(set(found.trajectory["network"].tolist())) == [0, 1]
    assert {"lbfgs", "continue-lbfgs"} <= set(found.trajectory["phase"].tolist())
    # Searched again from where it ended, a critical point is not moved at all.
    again = polish.polish_networks(model_config, found.params, (x, labels), study, key=key)
    assert again.verdicts["lbfgs_steps"].tolist() == [0, 0]
    np.testing.assert_array_equal(again.params[0][0], found.params[0][0])


def test_a_polish_killed_midway_goes_on_from_its_last_network(tmp_path, monkeypatch):
    # Three networks, the third one's search "killed": the first two are on disk, and
    # the polish run again searches only the third, to what an unbroken polish finds.
    model_config, x, labels = tiny_problem()
    study = MinimaConfig(polish_steps=60, polish_every=20, newton_iters=6, lanczos_iters=6)
    starts = [model_config.init_params(jax.random.key(k)) for k in (3, 4, 5)]
    stacked = jax.tree.map(lambda *leaves: np.stack(leaves), *starts)
    key, path = jax.random.key(0), tmp_path / "polished.partial.npz"
    whole = polish.polish_networks(model_config, stacked, (x, labels), study, key=key)

    searched, one = [], polish._one

    def killed_at_the_third(*args):
        if len(searched) == 2:
            raise KeyboardInterrupt
        searched.append(1)
        return one(*args)

    monkeypatch.setattr(polish, "_one", killed_at_the_third)
    with pytest.raises(KeyboardInterrupt):
        polish.polish_networks(model_config, stacked, (x, labels), study, key=key,
                               progress=stage.Progress(path, "key"))  # fmt: skip
    assert path.exists()
    monkeypatch.setattr(polish, "_one", lambda *args: searched.append(1) or one(*args))
    found = polish.polish_networks(model_config, stacked, (x, labels), study, key=key,
                                   progress=stage.Progress(path, "key"))  # fmt: skip
    assert len(searched) == 3  # two before the kill, one after
    for a, b in zip(jax.tree.leaves(found), jax.tree.leaves(whole), strict=True):
        np.testing.assert_array_equal(a, b)
    # Kept for other inputs, nothing is used.
    assert stage.Progress(path, "another key").get(0) is None


def test_the_continuation_runs_ten_times_the_steps_measured_as_often():
    # It stops as soon as a measurement says float64 cannot move the point: on the
    # bowl, within one block of the polish's cadence, not after ten times a block.
    longer = BUDGET.times(10)
    assert (longer.lbfgs_steps, longer.newton_steps, longer.every) == (2000, 200, 10)
    _, continued, kind = searched(bowl, [0.0, 0.0])
    assert kind == classes.MINIMUM and 0 < continued.steps <= BUDGET.every
    assert all(r["step"] % BUDGET.every == 0 or r is continued.found.rows[-1]
               for r in continued.found.rows if r["phase"] == "continue-lbfgs")  # fmt: skip


@pytest.mark.parametrize(
    "grad_norm, grad_noise, rounding",
    [(1e-15, 1e-15, True), (1e-14, 1e-15, True), (1e-13, 1e-15, False), (0.0, 0.0, False)],
)
def test_a_gradient_is_rounding_up_to_ten_times_its_noise(grad_norm, grad_noise, rounding):
    # Where it is, and the Newton step is below resolution, a continuation stops: float64
    # cannot see a direction to go. An exactly zero gradient is underflow, not rounding.
    at = newton.Local(1.0, grad_norm, 1.0, grad_norm, 0.0, 0.0, 0.0, 1.0, 1.0, grad_noise, None)
    assert at.rounding() is rounding


def plateau(v):
    # One output saturated at the wrong value (σ(40·v₀) ≈ 0 where 1 is wanted) and one
    # saturated right with a large weight (σ(v₁) = 0 exactly at v₁ = −1,000): the cost
    # sits at ½ on a plateau that falls only as v₀ → +∞. It has no minimum.
    return 0.5 * (1 - jax.nn.sigmoid(40 * v[0])) ** 2 + 0.5 * jax.nn.sigmoid(v[1]) ** 2


@pytest.mark.parametrize("scale", [1.0, 1e6])
def test_a_saturated_plateau_fools_the_stop_but_is_not_certified(scale):
    found, continued, kind = searched(lambda v: scale * plateau(v), [-1.5, -1000.0])
    # What digits without weight decay showed: every number the stop reads is tiny
    # next to the cost's scale, and continuing cannot move the point.
    assert found.critical and continued.stable()
    share = classes.curvature_share(found.local.cost, found.local.param_norm,
                                    (found.local.lambda_min, found.local.lambda_max))  # fmt: skip
    assert share < 1e-10
    assert kind == classes.UNCONVERGED  # not a minimum: the curvature says nothing


def test_a_minimum_at_any_scale_of_the_cost_keeps_its_curvature_resolved():
    # The scale-free share is the same for 10⁻²⁰ times the bowl: still a minimum.
    found, _, kind = searched(lambda v: 1e-20 * bowl(v), [0.0, 0.0])
    share = classes.curvature_share(found.local.cost, found.local.param_norm,
                                    (found.local.lambda_min, found.local.lambda_max))  # fmt: skip
    assert kind == classes.MINIMUM and share == pytest.approx(0.5 * 20 * 5 / 1.0, rel=1e-6)
