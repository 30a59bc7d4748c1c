"""Peak resident memory of a whole learning-rate study, at 64, 256 and 1,024 networks.

The study of the memory issue, run as a user runs it, each size in a child process of
its own (an allocator keeps what it once took):

    python -m experiments.lr_sweep --dataset=idx:DIR --train_size=10000 --layers=16,16 \\
      --learning_rates=logspace:0.3:30:K --seeds=8 --epochs=1 --chunk_size=256 \\
      --full_batch_steps=20 --track_sharpness_every=10 --norange_test

with K = networks / 8 and the default --memory_budget (2 GiB). The child's resident
memory (``VmRSS``) and its high-water mark (``VmHWM``) are read from ``/proc`` every
half second; the peak is the last high-water mark read before it exits. The promise
measured: the peak is the data, the parameters of every network and at most the budget
beyond them, whatever the number of networks.

Writes ``benchmarks/results/study_memory.json``; needs the IDX files (Debian's
``dataset-fashion-mnist``).

    python -m benchmarks.study_memory [--networks=64,256,1024] [--fashion_dir=DIR]
"""

import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import app, flags

from benchmarks import timing
from gd_jax import memory, run_folder

flags.DEFINE_list("networks", ["64", "256", "1024"], "Sizes of the study, in networks.")
flags.DEFINE_string("fashion_dir", "/usr/share/datasets/fashion-mnist", "The IDX files.")
flags.DEFINE_string("out", "benchmarks/results/study_memory.json", "Where to write.")
flags.DEFINE_integer("timeout", 3600, "Seconds one study may take before it is ended.")
FLAGS = flags.FLAGS

GIB = 2.0**30


def command(networks: int, workdir: str) -> list[str]:
    return [
        sys.executable, "-m", "experiments.lr_sweep", f"--dataset=idx:{FLAGS.fashion_dir}",
        "--train_size=10000", "--layers=16,16",
        f"--learning_rates=logspace:0.3:30:{networks // 8}", "--seeds=8", "--epochs=1",
        "--chunk_size=256", "--full_batch_steps=20", "--track_sharpness_every=10",
        "--norange_test", f"--workdir={workdir}",
    ]  # fmt: skip


def _status(pid: int) -> dict:
    found = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                found[key] = int(value.split()[0]) * 1024 / GIB
    except (OSError, ValueError):
        pass
    return found


def measure(networks: int) -> dict:
    """One study of ``networks`` networks in a child process: its peak and its trace."""
    with tempfile.TemporaryDirectory() as workdir:
        tic = time.perf_counter()
        child = subprocess.Popen(
            command(networks, f"{workdir}/run"), stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        samples, peak = [], 0.0
        while child.poll() is None:
            now = _status(child.pid)
            if now:
                peak = max(peak, now.get("VmHWM", 0.0))
                samples.append((round(time.perf_counter() - tic, 1), round(now["VmRSS"], 3)))
            if time.perf_counter() - tic > FLAGS.timeout:
                child.kill()
                break
            time.sleep(0.5)
        _, err = child.communicate()
        if child.returncode != 0:
            raise RuntimeError(f"the study of {networks} networks failed:\n{err[-3000:]}")
    params_gib = networks * 13_002 * memory.FLOAT_BYTES / GIB
    return {
        "networks": networks,
        "peak_gib": round(peak, 3),
        "parameters_gib": round(params_gib, 4),
        "seconds": round(time.perf_counter() - tic, 1),
        "rss_gib_every_half_second": samples,
    }


def main(argv):
    del argv
    if not Path(FLAGS.fashion_dir).is_dir():
        sys.exit(f"{FLAGS.fashion_dir} has no IDX files: apt-get install dataset-fashion-mnist")
    found = []
    for n in (int(v) for v in FLAGS.networks):
        found.append(measure(n))
        print(json.dumps({k: v for k, v in found[-1].items() if "every" not in k}), flush=True)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    result = {
        "environment": timing.environment(),
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "commit": commit.strip(),
        "machine": f"{platform.machine()}, {run_folder.processor_name()}",
        "budget_gib": memory.MEMORY_BUDGET_GIB,
        "command": " ".join(command(0, "DIR")[1:]).replace(":30:0", ":30:K"),
        "studies": found,
    }
    Path(FLAGS.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"Wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
