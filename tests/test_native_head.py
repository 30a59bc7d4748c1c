"""The native head: the same steps as the core (jax.grad of train.make_loss), taken only
where it builds, loads and agrees, and a cache of built libraries that repairs itself."""

import itertools
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_trees_close, assert_trees_equal, mlp, tiny_data

from gd_jax import costs, optim
from gd_jax.config import TrainConfig
from gd_jax.errors import GdJaxError
from gd_jax.fast import check, native, paths
from gd_jax.sweep import engine

needs_compiler = pytest.mark.skipif(
    native._library()[0] is None,
    reason="the native head cannot be built here: " + native._library()[1],
)


@pytest.fixture
def fresh_caches():
    """The library and the checks forgotten before and after a test that changes what
    they would find."""
    native._library.cache_clear()
    check.forget()
    yield
    native._library.cache_clear()
    check.forget()


def choose(model_config, head="auto", batch_size=10):
    config = TrainConfig(dataset="digits", batch_size=batch_size, head=head)
    return paths.choose(config, model_config, sweep=True)


@needs_compiler
@pytest.mark.parametrize(
    "sizes",
    [(784, 16, 16, 10), (12, 8, 8, 4), (6, 4), (7, 5, 5, 5, 3), (12, 20, 33, 10)],
)
def test_the_native_head_takes_the_cores_steps(sizes):
    # 19 networks (a whole group of SIMD lanes and a remainder), two blocks of 16 steps
    # and one of 8, and two full-batch steps, against jax.grad of train.make_loss.
    for full in (False, True):
        assert check.delayed_path(mlp(sizes), full=full, native=True) == ""


@needs_compiler
def test_a_sweep_of_the_seeds_network_takes_the_native_head_and_says_so():
    path = choose(mlp((784, 16, 16, 10)))
    assert (path.epoch, path.head) == ("delayed", "native")
    assert "native head checked" in path.why


def test_other_models_keep_xlas_head_and_refuse_it_by_name():
    for config in (mlp((12, 4), activation="tanh"), mlp((12, 4), cost="cross_entropy")):
        assert "not this" in native.unavailable(config)
        assert choose(config).head == "xla"
        with pytest.raises(GdJaxError, match="--head=native cannot be used: it computes"):
            choose(config, head="native")


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
    block = jax.jit(native.block)
    costs, deltas, new_b1, new_rest = block(start, gram, labels, eta, b1, rest)
    bad = block(poisoned_start, gram, labels, eta, b1, poisoned)
    others = np.setdiff1d(np.arange(20), [5, 17])
    for clean, dirty in zip(jax.tree.leaves((costs, deltas, new_b1, new_rest)),
                            jax.tree.leaves(bad), strict=True):  # fmt: skip
        assert_trees_equal(np.asarray(clean)[..., others], np.asarray(dirty)[..., others])
    assert np.isnan(bad[0][-1, 5]) and np.isnan(bad[0][-1, 17])
    assert np.isfinite(bad[0][0, 5])  # step 0 came before its NaN pre-activation


