"""What the machine could do: floating-point operations per step and the matmul peak.

The FLOP count is the dense-layer arithmetic of one gradient-descent step, the work any
implementation of the algorithm must do; an implementation that does more (or rounds
differently, like the sweep's delayed updates) is not credited for it.
"""

import itertools
import time

import jax
import jax.numpy as jnp


def flops_per_step(sizes, batch: int) -> int:
    """Floating-point operations of one step of batch ``batch`` through ``sizes``.

    For a dense layer with fan-in i and fan-out o on a batch of B examples:
    forward x W, 2·B·i·o; backward, the weight gradient aᵀδ, 2·B·i·o, and the input
    gradient δ Wᵀ, 2·B·i·o, except at the first layer, whose input gradient nobody
    needs; the update W ← W − η∇W, 2·i·o. Bias adds, the sigmoid, the cost and the
    bias updates are O(B·o) each and not counted.
    """
    total = 0
    for layer, (i, o) in enumerate(itertools.pairwise(sizes)):
        total += 2 * batch * i * o * (3 if layer else 2) + 2 * i * o
    return total


def flops_per_epoch(sizes, batch_size: int, examples: int) -> int:
    """``flops_per_step`` times the steps of one epoch; batch 0 is one full-batch step."""
    if batch_size == 0:
        return flops_per_step(sizes, examples)
    return flops_per_step(sizes, batch_size) * (examples // batch_size)


def _best_seconds(fn, *args, repeats: int) -> float:
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    seconds = []
    for _ in range(repeats):
        tic = time.perf_counter()
        jax.block_until_ready(fn(*args))
        seconds.append(time.perf_counter() - tic)
    return min(seconds)


def matmul_peak(size: int = 2048, repeats: int = 10) -> dict:
    """The float32 matmul rate XLA reaches here: best of ``repeats`` jitted, warm
    ``[size, size] @ [size, size]`` products, counted as 2·size³ operations, at full
    float32 precision (what gd-jax computes with by default; a GPU's default, TF32,
    would overstate the peak the runs can reach)."""
    ka, kb = jax.random.split(jax.random.key(0))
    a = jax.random.normal(ka, (size, size), jnp.float32)
    b = jax.random.normal(kb, (size, size), jnp.float32)
    product = lambda a, b: jnp.dot(a, b, precision=jax.lax.Precision.HIGHEST)
    best = _best_seconds(product, a, b, repeats=repeats)
    return {"size": size, "seconds": best, "gflops": 2 * size**3 / best / 1e9}


def full_batch_matmuls(x: jax.Array, hidden: int = 30, repeats: int = 10) -> dict:
    """GFLOP/s of the two products that make up nearly all of a full-batch step of
    784-30-10: the forward ``x @ W`` ([n, 784] @ [784, 30]) and the weight gradient
    ``xᵀ @ δ`` ([784, n] @ [n, 30]), and the same weight gradient with δ laid out
    ``[30, n]`` (``δᵀ @ x``, the transpose of ∂C/∂W). Thin products like these bound the
    full-batch case, whatever the square-matmul peak; the second layout shows how much
    of that bound is the layout of δ."""
    n, d = x.shape
    kw, kd = jax.random.split(jax.random.key(1))
    w = jax.random.normal(kw, (d, hidden), jnp.float32)
    delta = jax.random.normal(kd, (n, hidden), jnp.float32)
    delta_t = jnp.asarray(delta.T)  # stored transposed, not a view
    flops = 2 * n * d * hidden
    products = {
        "forward": (lambda x, w: x @ w, w),
        "weight_gradient": (lambda x, g: x.T @ g, delta),
        "weight_gradient_delta_transposed": (lambda x, g: g @ x, delta_t),
    }
    result = {}
    for name, (product, other) in products.items():
        seconds = _best_seconds(product, x, other, repeats=repeats)
        result[f"{name}_seconds"] = seconds
        result[f"{name}_gflops"] = flops / seconds / 1e9
    return result
