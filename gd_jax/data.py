"""Image classification datasets as plain numpy arrays.

Every source ends up the same way: flattened float32 pixels in [0, 1] and int32
labels, a train/test split from the source, and an optional validation set cut
deterministically from the end of the training set. Nothing here imports
TensorFlow unless a TFDS dataset is asked for, so training code stays TF-free.

Sources (the value of ``--dataset``):

* ``digits``: scikit-learn's embedded 8x8 digits; offline, 1,347 train / 450 test.
* ``mnist``, ``fashion_mnist``: tensorflow-datasets; downloaded and cached on first use.
* ``idx:DIR``: a folder of the four MNIST-format IDX files, raw or gzipped.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import zlib
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gd_jax.config import TrainConfig, check_against_data, check_memory
from gd_jax.errors import OFFLINE_HINT, DataError

_NUM_CLASSES = 10

_CHOICES = "mnist, fashion_mnist, digits, idx:DIR"
_IDX_FIX = "Re-download or re-extract the IDX files, or pick another --dataset."
# (magic number, number of dimensions) per IDX file kind; 0x08 in the magic means uint8.
_IDX_IMAGES = (0x00000803, 3)
_IDX_LABELS = (0x00000801, 1)


class Split(NamedTuple):
    """Examples of one split.

    Attributes:
      x: float32 ``[n, d]``, flattened images with pixels in [0, 1].
      labels: int32 ``[n]``, class indices in ``0..num_classes-1``.
    """

    x: np.ndarray
    labels: np.ndarray


class Dataset(NamedTuple):
    """A dataset with train, validation and test splits.

    Attributes:
      name: The ``--dataset`` value it was loaded from, e.g. ``"digits"``.
      train: Training examples.
      validation: Held-out training examples; 0 of them when none were asked for.
      test: The source's test split.
      image_shape: ``(rows, cols)`` of one image, e.g. ``(28, 28)``.
      num_classes: Number of classes.
    """

    name: str
    train: Split
    validation: Split
    test: Split
    image_shape: tuple[int, int]
    num_classes: int


def load(
    name: str,
    *,
    data_dir: str | None = None,
    validation_size: int = 0,
    train_size: int | None = None,
    tfds_manual_dir: str | None = None,
) -> Dataset:
    """Loads a dataset and splits off a validation set.

    Both cuts are deterministic: the last ``validation_size`` training examples
    become the validation set (MNIST's 60,000 with 10,000 gives the usual
    50,000/10,000), then only the first ``train_size`` of the rest are kept.

    Args:
      name: ``"mnist"``, ``"fashion_mnist"``, ``"digits"`` or ``"idx:DIR"``.
      data_dir: tensorflow-datasets cache folder; ``None`` uses TFDS's default.
      validation_size: Number of training examples to hold out, ``0 <= N < n_train``.
      train_size: Number of training examples to keep after the holdout; ``None``
        keeps all of them.
      tfds_manual_dir: a folder holding the official archives of a TFDS dataset,
        used instead of downloading them (``tfds build --manual_dir``).

    Returns:
      The dataset.

    Raises:
      DataError: for an unknown name, unreadable files, a failed download, sizes
        out of range, or a training set of a single class.
    """
    if name == "digits":
        train, test, image_shape = _load_digits()
    elif name in ("mnist", "fashion_mnist"):
        from gd_jax import download  # TensorFlow only when a TFDS dataset is asked for

        (train_images, train_labels), (test_images, test_labels), image_shape = download.load(
            name, data_dir, tfds_manual_dir
        )
        train = _split(pixels(train_images), train_labels)
        test = _split(pixels(test_images), test_labels)
    elif name.startswith("idx:"):
        train, test, image_shape = _load_idx(name.removeprefix("idx:"))
    else:
        raise DataError(f"--dataset={name!r} is not a dataset; choose one of {_CHOICES}.")

    n = len(train.labels)
    if not 0 <= validation_size < n:
        raise DataError(
            f"validation_size={validation_size} is out of range: {name} has {n} training "
            f"examples, so it must be at least 0 and less than {n}.",
            field="validation_size",
        )
    rest = n - validation_size
    keep = rest if train_size is None else train_size
    if not 1 <= keep <= rest:
        raise DataError(
            f"train_size={train_size} is out of range: {name} has {rest} training examples "
            f"left after validation_size={validation_size}, so it must be between 1 and {rest}.",
            field="train_size",
        )
    _check_classes(
        name, train.labels[:keep], train_size=train_size, validation_size=validation_size
    )
    return Dataset(
        name=name,
        train=_split(train.x[:keep], train.labels[:keep]),
        validation=_split(train.x[rest:], train.labels[rest:]),
        test=test,
        image_shape=image_shape,
        num_classes=_NUM_CLASSES,
    )


def _check_classes(name: str, labels: np.ndarray, *, train_size, validation_size) -> None:
    """Refuses a training set of one class: a network then learns to ignore its input,
    and any network that does scores 100%."""
    classes = np.unique(labels)
    if len(classes) >= 2:
        return
    if train_size is not None:
        field, cut = "train_size", f"its first {len(labels):,} training example(s) (--train_size)"
        fix = "Use a larger --train_size, or leave it out to keep them all."
    elif validation_size:
        field, cut = "validation_size", "the training examples left after --validation_size"
        fix = "Use a smaller --validation_size."
    else:
        field, cut = "dataset", "its training set"
        fix = "Check its label file, or pick another --dataset."
    raise DataError(
        f"--dataset={name} has only class {int(classes[0])} in {cut}: a classifier needs "
        "examples of at least two classes, or every network learns to ignore its input "
        f"and scores 100%. {fix}",
        field=field,
    )


def load_for(
    config: TrainConfig,
    *,
    widths: tuple[int, ...] | None = None,
    memory_budget: float | None = None,
) -> Dataset:
    """The dataset ``config`` names, split as it asks, checked against its batch size
    and against the memory of the widest network to be built (``config.check_memory``).

    Args:
      config: the run.
      widths: the widths that replace every hidden layer's size (local-minima study).
      memory_budget: ``--memory_budget`` (GiB) of a study; None: the memory free now.

    Raises:
      GdJaxError: the data cannot be loaded or split as asked, the batch is larger than
        the training set, or the widest network needs more memory than the budget.
    """
    dataset = load(
        config.dataset,
        data_dir=config.data_dir,
        validation_size=config.validation_size,
        train_size=config.train_size,
        tfds_manual_dir=config.tfds_manual_dir,
    )
    check_against_data(config, len(dataset.train.labels))
    splits = (dataset.train, dataset.validation, dataset.test)
    check_memory(
        config,
        num_inputs=dataset.train.x.shape[1],
        num_classes=dataset.num_classes,
        examples=max(len(split.labels) for split in splits),
        widths=widths,
        memory_budget=memory_budget,
    )
    return dataset


def load_config(config: TrainConfig | str) -> Dataset:
    """The dataset a run trains on: ``load_for(config)``, or for a name alone (e.g.
    ``"digits"``), that dataset with the default splits. ``gd_jax.load``."""
    return load_for(TrainConfig(dataset=config) if isinstance(config, str) else config)


def on_device(split: Split) -> tuple[jax.Array, jax.Array]:
    """A split's ``(x, labels)`` as device arrays."""
    return jnp.asarray(split.x), jnp.asarray(split.labels)


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Encodes class indices as rows of the identity matrix.

    Args:
      labels: Integer ``[n]`` class indices in ``0..num_classes-1``.
      num_classes: Number of classes.

    Returns:
      float32 ``[n, num_classes]`` with ``out[i, labels[i]] = 1`` and zeros elsewhere.
    """
    return np.eye(num_classes, dtype=np.float32)[np.asarray(labels)]


def _split(x: np.ndarray, labels: np.ndarray) -> Split:
    return Split(
        np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(labels, dtype=np.int32)
    )


def pixels(images: np.ndarray) -> np.ndarray:
    """uint8 ``[n, rows, cols(, 1)]`` -> float32 ``[n, rows*cols]`` in [0, 1]."""
    x = images.reshape(len(images), -1).astype(np.float32)
    x /= 255  # in place: MNIST's training set is 188 MB as float32, no need for two
    return x


def digits_table() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits: the pixels ``[1797, 64]`` (0..16, float64) and labels,
    exactly ``sklearn.datasets.load_digits()``'s ``data`` and ``target``.

    Read from the file scikit-learn ships, without importing scikit-learn: its imports
    take about 1.5 s, a table of 60 kB a few milliseconds (every run on digits, and every
    test's child process, pays the difference). Where the file is not found, scikit-learn
    loads it.
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package, runs none of it
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = os.path.join(folder, "datasets", "data", "digits.csv.gz")
        if os.path.isfile(path):
            table = np.loadtxt(path, delimiter=",")  # 64 pixels, then the label
            return table[:, :-1], table[:, -1].astype(int)
    try:
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise DataError(
            "--dataset=digits needs scikit-learn, which ships the 8×8 digits: pip install "
            f"scikit-learn (or install this project, which requires it). {OFFLINE_HINT}"
        ) from e
    digits = load_digits()
    return digits.data, digits.target


def _load_digits() -> tuple[Split, Split, tuple[int, int]]:
    pixels_16, target = digits_table()
    # A fixed generator of its own, so the split never depends on the training seed.
    order = np.random.default_rng(0).permutation(len(target))
    x = pixels_16[order] / 16  # pixel values are 0..16
    labels = target[order]
    n_train = 1347  # 75% of 1,797, scikit-learn's default train_test_split ratio
    return (
        _split(x[:n_train], labels[:n_train]),
        _split(x[n_train:], labels[n_train:]),
        (8, 8),
    )


def _load_idx(folder: str) -> tuple[Split, Split, tuple[int, int]]:
    if os.path.isfile(folder):
        raise DataError(
            f"--dataset=idx:{folder}: {folder} is a file; idx: takes the folder that holds "
            f"the four IDX files (train-images-idx3-ubyte, ...). {OFFLINE_HINT}"
        )
    if not os.path.isdir(folder):
        raise DataError(
            f"--dataset=idx:{folder}: the folder {folder} does not exist. Point it at a folder "
            f"holding train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte "
            f"and t10k-labels-idx1-ubyte (each optionally .gz). {OFFLINE_HINT}"
        )
    splits = []
    for prefix in ("train", "t10k"):
        images_path = _find_idx(folder, f"{prefix}-images-idx3-ubyte")
        labels_path = _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
        images = _read_idx(images_path, *_IDX_IMAGES)
        labels = _read_idx(labels_path, *_IDX_LABELS)
        if len(images) != len(labels):
            raise DataError(
                f"{images_path} holds {len(images)} images but {labels_path} holds "
                f"{len(labels)} labels; they must be the same split. {_IDX_FIX}"
            )
        if labels.max(initial=0) >= _NUM_CLASSES:
            raise DataError(
                f"{labels_path} holds label {labels.max()}, but labels must be 0 to "
                f"{_NUM_CLASSES - 1}. {_IDX_FIX}"
            )
        splits.append((images_path, images, labels))
    (train_path, train_images, train_labels), (test_path, test_images, test_labels) = splits
    if train_images.shape[1:] != test_images.shape[1:]:
        raise DataError(
            f"{train_path} holds {train_images.shape[1:]} images but {test_path} holds "
            f"{test_images.shape[1:]} images; both splits must share one size. {_IDX_FIX}"
        )
    return (
        _split(pixels(train_images), train_labels),
        _split(pixels(test_images), test_labels),
        (int(train_images.shape[1]), int(train_images.shape[2])),
    )


def _find_idx(folder: str, stem: str) -> str:
    """Returns the path of ``stem`` in ``folder``, raw or gzipped, either spelling."""
    dotted = stem.replace("-idx", ".idx")  # some mirrors write train-images.idx3-ubyte
    names = [stem, f"{stem}.gz", dotted, f"{dotted}.gz"]
    for name in names:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            return path
    raise DataError(
        f"--dataset=idx:{folder}: {stem} is missing; looked for {', '.join(names)} in "
        f"{folder}. Put the four MNIST-format IDX files there. {OFFLINE_HINT}"
    )


def _read_idx(path: str, magic: int, ndim: int) -> np.ndarray:
    """Reads an IDX file of uint8 data: big-endian magic, ``ndim`` uint32 sizes, then data."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if path.endswith(".gz"):
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # BadGzipFile is an OSError
        raise DataError(f"{path} could not be read or unzipped ({e}). {_IDX_FIX}") from e
    header = 4 * (1 + ndim)
    kind = "image" if ndim == 3 else "label"
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        raise DataError(
            f"{path} is not an IDX {kind} file: it starts with magic number {found} "
            f"(0x{found:08x}), expected {magic} (0x{magic:08x}). {_IDX_FIX}"
        )
    if len(raw) < header:
        raise DataError(
            f"{path} is cut short: an IDX {kind} file has a {header}-byte header, and this "
            f"one has {len(raw)} bytes in all. {_IDX_FIX}"
        )
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    if min(shape) == 0:
        what = "no examples" if shape[0] == 0 else f"images of {shape[1]}x{shape[2]} pixels"
        raise DataError(f"{path} holds {what} (its header says {shape}). {_IDX_FIX}")
    expected = math.prod(shape)  # Python integers: sizes up to 2³² each do not overflow
    data = np.frombuffer(raw, np.uint8, offset=header)
    if data.size != expected:
        raise DataError(
            f"{path} is truncated or padded: its header says {shape[0]:,} examples of shape "
            f"{shape[1:]} ({expected:,} bytes of data), but it holds {data.size:,}. {_IDX_FIX}"
        )
    return data.reshape(shape)
