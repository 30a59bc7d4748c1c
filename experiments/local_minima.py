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

from absl import app

from experiments import common
from gd_jax.studies.minima import run
from gd_jax.studies.minima.config import MinimaConfig

common.define_study_flags(MinimaConfig)
main = common.study_main(MinimaConfig, run.run, lambda summary: summary["verdict"])

if __name__ == "__main__":
    app.run(main)
