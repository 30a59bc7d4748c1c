"""The local-minima study's float64 polish, timed per point, and its L-BFGS against
scipy's on the same float64 cost.

For each width, one network's SGD-like start (a short full-batch descent from its
initialisation) is searched as the study searches it (``polish.polish_networks`` with
the study's default budget), and its parts are timed alone: a block of L-BFGS steps in
JAX's x64 mode (``optax.lbfgs`` in one compiled loop), the same number of iterations of
scipy's L-BFGS-B on the same jitted float64 cost and gradient (host-driven), one
measurement (Lanczos on the gradient) and one Newton-MR step. Data: the first
``--examples`` of Fashion-MNIST's training set where ``--fashion_dir`` has it, else
random 784-pixel inputs with random labels (the cost of a step does not depend on the
pixels; the trajectory does).

    python -m benchmarks.polish [--widths=4,16,64] [--steps=100]
"""

import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
from absl import app, flags

from benchmarks import timing
from gd_jax import train
from gd_jax.config import TrainConfig
from gd_jax.studies.minima import newton, polish
from gd_jax.studies.minima.config import MinimaConfig

flags.DEFINE_list("widths", ["4", "16", "64"], "Hidden widths (784-w-w-10).")
flags.DEFINE_integer("examples", 10000, "Training examples.")
flags.DEFINE_integer("steps", 100, "L-BFGS steps timed in each implementation.")
flags.DEFINE_string("fashion_dir", "/usr/share/datasets/fashion-mnist", "Fashion-MNIST IDX.")
flags.DEFINE_string("out", "benchmarks/results/polish.json", "Where the numbers go.")
FLAGS = flags.FLAGS


def _data():
    return timing.fashion_or_synthetic(FLAGS.fashion_dir, FLAGS.examples)


def _seconds(fn):
    tic = time.perf_counter()
    out = jax.block_until_ready(fn())
    return time.perf_counter() - tic, out


def _start(model_config, x, labels):
    """A start like an SGD endpoint: 200 full-batch steps of gradient descent, η = 3."""
    loss = train.make_loss(model_config)
    params = model_config.init_params(jax.random.key(0))
    step = jax.jit(
        lambda p: jax.tree.map(lambda a, g: a - 3.0 * g, p, jax.grad(loss)(p, x, labels))
    )
    for _ in range(200):
        params = step(params)
    return params


def one_width(width: int, x, labels) -> dict:
    model_config = TrainConfig(layers=(width, width)).model_config(784, 10)
    start = _start(model_config, jnp.asarray(x), jnp.asarray(labels))
    study = MinimaConfig()
    stacked = jax.tree.map(lambda leaf: np.asarray(leaf)[None], start)
    seconds, found = _seconds(
        lambda: polish.polish_networks(model_config, stacked, (x, labels), study,
                                       key=jax.random.key(0))
    )  # fmt: skip
    loss = train.make_loss(model_config)
    steps = FLAGS.steps
    with jax.enable_x64(True):
        xs, ys = jnp.asarray(x, jnp.float64), jnp.asarray(labels)
        flat, unravel = newton.flatten(jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), start))
        f = lambda v, a, b: loss(unravel(v), a, b)
        value_and_grad, _, lbfgs, init = newton._programs(f)
        flat = jnp.asarray(flat)
        jax.block_until_ready(lbfgs(flat, init(flat), (xs, ys), 1))  # compiled once
        jax_seconds, (jax_end, _) = _seconds(lambda: lbfgs(flat, init(flat), (xs, ys), steps))
        host = lambda v: tuple(np.asarray(a) for a in value_and_grad(jnp.asarray(v), xs, ys))
        tic = time.perf_counter()
        found_scipy = scipy.optimize.minimize(
            host, np.asarray(flat), jac=True, method="L-BFGS-B",
            options={"maxiter": steps, "gtol": 0.0, "ftol": 0.0, "maxcor": 20},
        )  # fmt: skip
        scipy_seconds = time.perf_counter() - tic
        criteria, budget = study.criteria(), study.budget()
        newton.local(f, flat, (xs, ys), criteria, budget.krylov)  # compiled once
        measure_seconds, at = _seconds(
            lambda: newton.local(f, flat, (xs, ys), criteria, budget.krylov)
        )
        newton_seconds, _ = _seconds(lambda: newton.newton_mr_step(f, flat, (xs, ys), at))
        jax_cost = float(value_and_grad(jax_end, xs, ys)[0])
    verdict = {k: v[0].item() for k, v in found.verdicts.items()}
    return {
        "width": width, "params": model_config.num_params,
        "polish_seconds_per_point": seconds, "polish_steps": int(found.steps[0]),
        "descending": bool(verdict["descending"]), "critical": bool(verdict["critical"]),
        "lbfgs_steps": steps,
        "jax_lbfgs_seconds_per_step": jax_seconds / steps, "jax_lbfgs_cost": jax_cost,
        "scipy_lbfgs_seconds_per_step": scipy_seconds / found_scipy.nit,
        "scipy_lbfgs_iterations": int(found_scipy.nit),
        "scipy_lbfgs_evaluations": int(found_scipy.nfev),
        "scipy_lbfgs_cost": float(found_scipy.fun), "start_cost": float(at.cost),
        "measurement_seconds": measure_seconds, "newton_mr_step_seconds": newton_seconds,
    }  # fmt: skip


def main(argv):
    del argv
    source, x, labels = _data()
    found = [one_width(int(w), x, labels) for w in FLAGS.widths]
    print(f"{source}, {FLAGS.examples} examples, float64 on {jax.devices()[0].platform}:")
    print(
        "width  params  polish s/point  JAX L-BFGS s/step  scipy s/step  (cost after "
        f"{FLAGS.steps}: JAX, scipy)  measure s  Newton-MR step s"
    )
    for r in found:
        print(f"{r['width']:5d}  {r['params']:6d}  {r['polish_seconds_per_point']:14.1f}  "
              f"{r['jax_lbfgs_seconds_per_step']:17.4f}  "
              f"{r['scipy_lbfgs_seconds_per_step']:12.4f}  "
              f"({r['jax_lbfgs_cost']:.5g}, {r['scipy_lbfgs_cost']:.5g})  "
              f"{r['measurement_seconds']:9.2f}  {r['newton_mr_step_seconds']:.2f}")  # fmt: skip
    record = {"environment": timing.environment(), "data": source,
              "examples": FLAGS.examples, "results": found,
              "date": time.strftime("%Y-%m-%d")}  # fmt: skip
    Path(FLAGS.out).write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    app.run(main)
