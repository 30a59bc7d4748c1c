"""Strict JAX for every test: implicit rank promotion is an error."""

import os

# TensorFlow (imported only by the TFDS tests) is noisy on import.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax

jax.config.update("jax_numpy_rank_promotion", "raise")

import contextlib  # noqa: E402

import pytest  # noqa: E402

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def count_compiles():
    """Counts XLA compilations inside the block (yields a list; its length is the count)."""
    events = []

    def listener(name, seconds, **kwargs):
        del seconds, kwargs
        if name == _COMPILE_EVENT:
            events.append(name)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield events
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


@pytest.fixture
def compile_counter():
    return count_compiles
