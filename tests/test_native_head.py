"""The native head: the same steps as XLA's head (jax.grad of the model's cost), and
the fallbacks when it cannot be built or no longer agrees."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_close, assert_trees_equal, mlp, tiny_data

from gd_jax import fast_gd, native_head, optim, train
from gd_jax.sweep import engine

needs_compiler = pytest.mark.skipif(
    native_head._library()[0] is None,
    reason="the native head cannot be built here: " + native_head._library()[1],
)


@pytest.fixture
def fresh_caches():
    """``usable`` and the library forgotten before and after a test that changes what
    they would find."""
    native_head.usable.cache_clear()
    native_head._library.cache_clear()
    yield
    native_head.usable.cache_clear()
    native_head._library.cache_clear()


@needs_compiler
@pytest.mark.parametrize(
    "sizes",
    [(784, 16, 16, 10), (12, 8, 8, 4), (6, 4), (7, 5, 5, 5, 3), (12, 20, 33, 10)],
)
def test_the_native_head_takes_the_steps_jax_grad_takes(sizes):
    # 19 networks (a whole group of SIMD lanes and a remainder), two blocks of 16 steps
    # and one of 8, and one full-batch step: agreement to 1e-5 of each largest value.
    assert native_head._check(mlp(sizes)) == ""


def test_other_models_keep_xlas_head():
    for config in (mlp((12, 4), activation="tanh"), mlp((12, 4), cost="cross_entropy")):
        assert not native_head.usable(config)


def block_inputs(n=20, steps=3, size=4, sizes=(6, 5, 3), seed=0):
    rng = np.random.default_rng(seed)
    draw = lambda *shape: jnp.asarray(rng.normal(size=shape).astype(np.float32))
    h = sizes[1]
    start = draw(steps, size, h, n)
    x = draw(steps * size, 9)
    rest = [(draw(i, j, n), draw(j, n)) for i, j in itertools.pairwise(sizes[1:])]
    labels = jnp.asarray(rng.integers(0, sizes[-1], (steps, size)), jnp.int32)
    eta = jnp.asarray(np.linspace(0.1, 3, n), jnp.float32)
    return start, x @ x.T, labels, eta, draw(h, n), rest


@needs_compiler
def test_a_network_gone_to_nan_leaves_every_other_network_bit_identical():
    start, gram, labels, eta, b1, rest = block_inputs()
    poisoned = [(rest[0][0].at[2, 1, 17].set(jnp.nan), rest[0][1])]  # the remainder's lanes
    poisoned_start = start.at[1, 0, 3, 5].set(jnp.nan)  # a whole group's lanes
    block = jax.jit(native_head.block)
    costs, deltas, new_b1, new_rest = block(start, gram, labels, eta, b1, rest)
    bad = block(poisoned_start, gram, labels, eta, b1, poisoned)
    others = np.setdiff1d(np.arange(20), [5, 17])
    for clean, dirty in zip(jax.tree.leaves((costs, deltas, new_b1, new_rest)),
                            jax.tree.leaves(bad), strict=True):  # fmt: skip
        assert_trees_equal(np.asarray(clean)[..., others], np.asarray(dirty)[..., others])
    assert np.isnan(bad[0][-1, 5]) and np.isnan(bad[0][-1, 17])
    assert np.isfinite(bad[0][0, 5])  # step 0 came before its NaN pre-activation


@needs_compiler
def test_the_native_sweep_trains_as_the_xla_sweep_over_epochs(monkeypatch):
    sizes, batch_size = (12, 8, 6, 4), 3  # 26 steps an epoch: 16 + a short block of 10
    model_config = mlp(sizes)
    assert native_head.usable(model_config)  # else both runs below take XLA's head
    tx = optim.make("gd", 1.0)
    networks = engine.Networks(np.geomspace(0.05, 3.0, 20), np.arange(20))
    state = engine.init(networks, model_config, tx)
    x, labels = tiny_data(80, sizes[0], sizes[-1], seed=2)
    keys = [jax.random.key(k) for k in range(3)]

    build = lambda: jax.jit(
        engine.build_epoch(model_config, "gd", tx, batch_size, shared_order=True)
    )
    epoch_text = lambda: build().lower(state, x, labels, keys[0]).as_text()

    def three_epochs():
        epoch = build()
        s, costs = state, []
        for key in keys:
            s, cost = epoch(s, x, labels, key)
            costs.append(cost)
        return s, np.stack(costs)

    native_text = epoch_text()
    native, native_costs = three_epochs()
    monkeypatch.setattr(native_head, "usable", lambda config: False)
    assert native_head.TARGET in native_text and native_head.TARGET not in epoch_text()
    xla, xla_costs = three_epochs()
    assert_trees_close(native, xla, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(native_costs, xla_costs, rtol=1e-5)
    assert native.train.step.tolist() == [26 * 3] * 20


def test_a_head_that_no_longer_matches_the_models_cost_is_turned_off(
    monkeypatch, fresh_caches, caplog
):
    if native_head._compiler() is None or native_head.disabled():
        pytest.skip("no native head to check here")
    honest = train.make_head_loss

    def doubled(model_config, matmul=jnp.matmul):  # the cost as someone changed it
        loss = honest(model_config, matmul)
        return lambda z, rest, labels: 2 * loss(z, rest, labels)

    monkeypatch.setattr(train, "make_head_loss", doubled)
    config = mlp((12, 8, 4))
    assert "differs from jax.grad's" in native_head._check(config)
    with caplog.at_level("WARNING"):
        assert not native_head.usable(config)
    assert "native head not used" in caplog.text and "GD_JAX_NATIVE_HEAD=0" in caplog.text


def test_without_a_compiler_the_xla_head_is_kept(monkeypatch, fresh_caches, caplog):
    monkeypatch.setattr(native_head, "_compiler", lambda: None)
    library, why = native_head._library()
    assert library is None and "no C++ compiler" in why
    with caplog.at_level("WARNING"):
        assert not native_head.usable(mlp((12, 8, 4)))
    assert "no C++ compiler" in caplog.text
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        native_head.block(*block_inputs())


def test_the_switch_turns_it_off(monkeypatch, fresh_caches):
    monkeypatch.setenv("GD_JAX_NATIVE_HEAD", "0")
    assert native_head._library() == (None, "GD_JAX_NATIVE_HEAD=0")
    assert not native_head.usable(mlp((12, 8, 4)))


@needs_compiler
def test_a_source_that_does_not_build_says_why_and_leaves_nothing(
    monkeypatch, fresh_caches, tmp_path
):
    broken = tmp_path / "native_head.cc"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(native_head, "SOURCE", broken)
    monkeypatch.setenv("GD_JAX_CACHE", str(tmp_path / "cache"))
    library, why = native_head._library()
    assert library is None and "could not build native_head.cc" in why
    assert list((tmp_path / "cache").iterdir()) == []  # no half-built library left


FAKE_COMPILER = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/calls"
[ "$1" = "--version" ] && { echo "fake c++ 1.0"; exit 0; }
while [ $# -gt 0 ]; do [ "$1" = "-o" ] && echo built > "$2"; shift; done
"""


