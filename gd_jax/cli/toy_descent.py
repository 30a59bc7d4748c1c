r"""Gradient descent on tiny functions, where every step can be seen.

    gd-jax-toy-descent --workdir=runs/demo/toy

(``python -m experiments.toy_descent`` from a checkout is the same command.)

Runs v ← v − η∇f(v) on functions of one and two parameters (½λv², a tilted double
well, an elongated bowl, Rosenbrock's valley, a double well with a quadratic in y) at
several η each, and writes into --workdir:

  one_parameter.png, one_parameter_two_wells.png, bowl.png, valley.png, two_minima.png
  report.md      the figures, what each shows with its numbers, a table of every path
  summary.json   every number the report quotes
  runs.csv       one row per path
  config.json    the flags, library versions and devices

It needs no data and no network, is deterministic, and takes a few seconds on a CPU.
The folder is this experiment's own: running it again overwrites these files (with the
same numbers) and leaves anything else there alone.
"""

import time

from absl import flags, logging

from gd_jax.cli import common
from gd_jax.studies.toy import run

FLAGS = flags.FLAGS
common.define_workdir_flags(resume=False)
common.define_platform_flag()


@common.entry_point(join=False, resume=False)
def main(argv):
    del argv
    start = time.perf_counter()
    run.write_run(FLAGS.workdir)
    logging.info(
        "Wrote %s/report.md and its figures in %.1f s.", FLAGS.workdir, time.perf_counter() - start
    )
    return 0


def command() -> None:
    """The console command ``gd-jax-toy-descent``."""
    common.launch(main, __name__)


if __name__ == "__main__":
    command()
