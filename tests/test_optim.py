"""Update rules: the seed's gd, optax's optimisers, and η held as state."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from gd_jax import optim, train
from gd_jax.errors import GdJaxError

# f(v) = ½ Σ aᵢ (vᵢ − cᵢ)²: minimum 0 at v = c, Hessian diag(a), so gd is stable for η < 2/max(a).
CURVATURE = jnp.array([1.0, 4.0])
CENTRE = {"u": jnp.array([1.0, -2.0]), "w": jnp.array([[0.5]])}


def parabola(v):
    u = 0.5 * jnp.sum(CURVATURE * jnp.square(v["u"] - CENTRE["u"]))
    return u + 0.5 * jnp.sum(jnp.square(v["w"] - CENTRE["w"]))


def descend(tx, steps, v=None):
    v = v or {"u": jnp.array([3.0, 3.0]), "w": jnp.array([[-1.0]])}
    state = tx.init(v)

    @jax.jit
    def step(v, state):
        updates, state = tx.update(jax.grad(parabola)(v), state, v)
        return optax.apply_updates(v, updates), state

    for _ in range(steps):
        v, state = step(v, state)
    return v


def test_gd_is_the_seeds_rule():
    v = {"u": jnp.array([3.0, 3.0]), "w": jnp.array([[-1.0]])}
    g = jax.grad(parabola)(v)
    stepped = optim.gd_step(v, g, 0.1)
    np.testing.assert_allclose(stepped["u"], v["u"] - 0.1 * g["u"])
    updates, _ = optim.gd(0.1).update(g, optim.gd(0.1).init(v))
    np.testing.assert_allclose(optax.apply_updates(v, updates)["w"], stepped["w"])


def test_gd_equals_optax_sgd_without_momentum():
    ours = descend(optim.make("gd", 0.1), 25)
    theirs = descend(optax.sgd(0.1), 25)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6)


@pytest.mark.parametrize(
    "name, learning_rate, momentum, steps",
    [
        ("gd", 0.4, None, 200),
        ("sgd", 0.1, 0.9, 300),
        ("nesterov", 0.1, None, 300),
        ("adam", 0.05, None, 2000),
        ("rmsprop", 0.01, None, 2000),
    ],
)
def test_each_optimizer_finds_the_bottom_of_a_parabola(name, learning_rate, momentum, steps):
    v = descend(optim.make(name, learning_rate, momentum), steps)
    np.testing.assert_allclose(v["u"], CENTRE["u"], atol=2e-2)
    np.testing.assert_allclose(v["w"], CENTRE["w"], atol=2e-2)
    assert float(parabola(v)) < 1e-3


def test_gd_diverges_past_two_over_the_largest_curvature():
    # λ_max = 4, so η < 0.5 converges and η > 0.5 grows without bound.
    below = descend(optim.make("gd", 0.49), 400)
    above = descend(optim.make("gd", 0.51), 400)
    assert float(parabola(below)) < 1e-6
    assert float(parabola(above)) > 1e3


def test_learning_rate_is_state_and_changing_it_does_not_recompile(compile_counter):
    tx = optim.make("sgd", 0.1, 0.5)
    loss = lambda p, x, y: parabola(p)
    step = jax.jit(train.make_step(loss, tx))
    v = {"u": jnp.array([3.0, 3.0]), "w": jnp.array([[-1.0]])}
    state = train.init_state(v, tx)
    dummy = jnp.zeros(())
    states = [state] + [
        state._replace(opt_state=optim.set_learning_rate(state.opt_state, eta))
        for eta in (0.2, 0.05)
    ]
    step(states[0], dummy, dummy)  # compiles once
    with compile_counter() as compiles:
        results = [step(s, dummy, dummy)[0] for s in states[1:]]
    assert len(compiles) == 0
    assert float(optim.learning_rate(states[1].opt_state)) == pytest.approx(0.2)
    moved = [float(jnp.abs(r.params["u"][0] - 3.0)) for r in results]
    assert moved[0] == pytest.approx(4 * moved[1], rel=1e-5)  # step ∝ η


@pytest.mark.parametrize(
    "name, momentum, match",
    [("gd", 0.9, "--momentum"), ("adam", 0.5, "--momentum"), ("sgd", 1.0, r"\[0, 1\)")],
)
def test_bad_momentum_is_a_clear_error(name, momentum, match):
    with pytest.raises(GdJaxError, match=match):
        optim.make(name, 0.1, momentum)
