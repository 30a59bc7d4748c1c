"""Does an XLA CPU flag speed up the single run? Each setting in a fresh process.

``XLA_FLAGS`` is read once, when the CPU client starts, so every setting gets its own
child process, which times the single-run epoch (784-30-10, batch 10) and the full-batch
step and prints one JSON line. The baseline (no flags) runs first and last, so the
spread between its two runs shows how much the shared machine moved meanwhile. Not
part of ``make bench``; writes benchmarks/results/flags.json.

    python -m benchmarks.flags
"""

import json
import os
import subprocess
import sys
from pathlib import Path

from absl import app, flags

flags.DEFINE_bool("child", False, "Time the cases in this process and print JSON.")
flags.DEFINE_integer("epochs", 3, "Timed epochs per case.")
flags.DEFINE_string("out", str(Path(__file__).parent / "results" / "flags.json"), "Where to save.")
FLAGS = flags.FLAGS

# (name, XLA_FLAGS, command prefix)
SETTINGS = [
    ("baseline", "", []),
    ("one Eigen thread", "--xla_cpu_multi_thread_eigen=false", []),
    ("one core (taskset -c 0)", "", ["taskset", "-c", "0"]),
    ("fast math", "--xla_cpu_enable_fast_math=true", []),
    ("XNNPACK", "--xla_cpu_use_xnnpack=true", []),
    ("oneDNN", "--xla_cpu_use_onednn=true", []),
    ("no fusion emitters", "--xla_cpu_use_fusion_emitters=false", []),
    ("legacy runtime (no thunks)", "--xla_cpu_use_thunk_runtime=false", []),
    ("512-bit vectors", "--xla_cpu_prefer_vector_width=512", []),
    ("baseline again", "", []),
]


def child() -> dict:
    from benchmarks import timing  # imported here so XLA_FLAGS is set before jax starts

    x, labels = timing.synthetic()
    rows = [timing.time_case((784, 30, 10), b, x, labels, FLAGS.epochs, "plain") for b in (10, 0)]
    return {
        "seconds_per_epoch": rows[0]["seconds_per_epoch"],
        "compile_seconds": rows[0]["compile_seconds"],
        "full_batch_seconds": rows[1]["seconds_per_epoch"],
    }


def run_setting(xla_flags: str, prefix: list[str]) -> dict:
    env = {**os.environ, "XLA_FLAGS": xla_flags}
    command = [*prefix, sys.executable, "-m", "benchmarks.flags", "--child"]
    command.append(f"--epochs={FLAGS.epochs}")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=root)
    if done.returncode:
        return {"failed": done.stderr.strip().splitlines()[-1][:300]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv):
    del argv
    if FLAGS.child:
        sys.stdout.write(json.dumps(child()) + "\n")
        return
    results = []
    print(f"{'setting':<28}{'s/epoch':>9}{'compile s':>11}{'full s':>9}")
    for name, xla_flags, prefix in SETTINGS:
        result = {"setting": name, "xla_flags": xla_flags, "prefix": " ".join(prefix)}
        result.update(run_setting(xla_flags, prefix))
        results.append(result)
        if "failed" in result:
            print(f"{name:<28}  failed: {result['failed']}")
        else:
            print(
                f"{name:<28}{result['seconds_per_epoch']:>9.3f}"
                f"{result['compile_seconds']:>11.2f}{result['full_batch_seconds']:>9.3f}"
            )
    Path(FLAGS.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"saved {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