@needs_compiler
def test_the_native_sweep_trains_as_the_xla_sweep_over_epochs():
    sizes, batch_size = (12, 8, 6, 4), 3  # 26 steps an epoch: 16 + a short block of 10
    model_config = mlp(sizes)
    tx = optim.make("gd", 1.0)
    networks = engine.Networks(np.geomspace(0.05, 3.0, 20), np.arange(20))
    state = engine.init(networks, model_config, tx)
    x, labels = tiny_data(80, sizes[0], sizes[-1], seed=2)
    keys = [jax.random.key(k) for k in range(3)]

    def build(head):
        path = choose(model_config, head=head, batch_size=batch_size)
        assert path.head == head
        loss = paths.functions(model_config, path).loss
        return jax.jit(engine.build_epoch(model_config, path, tx, batch_size,
                                          shared_order=True, loss=loss))  # fmt: skip

    def three_epochs(head):
        epoch, s, costs_ = build(head), state, []
        for key in keys:
            s, cost = epoch(s, x, labels, key)
            costs_.append(cost)
        return s, np.stack(costs_)

    text = lambda head: build(head).lower(state, x, labels, keys[0]).as_text()
    assert native.TARGET in text("native") and native.TARGET not in text("xla")
    (ours, our_costs), (xla, xla_costs) = three_epochs("native"), three_epochs("xla")
    assert_trees_close(ours, xla, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(our_costs, xla_costs, rtol=1e-5)
    assert ours.train.step.tolist() == [26 * 3] * 20


@needs_compiler
def test_a_head_that_no_longer_computes_the_cores_cost_is_turned_off(
    monkeypatch, fresh_caches, caplog
):
    # The core's cost changed (doubled): XLA's head follows it, the C++ code does not.
    doubled = costs.MSE._replace(fn=lambda a, y: 2 * costs.mse(a, y))
    monkeypatch.setitem(costs.COSTS, "mse", doubled)
    config = mlp((12, 8, 4))
    assert "differs from the core's" in check.delayed_path(config, full=False, native=True)
    with caplog.at_level("WARNING"):
        path = choose(config)
    assert (path.epoch, path.head) == ("delayed", "xla")
    assert "The native head is not used" in caplog.text
    with pytest.raises(GdJaxError, match="--head=native cannot be used: the change of"):
        choose(config, head="native")


def test_without_a_compiler_the_xla_head_is_kept(monkeypatch, fresh_caches, caplog):
    monkeypatch.setattr(native, "_compiler", lambda: None)
    library, why = native._library()
    assert library is None and "no C++ compiler" in why
    with caplog.at_level("WARNING"):
        assert choose(mlp((12, 8, 4))).head == "xla"
    assert "no C++ compiler" in caplog.text
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        native.block(*block_inputs())


@pytest.mark.parametrize("value, off", [
    ("0", True), ("OFF", True), ("False", True), ("FALSE", True), ("0.0", True), ("no", True),
    (" off ", True), ("1", False), ("on", False), ("", False), ("yes", False),
])  # fmt: skip
def test_the_switch_reads_the_usual_spellings(monkeypatch, fresh_caches, value, off):
    monkeypatch.setenv("GD_JAX_NATIVE_HEAD", value)
    assert native.disabled() is off
    if off:
        assert "turns it off" in native._library()[1]
        assert choose(mlp((12, 8, 4))).head == "xla"


def test_without_a_home_folder_the_xla_head_is_kept(monkeypatch, fresh_caches, caplog):
    monkeypatch.delenv("GD_JAX_CACHE", raising=False)
    monkeypatch.delenv("HOME", raising=False)

    def no_home():
        raise RuntimeError("Could not determine home directory.")

    monkeypatch.setattr(native.Path, "home", staticmethod(no_home))
    library, why = native._library()
    assert library is None and "set GD_JAX_CACHE" in why
    with caplog.at_level("WARNING"):
        assert choose(mlp((12, 8, 4))).head == "xla"
    assert "no home directory" in caplog.text


@needs_compiler
def test_a_source_that_does_not_build_says_why_and_leaves_nothing(
    monkeypatch, fresh_caches, tmp_path
):
    broken = tmp_path / "native_head.cc"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(native, "SOURCE", broken)
    monkeypatch.setenv("GD_JAX_CACHE", str(tmp_path / "cache"))
    library, why = native._library()
    assert library is None and "could not build native_head.cc" in why
    assert list((tmp_path / "cache").iterdir()) == []  # no half-built library left


# A stand-in for a compiler: it logs its calls and builds, whatever the source, a
# library holding the one symbol the native head looks up, with the machine's C compiler.
FAKE_COMPILER = """#!/bin/sh
echo "$@" >> "$(dirname "$0")/calls"
[ "$1" = "--version" ] && { echo "fake c++ 1.0"; exit 0; }
while [ $# -gt 0 ]; do
  [ "$1" = "-o" ] && echo 'void GdJaxHeadBlock(void) {}' | cc -shared -fPIC -x c - -o "$2"
  shift
done
"""
needs_cc = pytest.mark.skipif(
    subprocess.run(["sh", "-c", "command -v cc"], capture_output=True, timeout=10).returncode,
    reason="no C compiler for the stand-in",
)


def fake_compiler(tmp_path, script=FAKE_COMPILER) -> str:
    compiler = tmp_path / "c++"
    compiler.write_text(script)
    compiler.chmod(0o755)
    return str(compiler)


def builds(tmp_path) -> int:
    return sum("-o" in c for c in (tmp_path / "calls").read_text().splitlines())


@needs_cc
def test_the_library_is_built_once_per_source_and_cpu(monkeypatch, tmp_path):
    compiler = fake_compiler(tmp_path)
    monkeypatch.setenv("GD_JAX_CACHE", str(tmp_path / "cache"))
    first = native._built(compiler)
    assert native._built(compiler) == first and builds(tmp_path) == 1
    assert first.name.startswith("native_head_") and native._intact(first)
    # Another CPU (a cluster node with other features) gets a library of its own, and
    # so does another source.
    monkeypatch.setattr(native, "_cpu_signature", lambda: "flags : another cpu")
    second = native._built(compiler)
    source = tmp_path / "native_head.cc"
    source.write_text(native.SOURCE.read_text() + "// changed\n")
    monkeypatch.setattr(native, "SOURCE", source)
    third = native._built(compiler)
    assert len({first, second, third}) == 3 and builds(tmp_path) == 3
    names = {p.name for p in (tmp_path / "cache").iterdir()}
    assert names == {n for p in (first, second, third) for n in (p.name, p.stem + ".sha256")}


@needs_cc
@pytest.mark.parametrize("damage", ["cut short", "garbage", "empty"])
def test_a_damaged_library_in_the_cache_is_built_again_never_loaded(
    monkeypatch, tmp_path, caplog, damage
):
    compiler = fake_compiler(tmp_path)
    monkeypatch.setenv("GD_JAX_CACHE", str(tmp_path / "cache"))
    built = native._built(compiler)
    whole = built.read_bytes()
    broken = {"cut short": whole[: len(whole) // 2], "garbage": b"\x7fELF" + bytes(64),
              "empty": b""}[damage]  # fmt: skip
    built.write_bytes(broken)
    with caplog.at_level("WARNING"):
        again = native._built(compiler)
    assert again == built and builds(tmp_path) == 2 and native._intact(again)
    assert "does not hold the bytes it was built with" in caplog.text


@needs_cc
def test_a_compiler_that_makes_no_library_poisons_nothing(monkeypatch, tmp_path):
    # /bin/true as a "compiler": it succeeds and writes nothing (or an empty file).
    nothing = fake_compiler(tmp_path, '#!/bin/sh\nwhile [ $# -gt 0 ]; do [ "$1" = "-o" ] && '
                                      ': > "$2"; shift; done\n')  # fmt: skip
    monkeypatch.setenv("GD_JAX_CACHE", str(tmp_path / "cache"))
    with pytest.raises(native._BuildError, match="built a library that does not load"):
        native._built(nothing)
    assert list((tmp_path / "cache").iterdir()) == []
    # A working compiler later builds and caches it, no file standing in its way.
    assert native._intact(native._built(fake_compiler(tmp_path)))


def test_what_a_killed_build_left_is_cleared(tmp_path):
    host = native.socket.gethostname()
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = {
        "dead here": tmp_path / f".native_head_k.{host}.{dead.pid}.tmp.so",
        "alive here": tmp_path / f".native_head_k.{host}.{os.getpid()}.tmp.so",
        "old elsewhere": tmp_path / ".native_head_k.other.host.12.tmp.sha256",
        "young elsewhere": tmp_path / ".native_head_k.other.host.13.tmp.so",
    }
    for path in left.values():
        path.write_text("partial")
    hour_ago = time.time() - 3600
    os.utime(left["old elsewhere"], (hour_ago, hour_ago))
    native._clean_dead_builds(tmp_path)
    assert {k for k, p in left.items() if p.exists()} == {"alive here", "young elsewhere"}


def test_an_interrupted_build_leaves_no_compiler_running(tmp_path):
    # A compiler driver whose child (cc1plus, say) outlives it unless its session ends.
    pid_file = tmp_path / "grandchild"
    driver = fake_compiler(tmp_path, f"#!/bin/sh\nsleep 60 &\necho $! > {pid_file}\nwait\n")
    previous = signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        signal.setitimer(signal.ITIMER_REAL, 1.0)
        with pytest.raises(KeyboardInterrupt):
            native._run_alone([driver], timeout=30)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    grandchild = int(pid_file.read_text())
    for _ in range(50):  # the kill is sent; give the kernel a moment to reap
        if not native._alive(grandchild) or _zombie(grandchild):
            break
        time.sleep(0.1)
    assert not native._alive(grandchild) or _zombie(grandchild)
    with pytest.raises(native._BuildError, match=r"took over 0\.5 s"):
        native._run_alone([driver], timeout=0.5)


def _zombie(pid: int) -> bool:
    try:
        return "State:\tZ" in Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False


@needs_compiler
def test_a_library_cut_short_after_its_build_is_rebuilt_not_loaded(tmp_path):
    # The real library, in a process of its own each time: loading a cut-short shared
    # object would end the process with a bus error.
    env = {**os.environ, "GD_JAX_CACHE": str(tmp_path), "JAX_PLATFORMS": "cpu"}
    probe = textwrap.dedent("""
        from gd_jax.fast import native
        library, why = native._library()
        print("loaded" if library is not None else why)
    """)
    run = lambda: subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                 env=env, timeout=300)  # fmt: skip
    assert run().stdout.strip() == "loaded"
    (built,) = tmp_path.glob("native_head_*.so")
    os.truncate(built, 65536)
    again = run()
    assert again.returncode == 0 and again.stdout.strip() == "loaded", again.stderr[-2000:]
    assert "building it again" in again.stderr and native._intact(built)


@needs_compiler
def test_where_a_network_sits_among_the_others_changes_none_of_its_numbers():
    # 20 networks: a whole group of lanes and a short one, padded; reversed, every
    # network changes group and lane, and its numbers stay bit for bit the same.
    start, gram, labels, eta, b1, rest = block_inputs()
    flip = lambda a: a[..., ::-1]
    block = jax.jit(native.block)
    straight = block(start, gram, labels, eta, b1, rest)
    reversed_ = block(flip(start), gram, labels, flip(eta), flip(b1), jax.tree.map(flip, rest))
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(reversed_), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(flip(b)))


def test_several_devices_keep_xlas_head(monkeypatch, fresh_caches):
    monkeypatch.setattr(jax, "device_count", lambda: 2)
    assert "2 devices are visible" in native.unavailable(mlp((12, 8, 4)))
    assert choose(mlp((12, 8, 4))).head == "xla"


@needs_compiler
def test_a_single_run_keeps_xlas_head():
    # A single run's epoch has no custom call, and asking for one is refused.
    config = mlp((12, 8, 4))
    path = paths.choose(TrainConfig(dataset="digits"), config, sweep=False)
    assert path.head == "xla"
    tx = optim.make("gd", 1.0)
    epoch = paths.build_epoch(config, path, tx, 10, learning_rate=1.0)
    state = engine.train.init_state(config.init_params(jax.random.key(0)), tx)
    x, labels = tiny_data(40, 12, 4)
    text = jax.jit(epoch).lower(state, x, labels, jax.random.key(1)).as_text()
    assert native.TARGET not in text
