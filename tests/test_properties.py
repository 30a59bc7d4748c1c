"""Property-based: whatever a user types or a file holds, gd-jax either takes it or
raises its own error (one paragraph, no traceback), never another exception."""

import math
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from gd_jax import data
from gd_jax.config import TrainConfig, parse_layers
from gd_jax.errors import GdJaxError
from gd_jax.studies.lr.config import LrConfig, parse_learning_rates
from gd_jax.studies.minima.config import MinimaConfig, parse_widths

# Derandomized: the same examples on every run, so a failure in CI reproduces here.
FAST = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(10**30), 10**30),
)
TEXT = st.text(alphabet="0123456789.,:-+eEinfalogspcNo ", max_size=30)


def spelled(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


@FAST
@given(st.one_of(TEXT, st.lists(NUMBERS, max_size=6).map(lambda v: ",".join(map(spelled, v)))))
def test_learning_rates_are_valid_or_a_clear_error(text):
    try:
        etas = parse_learning_rates(text)
        study = LrConfig(learning_rates=etas)
    except GdJaxError as e:
        assert "--learning_rates" in str(e)
        return
    assert study.learning_rates and len(set(etas)) == len(etas)
    assert all(math.isfinite(eta) and eta > 0 for eta in etas)


@FAST
@given(
    low=NUMBERS,
    high=NUMBERS,
    count=st.integers(-3, 40),
)
def test_log_ranges_are_valid_or_a_clear_error(low, high, count):
    try:
        etas = parse_learning_rates(f"logspace:{spelled(low)}:{spelled(high)}:{count}")
        LrConfig(learning_rates=etas)
    except GdJaxError:
        return
    assert len(etas) == count and etas == tuple(sorted(etas))


@FAST
@given(
    st.one_of(
        TEXT, st.lists(st.integers(-5, 10**6), max_size=5).map(lambda v: ",".join(map(str, v)))
    )
)
def test_layer_and_width_strings_are_valid_or_a_clear_error(text):
    for parse, flag in ((parse_layers, "--layers"), (parse_widths, "--widths")):
        try:
            widths = parse(text)
        except GdJaxError as e:
            assert flag in str(e)
            continue
        assert all(isinstance(w, int) and w > 0 for w in widths)
        if parse is parse_layers:
            TrainConfig(layers=widths)
        else:
            try:
                MinimaConfig(widths=widths)
            except GdJaxError as e:
                assert "--widths" in str(e)


@FAST
@given(
    learning_rate=NUMBERS,
    momentum=st.one_of(st.none(), NUMBERS),
    seed=st.integers(-(2**40), 2**40),
    batch_size=st.integers(-5, 100),
    optimizer=st.sampled_from(["gd", "sgd", "nesterov", "adam", "rmsprop"]),
)
def test_a_train_config_is_valid_or_a_clear_error(
    learning_rate, momentum, seed, batch_size, optimizer
):
    try:
        config = TrainConfig(
            learning_rate=learning_rate, momentum=momentum, seed=seed, batch_size=batch_size,
            optimizer=optimizer,
        )  # fmt: skip
    except GdJaxError:
        return
    assert math.isfinite(config.learning_rate) and config.learning_rate > 0
    assert 0 <= config.seed < 2**31


def _idx(magic: int, sizes: list[int], payload: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(s.to_bytes(4, "big") for s in sizes) + payload


IDX_FILES = st.one_of(
    st.binary(max_size=64),
    st.builds(
        _idx,
        st.sampled_from([2049, 2051, 0, 2**32 - 1]),
        st.lists(st.one_of(st.integers(0, 6), st.just(2**32 - 1)), min_size=0, max_size=4),
        st.binary(max_size=300),
    ),
)


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(images=IDX_FILES, labels=IDX_FILES)
@example(images=_idx(2051, [2, 2, 2], bytes(range(8))), labels=_idx(2049, [2], bytes([0, 9])))
def test_idx_files_load_or_raise_a_data_error(images, labels):
    rng = np.random.default_rng(0)
    test_images = _idx(2051, [3, 2, 2], rng.integers(0, 256, 12, dtype=np.uint8).tobytes())
    test_labels = _idx(2049, [3], bytes([1, 2, 3]))
    with tempfile.TemporaryDirectory() as folder:
        for stem, raw in (
            ("train-images-idx3-ubyte", images),
            ("train-labels-idx1-ubyte", labels),
            ("t10k-images-idx3-ubyte", test_images),
            ("t10k-labels-idx1-ubyte", test_labels),
        ):
            (Path(folder) / stem).write_bytes(raw)
        try:
            dataset = data.load(f"idx:{folder}")
        except data.DataError:
            return
    assert len(dataset.train.labels) == dataset.train.x.shape[0] >= 1
    assert dataset.train.x.shape[1] == 4 and dataset.image_shape == (2, 2)
