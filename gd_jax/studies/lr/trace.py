"""Full-batch gradient descent for every network of the study, watched closely: the
measured ΔC against its first- and second-order predictions, and the sharpness λ_max
against 2/η."""

import dataclasses
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gd_jax import curvature, memory, optim, progress, train
from gd_jax.config import ModelConfig
from gd_jax.sweep import engine
from gd_jax.sweep.engine import Networks


class TraceResult(NamedTuple):
    """Full-batch gradient descent, watched closely.

    Every ``[S, N]`` array is sampled at ``sample_steps`` (before that step's update);
    NaN where the network had already diverged or a quantity was not tracked.
    """

    networks: Networks
    sample_steps: np.ndarray  # int [S]
    cost: np.ndarray  # C(v_t)
    measured: np.ndarray  # C(v_t − η g_t) − C(v_t): the next step's true ΔC
    first_order: np.ndarray  # −η‖g‖²
    second_order: np.ndarray  # −η‖g‖² + ½η² gᵀHg
    grad_norm_sq: np.ndarray
    g_h_g: np.ndarray
    lambda_max: np.ndarray  # of the Hessian of the cost on the sharpness examples
    lambda_min: np.ndarray
    step_cost: np.ndarray  # [steps, N]: the cost before every update
    diverged_step: np.ndarray  # int [N], -1 if never
    seconds: float


@dataclasses.dataclass(frozen=True)
class TraceOptions:
    """How the trace runs: ``steps`` full-batch steps, sampled every ``every``; with
    ``track_sharpness``, λ_min and λ_max by ``lanczos_iters`` Lanczos steps from the
    start vector of ``lanczos_seed``; networks worked ``memory.chunk_for`` of them at a
    time, so that their activations on the training set stay within
    ``memory_budget`` GiB."""

    steps: int
    every: int
    track_sharpness: bool = True
    lanczos_iters: int = 20
    lanczos_seed: int = 0
    memory_budget: float = memory.MEMORY_BUDGET_GIB


