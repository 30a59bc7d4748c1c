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
from gd_jax.config import TrainConfig
from gd_jax.studies.minima import run
from gd_jax.studies.minima.config import MinimaConfig

FLAGS = flags.FLAGS
common.define_config_flags(TrainConfig)
common.define_config_flags(MinimaConfig)
common.define_workdir_flags()
common.define_device_flags()
common.define_tensorboard_flag()


@common.entry_point()
def main(argv):
    del argv
    config = common.config_from_flags(TrainConfig)
    study = common.config_from_flags(MinimaConfig)
    summary = run.run(
        config,
        study,
        FLAGS.workdir,
        resume=FLAGS.resume,
        devices=FLAGS.devices,
        memory_budget=FLAGS.memory_budget,
        tensorboard=FLAGS.tensorboard,
    )
    logging.info("%s Report: %s/report.md", summary["verdict"], FLAGS.workdir)
    return 0


if __name__ == "__main__":
    app.run(main)
