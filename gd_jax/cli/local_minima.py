r"""The local-minima study: are the minima gradient descent finds of equal quality?

    gd-jax-local-minima --dataset=digits --widths=4,16,64 --seeds=8 \
        --workdir=runs/minima

(``python -m experiments.local_minima`` from a checkout is the same command.)

Takes every model and data flag of gd-jax-train; each value of --widths
replaces the size of every hidden layer of --layers. Writes results.csv (one row per
network: costs, accuracies, ‖∇C‖, λ_max, λ_min, classification), pairs.csv (one row per
pair: naive and aligned barriers, distances, disagreement), spread.csv, ensemble.csv,
summary.json with the verdict, PNG plots and report.md. A killed study rerun with
--resume redoes only the widths it had not finished.
"""

from gd_jax.cli import common
from gd_jax.studies.minima import run
from gd_jax.studies.minima.config import MinimaConfig

common.define_study_flags(MinimaConfig)
main = common.study_main(MinimaConfig, run.run, lambda summary: summary["verdict"])


def command() -> None:
    """The console command ``gd-jax-local-minima``."""
    common.launch(main, __name__)


if __name__ == "__main__":
    command()
