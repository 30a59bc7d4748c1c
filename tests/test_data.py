"""Tests for gd_jax.data: every source offline, on tiny files or mocked TFDS."""

from __future__ import annotations

import gzip
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from gd_jax import data, download

DEBIAN_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
ROWS, COLS = 4, 3  # deliberately not square, to catch a swapped rows/cols


def _check_split(split: data.Split, n: int, d: int) -> None:
    assert split.x.shape == (n, d) and split.labels.shape == (n,)
    assert split.x.dtype == np.float32 and split.labels.dtype == np.int32
    assert split.x.flags.c_contiguous and split.labels.flags.c_contiguous
    assert isinstance(split.x, np.ndarray) and isinstance(split.labels, np.ndarray)
    if n:
        assert split.x.min() >= 0 and split.x.max() <= 1
        assert split.labels.min() >= 0 and split.labels.max() < 10


# --- digits -------------------------------------------------------------------------


def test_digits_shapes_and_ranges():
    ds = data.load("digits")
    assert (ds.name, ds.image_shape, ds.num_classes) == ("digits", (8, 8), 10)
    _check_split(ds.train, 1347, 64)
    _check_split(ds.validation, 0, 64)
    _check_split(ds.test, 450, 64)
    assert ds.train.x.max() == 1  # 16/16: the scaling uses the full range


def test_digits_split_is_deterministic_and_a_permutation():
    from sklearn.datasets import load_digits

    a, b = data.load("digits"), data.load("digits")
    for split_a, split_b in zip(a[1:4], b[1:4], strict=True):
        np.testing.assert_array_equal(split_a.x, split_b.x)
        np.testing.assert_array_equal(split_a.labels, split_b.labels)

    # Train and test together hold each original example exactly once: compare sorted
    # rows rather than sets, since a few digits images are duplicates of each other.
    def sorted_rows(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
        rows = np.column_stack([x, labels])
        return rows[np.lexsort(rows.T[::-1])]

    digits = load_digits()
    ours = sorted_rows(
        np.concatenate([a.train.x, a.test.x]) * 16, np.concatenate([a.train.labels, a.test.labels])
    )
    np.testing.assert_array_equal(ours, sorted_rows(digits.data, digits.target))


def test_digits_are_scikit_learns_read_without_importing_it(monkeypatch):
    from sklearn.datasets import load_digits

    expected = load_digits()
    pixels, labels = data.digits_table()
    np.testing.assert_array_equal(pixels, expected.data)
    np.testing.assert_array_equal(labels, expected.target)
    assert pixels.dtype == expected.data.dtype and labels.dtype == expected.target.dtype
    # Where its file is not found, scikit-learn itself loads them.
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    pixels, labels = data.digits_table()
    np.testing.assert_array_equal(pixels, expected.data)
    np.testing.assert_array_equal(labels, expected.target)
    # The table alone, in a fresh process, imports none of scikit-learn.
    code = ("import sys; from gd_jax import data; data.load('digits'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'sklearn'))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "JAX_PLATFORMS": "cpu"})  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_validation_is_last_and_train_size_is_first():
    full = data.load("digits")
    ds = data.load("digits", validation_size=300, train_size=100)
    _check_split(ds.train, 100, 64)
    _check_split(ds.validation, 300, 64)
    np.testing.assert_array_equal(ds.train.x, full.train.x[:100])
    np.testing.assert_array_equal(ds.validation.x, full.train.x[-300:])
    np.testing.assert_array_equal(ds.validation.labels, full.train.labels[-300:])
    np.testing.assert_array_equal(ds.test.x, full.test.x)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"validation_size": -1}, "validation_size"),
        ({"validation_size": 1347}, "validation_size"),
        ({"train_size": 0}, "train_size"),
        ({"validation_size": 347, "train_size": 1001}, "train_size"),
    ],
)
def test_bad_sizes(kwargs: dict[str, int], field: str):
    with pytest.raises(data.DataError, match=rf"^{field}=") as excinfo:
        data.load("digits", **kwargs)
    assert excinfo.value.field == field


