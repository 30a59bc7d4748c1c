r"""The learning-rate study: many networks at once, and ΔC ≈ −η‖∇C‖² under test.

    python -m experiments.lr_sweep --dataset=digits --learning_rates=logspace:0.01:100:13 \
        --seeds=3 --workdir=runs/lr

Takes every model and data flag of experiments/train.py. Writes results.csv (one row
per network), curves.csv (per epoch), stability.csv, first_order.csv, range_test.csv,
summary.json, PNG plots and report.md. A killed study rerun with --resume computes
only what is missing.
"""

from absl import app, flags, logging

from experiments import common
from gd_jax import lr_sweep

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "learning_rates",
    "logspace:0.01:100:13",
    "η values: a list (0.1,0.3,1,3) or a log range low:high:count (logspace:0.01:30:13).",
)
flags.DEFINE_bool("shared_order", True, "All networks see the same mini-batches (those of --seed).")
flags.DEFINE_integer("chunk_size", 64, "Networks per compiled program; each chunk is saved.")
flags.DEFINE_integer("full_batch_steps", 500, "Steps of the full-batch trace (0: no trace).")
flags.DEFINE_integer(
    "track_sharpness_every", 25, "Measure λ_max every K full-batch steps (0: never)."
)
flags.DEFINE_integer(
    "sharpness_examples", 5000, "Training examples (the first N) the Hessian is taken on."
)
flags.DEFINE_bool(
    "first_order_check", True, "Record measured ΔC against its predictions in the trace."
)
flags.DEFINE_bool("range_test", True, "Run the learning-rate range test.")
flags.DEFINE_integer("range_steps", 500, "Steps of the range test.")
flags.DEFINE_float("range_min", 1e-4, "First η of the range test.")
flags.DEFINE_float("range_max", 100.0, "Last η of the range test.")


@common.entry_point
def main(argv):
    del argv
    etas = lr_sweep.parse_learning_rates(FLAGS.learning_rates)
    study = lr_sweep.SweepConfig(
        learning_rates=etas,
        seeds=common.or_default(FLAGS.seeds, 3),
        shared_order=FLAGS.shared_order,
        chunk_size=FLAGS.chunk_size,
        full_batch_steps=FLAGS.full_batch_steps,
        track_sharpness_every=FLAGS.track_sharpness_every,
        sharpness_examples=FLAGS.sharpness_examples,
        lanczos_iters=common.or_default(FLAGS.lanczos_iters, 20),
        first_order_check=FLAGS.first_order_check,
        range_test=FLAGS.range_test,
        range_steps=FLAGS.range_steps,
        range_min=FLAGS.range_min,
        range_max=FLAGS.range_max,
        devices=FLAGS.devices,
    )
    config = common.train_config(max(etas))
    summary = lr_sweep.run(config, study, FLAGS.workdir, resume=FLAGS.resume)
    logging.info("Best η %s; report: %s/report.md", summary["best_learning_rate"], FLAGS.workdir)
    return 0


if __name__ == "__main__":
    app.run(main)
