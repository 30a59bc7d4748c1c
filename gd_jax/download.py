"""MNIST and Fashion-MNIST through tensorflow-datasets: prepared once, offline after.

TFDS has no offline switch (tensorflow/datasets#3125): without a network its
downloader retries for minutes before it fails. So before a download the dataset's
server is tried once, with a timeout of a few seconds, and an unreachable one is an
error at once, with the offline alternatives. A folder of the official archives
(``tfds_manual_dir``) fills the cache without any network, as ``tfds build
--manual_dir`` does; TFDS checks each file against its recorded checksum, and files
that differ (re-compressed copies, like Debian's dataset-fashion-mnist) are refused
with a message that points to ``idx:DIR``, which reads the same images directly.

TensorFlow is needed to prepare the dataset (TFDS reads it through ``tf.io.gfile``);
it is imported here only, and kept off any GPU.
"""

import contextlib
import os
import re
import socket
import threading
import urllib.parse

import numpy as np
from absl import logging

from gd_jax.errors import OFFLINE_HINT, DataError

# Seconds to wait for the dataset's server before calling it unreachable.
REACH_TIMEOUT = 3.0


def unreachable(url: str, timeout: float = REACH_TIMEOUT) -> str | None:
    """Why the server of ``url`` cannot be reached within ``timeout`` seconds (name
    lookup included), or None when a connection opens."""
    parts = urllib.parse.urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    found = {}

    def connect():
        try:
            socket.create_connection((parts.hostname, port), timeout=timeout).close()
            found["ok"] = True
        except OSError as e:
            found["error"] = f"{type(e).__name__}: {e}"

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    if found.get("ok"):
        return None
    return found.get("error", f"no answer within {timeout:g} s")


def load(name: str, data_dir: str | None, manual_dir: str | None):
    """``((train images, labels), (test images, labels), image_shape)`` of a TFDS
    dataset, uint8 images as stored, prepared first if it is not in the cache.

    Raises:
      DataError: the server is unreachable, the manual files are missing or are not
        the official archives, or the preparation fails.
    """
    tf, tfds = _tensorflow(name)
    # TF only decodes images here; on a GPU it would grab memory that JAX needs. The
    # RuntimeError means TF already initialised its devices: too late to hide them.
    with contextlib.suppress(RuntimeError):
        tf.config.set_visible_devices([], "GPU")
    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        _prepare(tfds, builder, name, manual_dir)
    # batch_size=-1 in tfds.load aborts the process under TF 2.21, so batch by hand.
    train, test = (
        (np.concatenate(images), np.concatenate(labels))
        for images, labels in (
            zip(*ds.batch(10_000).as_numpy_iterator(), strict=True)
            for ds in builder.as_dataset(split=["train", "test"], as_supervised=True)
        )
    )
    return train, test, (28, 28)


def _tensorflow(name: str):
    """``(tensorflow, tensorflow_datasets)``, or a DataError naming the extra that
    installs them."""
    try:
        import tensorflow as tf
        import tensorflow_datasets as tfds
    except ImportError as error:
        raise DataError(
            f"--dataset={name} needs tensorflow-datasets and TensorFlow ({error.name} is not "
            "installed): install the project with its tfds extra, pip install -e '.[tfds]' "
            f"(make does). {OFFLINE_HINT}"
        ) from None
    return tf, tfds


def _prepare(tfds, builder, name: str, manual_dir: str | None) -> None:
    config = None
    if manual_dir is not None:
        if not os.path.isdir(manual_dir):
            raise DataError(
                f"tfds_manual_dir={manual_dir} is not a folder. Give the folder holding "
                f"{name}'s four official .gz archives.",
                field="tfds_manual_dir",
            )
        config = tfds.download.DownloadConfig(manual_dir=manual_dir)
        logging.info("Preparing %s from the files in %s, offline.", name, manual_dir)
    else:
        url = getattr(type(builder), "URL", "https://storage.googleapis.com/")
        why = unreachable(url)
        if why is not None:
            raise DataError(
                f"{name} is not in the tensorflow-datasets cache at {builder.data_dir}, and "
                f"its server cannot be reached to download it ({url}: {why}). "
                f"{OFFLINE_HINT} With the four official .gz files at hand, "
                "--tfds_manual_dir=DIR fills the cache from them."
            )
        logging.info("Downloading %s once into %s (about 11 MB).", name, builder.data_dir)
    from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

    try:
        builder.download_and_prepare(download_config=config)
    except NonMatchingChecksumError as e:
        sums = re.findall(r"checksum='([0-9a-f]+)'", str(e))
        found = str(e).splitlines()[0].rstrip(":")
        if len(sums) == 2:
            found += f": sha256 {sums[0][:12]}… expected, {sums[1][:12]}… found"
        raise DataError(
            f"The files in {manual_dir} are not the official {name} archives that "
            f"tensorflow-datasets checks each download against ({found}). Re-compressed "
            "copies, like those of Debian's dataset-fashion-mnist, hold the same images "
            f"in other bytes: read them directly with --dataset=idx:{manual_dir}."
        ) from e
    except ModuleNotFoundError as e:
        # tensorflow-datasets imports some of its dependencies only when it downloads.
        raise DataError(
            f"tensorflow-datasets could not prepare {name}: it needs the Python module "
            f"{e.name!r}, which is not installed; install it (pip install {e.name}) and "
            f"try again. {OFFLINE_HINT}"
        ) from e
    except Exception as e:  # requests, OSError, tf errors...: all get the same advice
        message = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(
            f"Preparing {name} with tensorflow-datasets failed ({message}); it is not in "
            f"the cache at {builder.data_dir} yet. {OFFLINE_HINT}"
        ) from e