def test_unknown_dataset():
    with pytest.raises(data.DataError, match="--dataset") as e:
        data.load("cifar10")
    assert "cifar10" in str(e.value) and "idx:DIR" in str(e.value)


def test_one_hot():
    got = data.one_hot(np.array([2, 0, 1, 2], np.int32), 3)
    want = np.array([[0, 0, 1], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, want)


# --- IDX files ----------------------------------------------------------------------


def _idx_bytes(array: np.ndarray, magic: int) -> bytes:
    sizes = np.array(array.shape, ">u4").tobytes()
    return magic.to_bytes(4, "big") + sizes + array.astype(np.uint8).tobytes()


def _write_idx_folder(folder: Path, *, gz: bool, n_train: int = 12, n_test: int = 5) -> dict:
    """Writes a small random IDX dataset and returns the arrays written, by file stem."""
    rng = np.random.default_rng(1)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, ROWS, COLS), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, ROWS, COLS), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(exist_ok=True)
    for stem, array in arrays.items():
        raw = _idx_bytes(array, 2051 if array.ndim == 3 else 2049)
        (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(raw) if gz else raw)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path: Path, gz: bool):
    arrays = _write_idx_folder(tmp_path, gz=gz)
    ds = data.load(f"idx:{tmp_path}", validation_size=2)
    assert ds.image_shape == (ROWS, COLS) and ds.name == f"idx:{tmp_path}"
    _check_split(ds.train, 10, ROWS * COLS)
    _check_split(ds.validation, 2, ROWS * COLS)
    _check_split(ds.test, 5, ROWS * COLS)
    images = arrays["train-images-idx3-ubyte"].reshape(12, -1).astype(np.float32) / 255
    np.testing.assert_array_equal(np.concatenate([ds.train.x, ds.validation.x]), images)
    np.testing.assert_array_equal(ds.train.labels, arrays["train-labels-idx1-ubyte"][:10])
    np.testing.assert_array_equal(
        ds.test.x, arrays["t10k-images-idx3-ubyte"].reshape(5, -1) / np.float32(255)
    )
    np.testing.assert_array_equal(ds.test.labels, arrays["t10k-labels-idx1-ubyte"])


def test_idx_dot_spelling(tmp_path: Path):
    _write_idx_folder(tmp_path, gz=False)
    for path in tmp_path.iterdir():
        path.rename(path.with_name(path.name.replace("-idx", ".idx")))
    assert len(data.load(f"idx:{tmp_path}").train.labels) == 12


def _rewrite(stem: str, array: np.ndarray, magic: int) -> Callable[[Path], None]:
    return lambda folder: (folder / stem).write_bytes(_idx_bytes(array, magic))


def _truncate(folder: Path) -> None:
    path = folder / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-7])


