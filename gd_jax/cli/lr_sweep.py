r"""The learning-rate study: many networks at once, and ΔC ≈ −η‖∇C‖² under test.

    gd-jax-lr-sweep --dataset=digits --learning_rates=logspace:0.01:100:13 \
        --seeds=3 --workdir=runs/lr

(``python -m experiments.lr_sweep`` from a checkout is the same command.)

Takes every model and data flag of gd-jax-train but --learning_rate: it sweeps
--learning_rates. Writes results.csv (one row per network), curves.csv (per epoch),
stability.csv, first_order.csv, range_test.csv, summary.json, PNG plots and report.md.
A killed study rerun with --resume computes only what is missing.
"""

from gd_jax.cli import common
from gd_jax.studies.lr import run
from gd_jax.studies.lr.config import LrConfig

common.define_study_flags(LrConfig, skip=("learning_rate",))
main = common.study_main(
    LrConfig,
    run.run,
    lambda summary: f"Best η {summary['best_learning_rate']};",
    skip=("learning_rate",),
)


def command() -> None:
    """The console command ``gd-jax-lr-sweep``."""
    common.launch(main, __name__)


if __name__ == "__main__":
    command()