def full_batch_trace(
    networks: Networks,
    model_config: ModelConfig,
    train_xy: tuple[jax.Array, jax.Array],
    sharpness_xy: tuple[jax.Array, jax.Array],
    options: TraceOptions,
    *,
    loss: train.Loss | None = None,
) -> TraceResult:
    """Full-batch gradient descent Δv = −η∇C for all networks, measured every
    ``options.every`` steps.

    At each sample step t the trace records the cost, the next update's measured ΔC
    and its first- and second-order predictions (one Hessian-vector product), and,
    with ``track_sharpness``, the extreme Hessian eigenvalues λ_min and λ_max of the
    cost on ``sharpness_xy`` (Lanczos). Gradient descent on a quadratic is stable only
    for η < 2/λ_max, which these numbers put to the test. The whole trace is one
    compiled program: a scan over samples of a scan over steps.

    ``loss`` is the cost the trace descends and measures (the core's
    ``train.make_loss`` by default; a study passes its path's, ``paths.functions``).

    Returns:
      A :class:`TraceResult` with ``steps // every + 1`` samples (the last one after
      the final update).
    """
    steps, every = options.steps, options.every
    state = engine.init(networks, model_config, optim.make("gd", 1.0))
    chunk = memory.chunk_for(
        model_config.sizes, train_xy[0].shape[0], options.memory_budget,
        copies=memory.TRACE_COPIES, krylov=options.lanczos_iters if options.track_sharpness else 0,
    )  # fmt: skip
    run = make_trace(
        train.make_loss(model_config) if loss is None else loss,
        steps=steps,
        every=every,
        track_sharpness=options.track_sharpness,
        lanczos_iters=options.lanczos_iters,
        lanczos_seed=options.lanczos_seed,
        chunk=chunk,
        ticks=progress.mode() == "bar",
    )
    eta = jnp.asarray(networks.learning_rate, jnp.float32)
    tic = time.perf_counter()
    samples = memory.chunks_of(len(networks), chunk) * (steps // every)
    with progress.ticking(progress.bar("Full-batch trace", samples, "sample")) as shown:
        found, step_cost, diverged_step = jax.device_get(
            run(state.train.params, eta, *train_xy, *sharpness_xy)
        )
        shown.update(samples - shown.done)  # all of it, whether it ticked or not
        shown.close()
    seconds = time.perf_counter() - tic
    column = lambda k: np.asarray(found[k], np.float64).T  # [N, S] -> [S, N]
    found["lambda_min"], found["lambda_max"] = curvature.extreme_ritz_values(
        found["alphas"], found["betas"]
    )
    return TraceResult(
        networks=networks,
        sample_steps=np.arange(steps // every + 1) * every,
        cost=column("cost"),
        measured=column("measured"),
        first_order=column("first_order"),
        second_order=column("second_order"),
        grad_norm_sq=column("grad_norm_sq"),
        g_h_g=column("g_h_g"),
        lambda_max=column("lambda_max"),
        lambda_min=column("lambda_min"),
        step_cost=np.asarray(step_cost, np.float64).T,
        diverged_step=np.asarray(diverged_step),
        seconds=seconds,
    )


def make_trace(
    loss: train.Loss,
    *,
    steps: int,
    every: int,
    track_sharpness: bool,
    lanczos_iters: int,
    lanczos_seed: int,
    chunk: int,
    ticks: bool = False,
):
    """The compiled trace: ``run(params, eta, x, labels, xs, ls)`` for networks stacked
    on a leading axis (``chunk`` at a time), the data as arguments; ``loss`` is the cost
    descended.

    With ``ticks``, the program moves the progress bar (:func:`progress.tick`) once per
    sample and chunk, a host callback; only where a bar is drawn, since a program that
    calls the host is never kept in JAX's persistent compilation cache (the callback's
    address changes from one process to the next), so it is compiled again by every
    process that runs it. Without, the log says when the trace starts and ends."""
    lanczos_key = jax.random.key(lanczos_seed)
    samples = steps // every
    nan = jnp.float32(jnp.nan)

    def one(params, eta, x, labels, xs, ls):
        def measure(params, alive):
            found = curvature.step_predictions(loss, params, x, labels, learning_rate=eta)
            # T of the Lanczos run; its extreme eigenvalues are taken on the host, after
            # the program (cheaper there than bisection inside it, and no LAPACK inside).
            if track_sharpness:
                found["alphas"], found["betas"] = curvature.hessian_tridiagonal(
                    loss, params, xs, ls, key=lanczos_key, num_iters=lanczos_iters
                )
            else:
                found["alphas"] = jnp.full((lanczos_iters,), nan)
                found["betas"] = jnp.full((lanczos_iters - 1,), nan)
            return {k: jnp.where(alive, v, nan) for k, v in found.items()}

        def gd(carry, _):
            params, alive, diverged_step, t = carry
            c, g = jax.value_and_grad(loss)(params, x, labels)
            new = optim.gd_step(params, g, eta)
            ok = alive & jnp.isfinite(c) & engine.all_finite(new)
            params = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, params)
            diverged_step = jnp.where(alive & ~ok, t + 1, diverged_step)
            return (params, ok, diverged_step, t + 1), jnp.where(alive, c, nan)

        def sample(carry, index):
            found = measure(carry[0], carry[1])
            carry, costs = jax.lax.scan(gd, carry, None, length=every)
            # One tick of the progress bar per sample and chunk, from the host. ``index``
            # is the same for every network of a chunk: one call per chunk, not per network.
            if ticks:
                jax.debug.callback(progress.tick, index)
            return carry, (found, costs)

        carry = (params, jnp.bool_(True), jnp.int32(-1), jnp.int32(0))
        carry, (found, costs) = jax.lax.scan(sample, carry, jnp.arange(samples))
        last = measure(carry[0], carry[1])
        found = jax.tree.map(lambda a, b: jnp.concatenate([a, b[None]]), found, last)
        return found, costs.reshape(-1), carry[2]

    @jax.jit
    def run(params, eta, x, labels, xs, ls):
        return memory.map_in_chunks(lambda pe: one(*pe, x, labels, xs, ls), (params, eta), chunk)

    return run


def sharpness_subset(train_xy, examples: int):
    """The first ``examples`` training examples: a fixed subset, the same for every η."""
    return tuple(a[:examples] for a in train_xy)


# Work counted in passes of one network forward over one example: a gradient is about
# 3 of them, a Hessian-vector product about 6, a sample's step predictions about 10.
GRADIENT_PASSES, HVP_PASSES, PREDICTION_PASSES = 3, 6, 10


def estimate(study, examples: dict, eval_seconds: float, *, networks: int, per_chunk: int) -> float:
    """Seconds the full-batch trace of ``networks`` networks will take, roughly (within
    about 2×), from the seconds one evaluation of ``per_chunk`` of them took.

    Both are full-batch work, counted in passes of one network forward over one example
    (a gradient costs about 3, a Hessian-vector product about 6): the evaluation is a
    forward pass over ``examples["train"]`` and ``examples["eval"]`` examples and one
    gradient over the training set; the trace is ``full_batch_steps`` gradients plus,
    at each sample, its step predictions (about 10 passes) and ``lanczos_iters``
    Hessian-vector products on the sharpness examples.
    """
    n = examples["train"]
    evaluation = (1 + GRADIENT_PASSES) * n + examples["eval"]
    samples = study.full_batch_steps // study.sample_every + 1
    sharp = min(study.sharpness_examples, n) if study.track_sharpness_every else 0
    lanczos = HVP_PASSES * study.lanczos_iters * sharp
    trace = GRADIENT_PASSES * n * study.full_batch_steps + samples * (
        PREDICTION_PASSES * n + lanczos
    )
    return eval_seconds * trace / evaluation * networks / per_chunk