def _bad_gz(content: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def corrupt(folder: Path) -> None:
        raw = folder / "train-images-idx3-ubyte"
        (folder / "train-images-idx3-ubyte.gz").write_bytes(content(raw.read_bytes()))
        raw.unlink()  # the raw file would be preferred over the .gz one

    return corrupt


@pytest.mark.parametrize(
    ("corrupt", "culprit"),
    [
        pytest.param(
            lambda f: (f / "t10k-labels-idx1-ubyte").unlink(),
            "t10k-labels-idx1-ubyte",
            id="missing-file",
        ),
        pytest.param(
            _rewrite("train-images-idx3-ubyte", np.zeros((12, ROWS, COLS)), 2049),
            "train-images-idx3-ubyte",
            id="wrong-magic",
        ),
        pytest.param(_truncate, "train-images-idx3-ubyte", id="truncated"),
        pytest.param(
            _rewrite("t10k-labels-idx1-ubyte", np.zeros(4), 2049),
            "t10k-labels-idx1-ubyte",
            id="count-mismatch",
        ),
        pytest.param(
            _rewrite("train-labels-idx1-ubyte", np.full(12, 10), 2049),
            "train-labels-idx1-ubyte",
            id="label-10",
        ),
        pytest.param(_bad_gz(lambda raw: b"not gzip" + raw), "train-images", id="not-gzip"),
        pytest.param(
            _bad_gz(lambda raw: gzip.compress(raw)[:-20]), "train-images", id="truncated-gzip"
        ),
    ],
)
def test_idx_errors_name_the_file(tmp_path: Path, corrupt: Callable[[Path], None], culprit: str):
    _write_idx_folder(tmp_path, gz=False)
    corrupt(tmp_path)
    with pytest.raises(data.DataError, match=culprit):
        data.load(f"idx:{tmp_path}")


def test_idx_missing_folder(tmp_path: Path):
    with pytest.raises(data.DataError, match="no-such-folder"):
        data.load(f"idx:{tmp_path / 'no-such-folder'}")


@pytest.mark.skipif(
    not os.path.isdir(DEBIAN_FASHION_MNIST), reason="Debian's dataset-fashion-mnist not installed"
)
def test_debian_fashion_mnist():
    ds = data.load(f"idx:{DEBIAN_FASHION_MNIST}", validation_size=10_000)
    assert ds.image_shape == (28, 28)
    _check_split(ds.train, 50_000, 784)
    _check_split(ds.validation, 10_000, 784)
    _check_split(ds.test, 10_000, 784)
    assert set(np.unique(ds.test.labels)) == set(range(10))


# --- tensorflow-datasets ------------------------------------------------------------


def test_tfds_mocked(monkeypatch: pytest.MonkeyPatch):
    import tensorflow_datasets as tfds  # a dependency: a broken install must fail here

    monkeypatch.setattr(download, "unreachable", lambda url: None)  # as if online
    # mock_data makes download_and_prepare a no-op and generates random examples,
    # num_examples per split.
    with tfds.testing.mock_data(num_examples=30):
        ds = data.load("mnist", validation_size=10, train_size=15)
    assert ds.image_shape == (28, 28) and ds.num_classes == 10
    _check_split(ds.train, 15, 784)
    _check_split(ds.validation, 10, 784)
    _check_split(ds.test, 30, 784)
    assert ds.train.x.max() > 0.5  # really rescaled from uint8, not left at 0..255 or zeroed


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (OSError("Max retries exceeded with url: mnist.gz\nmore detail"), "Max retries exceeded"),
        (
            ModuleNotFoundError(
                "No module named 'importlib_resources'", name="importlib_resources"
            ),
            "pip install importlib_resources",
        ),
    ],
)
def test_tfds_download_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: Exception, says: str
):
    import tensorflow_datasets as tfds

    def fail(*args, **kwargs):
        raise error

    # A server that answered, then a download that failed.
    monkeypatch.setattr(download, "unreachable", lambda url: None)
    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", fail)
    with pytest.raises(data.DataError) as e:
        data.load("mnist", data_dir=str(tmp_path))
    message = str(e.value)
    assert says in message and "more detail" not in message
    assert "--dataset=digits" in message and "--dataset=idx:DIR" in message
    if isinstance(error, OSError):
        assert str(tmp_path) in message


def _raw(stem: str, raw: bytes) -> Callable[[Path], None]:
    return lambda folder: (folder / stem).write_bytes(raw)


IMAGES = "train-images-idx3-ubyte"


