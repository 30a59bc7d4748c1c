r"""The local-minima study: are the minima gradient descent finds of equal quality?

    python -m experiments.local_minima --dataset=digits --widths=4,16,64 --seeds=8 \
        --workdir=runs/minima

Takes every model and data flag of experiments/train.py; each value of --widths
replaces the size of every hidden layer of --layers. Writes results.csv (one row per
network: costs, accuracies, ‖∇C‖, λ_max, λ_min, classification), pairs.csv (one row per
pair: naive and aligned barriers, distances, disagreement), spread.csv, ensemble.csv,
summary.json with the verdict, PNG plots and report.md. A killed study rerun with
--resume redoes only the widths it had not finished.
"""

from absl import app, flags, logging

from experiments import common
from gd_jax import minima

FLAGS = flags.FLAGS
flags.DEFINE_string("widths", "4,16,64", "Hidden widths; each replaces every hidden layer's size.")
flags.DEFINE_float("grad_tol", 2e-3, "Stop a network once ‖∇C‖ on the training set is below this.")
flags.DEFINE_integer("eval_every", 1, "Epochs between measurements (and gradient checks).")
flags.DEFINE_float("negative_tol", 1e-2, "A saddle has λ_min below −negative_tol · λ_max.")
flags.DEFINE_integer(
    "dense_max_params", 3000, "Count negative eigenvalues of the dense Hessian up to this size."
)
flags.DEFINE_integer("path_points", 25, "Points along each straight path.")
flags.DEFINE_integer("max_pairs", 28, "Pairs of endpoints compared per width.")


@common.entry_point
def main(argv):
    del argv
    study = minima.MinimaConfig(
        widths=minima.parse_widths(FLAGS.widths),
        seeds=common.or_default(FLAGS.seeds, 8),
        grad_tol=FLAGS.grad_tol,
        eval_every=FLAGS.eval_every,
        lanczos_iters=common.or_default(FLAGS.lanczos_iters, 40),
        negative_tol=FLAGS.negative_tol,
        dense_max_params=FLAGS.dense_max_params,
        path_points=FLAGS.path_points,
        max_pairs=FLAGS.max_pairs,
        devices=FLAGS.devices,
    )
    config = common.train_config(FLAGS.learning_rate)
    summary = minima.run(config, study, FLAGS.workdir, resume=FLAGS.resume)
    logging.info("%s Report: %s/report.md", summary["verdict"], FLAGS.workdir)
    return 0


if __name__ == "__main__":
    app.run(main)
