r"""The learning-rate study: many networks at once, and ΔC ≈ −η‖∇C‖² under test.

    python -m experiments.lr_sweep --dataset=digits --learning_rates=logspace:0.01:100:13 \
        --seeds=3 --workdir=runs/lr

Takes every model and data flag of experiments/train.py but --learning_rate: it sweeps
--learning_rates. Writes results.csv (one row per network), curves.csv (per epoch),
stability.csv, first_order.csv, range_test.csv, summary.json, PNG plots and report.md.
A killed study rerun with --resume computes only what is missing.
"""

from absl import app, flags, logging

from experiments import common
from gd_jax.config import TrainConfig
from gd_jax.studies.lr import run
from gd_jax.studies.lr.config import LrConfig

FLAGS = flags.FLAGS
common.define_config_flags(TrainConfig, skip=("learning_rate",))
common.define_config_flags(LrConfig)
common.define_workdir_flags()
common.define_device_flags()
common.define_tensorboard_flag()


@common.entry_point()
def main(argv):
    del argv
    config = common.config_from_flags(TrainConfig, skip=("learning_rate",))
    study = common.config_from_flags(LrConfig)
    summary = run.run(
        config,
        study,
        FLAGS.workdir,
        resume=FLAGS.resume,
        devices=FLAGS.devices,
        memory_budget=FLAGS.memory_budget,
        tensorboard=FLAGS.tensorboard,
    )
    logging.info("Best η %s; report: %s/report.md", summary["best_learning_rate"], FLAGS.workdir)
    return 0


if __name__ == "__main__":
    app.run(main)
