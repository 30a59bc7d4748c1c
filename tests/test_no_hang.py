"""Studies bigger than one memory chunk finish: the case that once waited for ever.

A learning-rate study whose full-batch trace runs in several chunks (``lax.map`` with a
shorter last chunk beside the others) used to wedge XLA's CPU thread pool in jaxlib's
batched LAPACK eigensolver (see ``curvature.ritz_values``): no output, no CPU, for
ever. Each case runs in a child process with a timeout, so a hang fails the test
instead of stalling the suite.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gd_jax import memory

FASHION = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
SIZES = {"digits": (64, 16, 16, 10), "fashion": (784, 16, 16, 10)}


def run_study(dataset, workdir, *, examples, budget, timeout, etas=8, seeds=8):
    args = [
        sys.executable, "-m", "experiments.lr_sweep", f"--dataset={dataset}",
        "--layers=16,16", f"--learning_rates=logspace:0.3:30:{etas}", f"--seeds={seeds}",
        "--epochs=1",
        "--chunk_size=64", "--full_batch_steps=20", "--track_sharpness_every=10",
        "--norange_test", "--norounding_check", f"--train_size={examples}",
        f"--memory_budget={budget}", "--notensorboard", f"--workdir={workdir}",
    ]  # fmt: skip
    try:
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, "JAX_PLATFORMS": "cpu"})  # fmt: skip
    except subprocess.TimeoutExpired:
        pytest.fail(f"the study did not finish within {timeout} s: it hangs")
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((workdir / "summary.json").read_text())


def chunks(kind, examples, budget, networks=64):
    chunk = memory.chunk_for(SIZES[kind], examples, budget)
    count = memory.chunks_of(networks, chunk)
    # Several chunks, the last one filled up (map_in_chunks): the case that hung.
    assert count > 1 and networks % count, "the case needs a filled-up last chunk"
    return chunk


@pytest.mark.skipif(FASHION.exists(), reason="the MNIST-size case below runs instead")
def test_a_chunked_trace_finishes_on_digits(tmp_path):
    chunks("digits", 1000, 0.05)
    summary = run_study("digits", tmp_path / "run", examples=1000, budget=0.05, timeout=300)
    assert summary["networks"] == 64


@pytest.mark.skipif(not FASHION.exists(), reason="needs Debian's dataset-fashion-mnist")
def test_a_chunked_trace_finishes_on_mnist_size_images(tmp_path):
    chunks("fashion", 2000, 0.05, networks=21)  # 21 networks in 2 chunks of 11
    summary = run_study(f"idx:{FASHION}", tmp_path / "run", examples=2000, budget=0.05,
                        timeout=400, etas=7, seeds=3)  # fmt: skip
    assert summary["networks"] == 21
