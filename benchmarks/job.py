"""The whole job: a sweep of 1,024 networks of 784-16-16-10 (32 learning rates × 32 seeds)
on 50,000 training examples (10,000 held out for validation, 10,000 test), batch 10,
trained and evaluated as a study trains them (``trainer.fit``), timed epoch by epoch.

It reports the seconds per epoch of training and of evaluation separately, and the
share of the float32 matmul peak (measured in the same run, before and after) that the
whole job, training and evaluation together, achieves on the credited work: the
dense-layer arithmetic of the training steps (``limits.flops_per_epoch``), and also the
rounder 6 × weights × examples × networks (which credits the first layer's unneeded input
gradient too), over the job's whole time: compile, setup, training and scoring.
Evaluation is not credited: it is what a study needs, not extra work
done for speed, and cheaper evaluation shows as a higher share.

Data: Fashion-MNIST's IDX files where ``--fashion_dir`` has them, else random inputs of
their shape (the cost of an epoch does not depend on the pixels). On a GPU the same
script runs unchanged.

    python -m benchmarks.job [--epochs=30] [--networks=1024] [--eval_every=1]
"""

import json
import os
import time
from pathlib import Path

import jax
import numpy as np
from absl import app, flags

from benchmarks import limits, timing
from gd_jax import model, run_folder
from gd_jax.config import TrainConfig
from gd_jax.studies.lr.config import LrConfig
from gd_jax.sweep import engine, trainer

flags.DEFINE_integer("networks", 1024, "Networks: the learning rates × the seeds.")
flags.DEFINE_integer("seeds", 32, "Seeds per learning rate.")
flags.DEFINE_integer("epochs", 30, "Epochs.")
flags.DEFINE_integer(
    "eval_every", LrConfig().eval_every, "Epochs between scorings (the last always)."
)
flags.DEFINE_enum(
    "grad_norm", "last", list(trainer.GRAD_NORM), "When ‖∇C‖ is measured (the lr study's: last)."
)
flags.DEFINE_integer("examples", 50_000, "Training examples.")
flags.DEFINE_integer("validation", 10_000, "Held-out examples.")
flags.DEFINE_integer("batch_size", 10, "Mini-batch size.")
flags.DEFINE_list("layers", ["16", "16"], "Hidden layers.")
flags.DEFINE_float("memory_budget", 2.0, "GiB for the activations scored at once.")
flags.DEFINE_string("fashion_dir", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX.")
flags.DEFINE_string("out", "benchmarks/results/job.json", "Where the numbers go.")
FLAGS = flags.FLAGS


def main(argv):
    del argv
    source, train_xy, evals = timing.fashion_splits(
        FLAGS.fashion_dir, FLAGS.examples, FLAGS.validation
    )
    sizes = (784, *map(int, FLAGS.layers), 10)
    n = FLAGS.networks
    etas = np.geomspace(0.01, 100, n // FLAGS.seeds)
    networks = engine.grid(etas, np.arange(FLAGS.seeds))
    config = TrainConfig(
        layers=tuple(sizes[1:-1]), batch_size=FLAGS.batch_size, epochs=FLAGS.epochs
    )
    model_config = config.model_config(784, 10)
    peak_before = limits.matmul_peak()["gflops"]
    epochs = []

    def on_epoch(epoch, metrics, seconds, measure_seconds):
        epochs.append({"epoch": epoch, "train_seconds": seconds, "eval_seconds": measure_seconds})
        accuracy = np.nanmedian(metrics["test_accuracy"])
        print(f"epoch {epoch}: train {seconds:.1f} s/epoch, scoring {measure_seconds:.1f} s, "
              f"median test accuracy {accuracy:.4f}", flush=True)  # fmt: skip

    options = trainer.FitOptions(
        eval_every=FLAGS.eval_every, grad_norm=FLAGS.grad_norm, memory_budget=FLAGS.memory_budget
    )
    tic = time.perf_counter()
    result = trainer.fit(networks, model_config, config, train_xy, evals, options,
                         on_epoch=on_epoch)  # fmt: skip
    total = time.perf_counter() - tic
    peak_after = limits.matmul_peak()["gflops"]
    peak = max(peak_before, peak_after)

    examples = int(train_xy[0].shape[0])
    credited = limits.flops_per_epoch(sizes, FLAGS.batch_size, examples) * n
    weights = model.num_params(sizes)
    rounder = 6 * weights * examples * n
    trained = FLAGS.epochs
    train_seconds = sum(e["train_seconds"] * _count(epochs, i) for i, e in enumerate(epochs))
    # The scorings after each block as timed, and the one before training (which fit
    # does not report on its own) counted as their median.
    scorings = [e["eval_seconds"] for e in epochs]
    eval_seconds = sum(scorings) + float(np.median(scorings))
    setup_seconds = total - result.compile_seconds - train_seconds - eval_seconds
    found = {
        "environment": timing.environment(),
        "machine": run_folder.processor_name(),
        "cores": os.cpu_count(),
        "backend": jax.default_backend(),
        "date": time.strftime("%Y-%m-%d"),
        "data": source,
        "networks": n,
        "network": "-".join(map(str, sizes)),
        "examples": examples,
        "epochs": trained,
        "eval_every": FLAGS.eval_every,
        "grad_norm": FLAGS.grad_norm,
        "epoch_path": str(result.epoch_path[0]),
        "head": str(result.head[0]),
        "scorings": len(epochs) + 1,
        "matmul_peak_gflops": [peak_before, peak_after],
        "compile_seconds": result.compile_seconds,
        "setup_seconds": setup_seconds,
        "total_seconds": total,
        "train_seconds_per_epoch": train_seconds / trained,
        "eval_seconds_per_epoch": eval_seconds / trained,
        "eval_share_of_epoch": eval_seconds / (train_seconds + eval_seconds),
        "credited_tflop_per_epoch": credited / 1e12,
        "six_p_n_tflop_per_epoch": rounder / 1e12,
        "median_final_test_accuracy": float(np.nanmedian(result.metrics["test_accuracy"][-1])),
        "epochs_timed": epochs,
    }
    for name, flop in (("credited", credited), ("six_p_n", rounder)):
        found[f"{name}_share_of_peak_training"] = flop * trained / train_seconds / 1e9 / peak
        found[f"{name}_share_of_peak_job"] = flop * trained / total / 1e9 / peak
    Path(FLAGS.out).parent.mkdir(parents=True, exist_ok=True)
    Path(FLAGS.out).write_text(json.dumps(found, indent=1) + "\n")
    print(json.dumps({k: v for k, v in found.items() if k != "epochs_timed"}, indent=1))
    print(f"Written to {FLAGS.out}")


def _count(epochs, i) -> int:
    """Epochs the ``i``-th measurement's block trained."""
    return epochs[i]["epoch"] - (epochs[i - 1]["epoch"] if i else 0)


if __name__ == "__main__":
    app.run(main)
