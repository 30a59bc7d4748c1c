"""Strict JAX for every test, and the helpers several test files share.

Test files import the helpers with ``from conftest import ...`` (pytest puts this
folder on ``sys.path``).
"""

import os
import shutil
import tempfile

# TensorFlow (imported only by the TFDS tests) is noisy on import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# One persistent compilation cache for the whole test run: most tests wait on XLA's
# compiler, and many compile the same programs (the same study in a test process and
# in the child processes it starts). Set here, before JAX is imported, by the first
# process of the run; pytest-xdist's workers and every child process inherit it. It is
# removed when the run ends (:func:`pytest_sessionfinish`), so no run reads another's.
_OWN_CACHE = "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="gd-jax-tests-xla-")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "-1"

# XLA's CPU backend at optimisation level 0 (LLVM's least), for every process of the
# run: the tests wait mostly on XLA's compiler, and a test file compiles in about 20%
# less CPU time this way (tests/test_faults, test_lr_study, test_minima_study and
# test_sweep: 5 min 13 s of CPU against 6 min 27 s at the default level). The programs
# are the same; their float32 results can differ in the last bits from the default
# level's, and every comparison the tests make is between programs compiled alike.
# A run outside the tests compiles at the default level, and so do the checks whose
# claim is about what it compiles (bit-for-bit equalities of the fast paths), in child
# processes started with :func:`default_xla_env`.
FAST_COMPILE = "--xla_backend_optimization_level=0"
DEFAULT_XLA = "GD_JAX_TESTS_DEFAULT_XLA"
if not os.environ.get(DEFAULT_XLA) and "xla_backend_optimization_level" not in os.environ.get(
    "XLA_FLAGS", ""
):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {FAST_COMPILE}".strip()


def default_xla_env() -> dict:
    """The environment of a child process that compiles as a run outside the tests does."""
    flags = os.environ.get("XLA_FLAGS", "").replace(FAST_COMPILE, "").strip()
    return {**os.environ, "XLA_FLAGS": flags, DEFAULT_XLA: "1", "JAX_PLATFORMS": "cpu"}


import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")

import contextlib  # noqa: E402
import dataclasses  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from absl import flags  # noqa: E402
from absl.testing import flagsaver  # noqa: E402

from gd_jax import model, train  # noqa: E402
from gd_jax.config import ModelConfig  # noqa: E402

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
# A program this process had not compiled, found compiled in the persistent cache: a
# compilation the code asked for all the same.
_CACHE_HIT_EVENT = "/jax/compilation_cache/cache_hits"


def pytest_sessionfinish(session):
    if _OWN_CACHE and not hasattr(session.config, "workerinput"):  # the run's first process
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@contextlib.contextmanager
def count_compiles():
    """Counts XLA compilations inside the block, those the persistent cache spared
    included (yields a list; its length is the count)."""
    events = []

    def on_duration(name, seconds, **kwargs):
        del seconds, kwargs
        if name == _COMPILE_EVENT:
            events.append(name)

    def on_event(name, **kwargs):
        del kwargs
        if name == _CACHE_HIT_EVENT:
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(on_duration)
    jax.monitoring.register_event_listener(on_event)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(on_duration)
        jax.monitoring.unregister_event_listener(on_event)


@pytest.fixture
def compile_counter():
    return count_compiles


# The smallest studies that still have every stage, shared by the tests that run a
# whole study (in this process or in a child): the same shapes compile to the same
# programs, which the run's compilation cache then holds for all of them.
TINY_LR = (
    "--dataset=digits", "--layers=8", "--learning_rates=0.5,3,30", "--seeds=1",
    "--epochs=3", "--chunk_size=1", "--full_batch_steps=40", "--track_sharpness_every=20",
    "--sharpness_examples=200", "--lanczos_iters=4", "--range_steps=40",
    "--train_size=400", "--norounding_check",
)  # fmt: skip
TINY_MINIMA = (
    "--dataset=digits", "--layers=8", "--widths=3,5", "--seeds=2", "--epochs=2",
    "--lanczos_iters=4", "--max_pairs=1", "--path_points=3", "--train_size=200",
    "--polish_steps=40", "--curve_steps=20", "--escape_points=0",
)  # fmt: skip


def cli(entry, *args: str) -> int:
    """Runs an entry point (an ``experiments`` module) in this process, as its command
    line with ``args`` would; returns its exit status. Flags are restored afterwards."""
    with flagsaver.flagsaver():
        argv = flags.FLAGS([entry.__name__, *args])
        return entry.main(argv)


def snapshot(folder) -> dict[str, bytes]:
    """Every file under ``folder`` (subfolders included), by relative path: two
    snapshots are equal only if nothing was written, added or removed."""
    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def blank(kind, **fields):
    """A record (dataclass) of ``kind`` with ``fields`` and every other field None: the
    few columns a test is about, the rest left empty."""
    return kind(**{**dict.fromkeys(f.name for f in dataclasses.fields(kind)), **fields})


def mlp(sizes, activation="sigmoid", cost="mse", init="normal") -> ModelConfig:
    """A :class:`ModelConfig` with the seed's choices unless told otherwise."""
    return ModelConfig(tuple(sizes), activation, cost, init)


def tiny_data(n: int, dim: int, classes: int, seed: int = 0):
    """``n`` uniform random inputs of size ``dim`` with random labels, as device arrays."""
    kx, ky = jax.random.split(jax.random.key(seed))
    return jax.random.uniform(kx, (n, dim)), jax.random.randint(ky, (n,), 0, classes)


def fresh_state(tx, sizes, seed: int = 0, scheme: str = "normal"):
    """A training state at step 0 for a network of ``sizes`` drawn from ``seed``."""
    return train.init_state(model.init_params(jax.random.key(seed), sizes, scheme), tx)


def network(params, i):
    """Network ``i`` of parameters stacked on a leading axis."""
    return jax.tree.map(lambda leaf: leaf[i], params)


def assert_trees_close(a, b, **tolerance) -> None:
    """Two pytrees of the same structure whose leaves agree within ``tolerance``
    (``rtol``/``atol`` of ``np.testing.assert_allclose``)."""
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **tolerance)


def assert_trees_equal(a, b) -> None:
    """Two pytrees of the same structure with bit-identical leaves."""
    leaves_a, tree_a = jax.tree.flatten(a)
    leaves_b, tree_b = jax.tree.flatten(b)
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