def test_the_library_is_built_once_per_source_and_cpu(monkeypatch, tmp_path):
    compiler = tmp_path / "c++"
    compiler.write_text(FAKE_COMPILER)
    compiler.chmod(0o755)
    monkeypatch.setenv("GD_JAX_CACHE", str(tmp_path / "cache"))
    builds = lambda: [c for c in (tmp_path / "calls").read_text().splitlines() if "-o" in c]
    first = native_head._built(str(compiler))
    assert native_head._built(str(compiler)) == first and len(builds()) == 1
    assert first.read_text() == "built\n" and first.name.startswith("native_head_")
    # Another CPU (a cluster node with other features) gets a library of its own, and
    # so does another source.
    monkeypatch.setattr(native_head, "_cpu_signature", lambda: "flags : another cpu")
    second = native_head._built(str(compiler))
    source = tmp_path / "native_head.cc"
    source.write_text(native_head.SOURCE.read_text() + "// changed\n")
    monkeypatch.setattr(native_head, "SOURCE", source)
    third = native_head._built(str(compiler))
    assert len({first, second, third}) == 3 and len(builds()) == 3
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        p.name for p in (first, second, third)
    )  # no temporary file left beside them


@needs_compiler
def test_where_a_network_sits_among_the_others_changes_none_of_its_numbers():
    # 20 networks: a whole group of lanes and a short one, padded; reversed, every
    # network changes group and lane, and its numbers stay bit for bit the same.
    start, gram, labels, eta, b1, rest = block_inputs()
    flip = lambda a: a[..., ::-1]
    block = jax.jit(native_head.block)
    straight = block(start, gram, labels, eta, b1, rest)
    reversed_ = block(flip(start), gram, labels, flip(eta), flip(b1), jax.tree.map(flip, rest))
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(reversed_), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(flip(b)))


def test_several_devices_keep_xlas_head(monkeypatch, fresh_caches):
    monkeypatch.setattr(jax, "device_count", lambda: 2)
    assert not native_head.usable(mlp((12, 8, 4)))


@needs_compiler
def test_a_single_run_keeps_xlas_head():
    # One network gains nothing from the native head (benchmarks/README.md): a single
    # run's epoch has no custom call.
    config = mlp((12, 8, 4))
    tx = optim.make("gd", 1.0)
    epoch = fast_gd.build_epoch(config, "gd", tx, 10, learning_rate=1.0)
    state = train.init_state(config.init_params(jax.random.key(0)), tx)
    x, labels = tiny_data(40, 12, 4)
    text = jax.jit(epoch).lower(state, x, labels, jax.random.key(1)).as_text()
    assert native_head.TARGET not in text