@pytest.mark.parametrize(
    ("corrupt", "says"),
    [
        pytest.param(
            _rewrite(IMAGES, np.zeros((0, ROWS, COLS)), 2051), "holds no examples", id="0-images"
        ),
        pytest.param(
            _rewrite(IMAGES, np.zeros((12, 0, 0)), 2051), "images of 0x0 pixels", id="0x0"
        ),
        pytest.param(
            _raw(IMAGES, (2051).to_bytes(4, "big") + b"\x00\x00"),
            "is cut short: an IDX image file has a 16-byte header",
            id="header-cut",
        ),
        pytest.param(
            _raw(IMAGES, (2051).to_bytes(4, "big") + b"\xff" * 12 + b"\x00" * 100),
            "header says 4,294,967,295 examples of shape (4294967295, 4294967295) "
            "(79,228,162,458,924,105,385,300,197,375 bytes of data), but it holds 100",
            id="huge-sizes",
        ),
    ],
)
def test_idx_headers_that_cannot_be_a_dataset(tmp_path: Path, corrupt, says: str):
    _write_idx_folder(tmp_path, gz=False)
    corrupt(tmp_path)
    with pytest.raises(data.DataError, match=re.escape(says)):
        data.load(f"idx:{tmp_path}")


def test_idx_naming_a_file_says_it_is_a_file(tmp_path: Path):
    (tmp_path / "images").write_bytes(b"x")
    with pytest.raises(data.DataError, match="is a file; idx: takes the folder"):
        data.load(f"idx:{tmp_path / 'images'}")


def test_an_unreachable_server_fails_at_once_with_the_offline_advice(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    # A documentation address nobody answers on: the same as no network at all.
    monkeypatch.setattr(tfds.image_classification.MNIST, "URL", "http://192.0.2.1:9/mnist/")
    tic = time.perf_counter()
    with pytest.raises(data.DataError) as e:
        data.load("mnist", data_dir=str(tmp_path))
    assert time.perf_counter() - tic < download.REACH_TIMEOUT + 5
    message = str(e.value)
    assert "its server cannot be reached to download it (http://192.0.2.1:9/mnist/:" in message
    assert "--dataset=digits" in message and "--dataset=idx:DIR" in message
    assert "--tfds_manual_dir=DIR" in message


def test_reachability_is_a_connection_within_a_timeout():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert download.unreachable(f"http://127.0.0.1:{port}/x", timeout=2) is None
    closed = download.unreachable(f"http://127.0.0.1:{port}/x", timeout=2)
    assert closed is not None and "ConnectionRefusedError" in closed
    assert "gaierror" in download.unreachable("https://no-such-host.invalid/", timeout=2)


def test_a_manual_folder_that_is_not_there_is_named(tmp_path):
    with pytest.raises(data.DataError, match=r"tfds_manual_dir=.* is not a folder") as e:
        data.load("fashion_mnist", data_dir=str(tmp_path), tfds_manual_dir=str(tmp_path / "no"))
    assert e.value.field == "tfds_manual_dir"


@pytest.mark.skipif(
    not os.path.isdir(DEBIAN_FASHION_MNIST), reason="Debian's dataset-fashion-mnist not installed"
)
def test_debian_files_in_a_manual_folder_are_refused_by_checksum_and_point_to_idx(tmp_path):
    """A real TFDS preparation of fashion_mnist from local files, offline: TFDS checks the
    files against the official archives' checksums, and Debian re-gzipped them."""
    with pytest.raises(data.DataError) as e:
        data.load("fashion_mnist", data_dir=str(tmp_path), tfds_manual_dir=DEBIAN_FASHION_MNIST)
    message = str(e.value)
    assert "are not the official fashion_mnist archives" in message
    assert "has wrong checksum" in message  # TFDS's own words, naming the file
    assert f"--dataset=idx:{DEBIAN_FASHION_MNIST}" in message
    # What the message points to works on the same files.
    assert len(data.load(f"idx:{DEBIAN_FASHION_MNIST}").train.labels) == 60_000


@pytest.mark.parametrize("missing", ["tensorflow", "tensorflow_datasets"])
def test_a_tfds_dataset_without_the_tfds_extra_is_one_line_naming_it(monkeypatch, missing):
    # digits and idx:DIR never import TensorFlow; mnist says what to install.
    monkeypatch.setitem(sys.modules, missing, None)  # import then fails, as uninstalled
    with pytest.raises(data.DataError, match=r"--dataset=mnist needs .*\[tfds\]") as raised:
        data.load("mnist")
    assert missing in str(raised.value) and "\n" not in str(raised.value)
