r"""Trains the seed's perceptron by gradient descent and writes a run folder.

    gd-jax-train --dataset=mnist --layers=16,16 --learning_rate=3.0 \
        --batch_size=10 --epochs=30 --workdir=runs/x

(``python -m experiments.train`` from a checkout is the same command.)

The folder gets config.json, metrics.jsonl (one line per epoch), metrics.csv,
summary.json, checkpoint.npz (after every epoch), PNG plots and report.md.
"""

import sys

from absl import flags, logging

from gd_jax.cli import common
from gd_jax.config import TrainConfig
from gd_jax.studies.run import run

FLAGS = flags.FLAGS
common.define_config_flags(TrainConfig)
common.define_workdir_flags()
common.define_platform_flag()
common.define_tensorboard_flag()


@common.entry_point(join=False)
def main(argv):
    del argv
    config = common.config_from_flags(TrainConfig)
    summary = run.train_run(
        config, FLAGS.workdir, resume=FLAGS.resume, tensorboard=FLAGS.tensorboard
    )
    logging.info("Run folder: %s (report.md, summary.json)", FLAGS.workdir)
    if summary["status"] == run.STATUS_DIVERGED:
        print(
            f"error: training diverged at epoch {summary['diverged_epoch']} (the cost is no "
            f"longer finite) with --learning_rate={config.learning_rate:g}; try a smaller "
            f"one. Every finite epoch is in {FLAGS.workdir}.",
            file=sys.stderr,
        )
        return 1
    if summary["status"] == run.STATUS_INTERRUPTED:
        return common.interrupted()
    return 0


def command() -> None:
    """The console command ``gd-jax-train``."""
    common.launch(main, __name__)


if __name__ == "__main__":
    command()
