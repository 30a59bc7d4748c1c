"""The same training loop written without gd-jax: NumPy and, where installed, PyTorch.

Both peers do exactly gd-jax's maths for the quadratic cost and plain gradient descent:
a sigmoid network, C = (1/n) Σ_x ½‖y(x) − a(x)‖² over a mini-batch of n examples with
one-hot y, and v ← v − η ∂C/∂v, one epoch being the mini-batches of a random
permutation of the training set, in float32. They exist to put gd-jax's seconds per
epoch next to what a careful hand-written loop achieves on the same machine.
"""

import itertools
import time

import jax
import jax.numpy as jnp
import numpy as np

from gd_jax import model, optim, train
from gd_jax.config import ModelConfig

NumpyParams = list[tuple[np.ndarray, np.ndarray]]


def _sigmoid(z: np.ndarray) -> np.ndarray:
    # exp(−z) overflows to inf for z < −88 in float32, and 1/(1 + inf) is the right 0.
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-z))


def numpy_step(params: NumpyParams, x: np.ndarray, y: np.ndarray, eta: float) -> NumpyParams:
    """One gradient-descent step by hand-written backpropagation, in place.

    With a⁰ = x, zˡ = aˡ⁻¹Wˡ + bˡ, aˡ = σ(zˡ) and the batch mean in C:

      δᴸ = (aᴸ − y) ⊙ σ′(zᴸ) / n          (BP1)
      δˡ = (δˡ⁺¹ Wˡ⁺¹ᵀ) ⊙ σ′(zˡ)           (BP2)
      ∂C/∂bˡ = Σ_batch δˡ                  (BP3)
      ∂C/∂Wˡ = aˡ⁻¹ᵀ δˡ                    (BP4)

    with σ′(z) = σ(z)(1 − σ(z)), then Wˡ ← Wˡ − η ∂C/∂Wˡ and bˡ ← bˡ − η ∂C/∂bˡ.

    Args:
      params: ``(W, b)`` per layer, float32, ``W`` of shape ``[fan_in, fan_out]``;
        updated in place and returned.
      x: inputs ``[n, fan_in]``, float32.
      y: one-hot targets ``[n, k]``, float32.
      eta: the learning rate η.

    Returns:
      ``params``.
    """
    activations = [x]
    for w, b in params:
        activations.append(_sigmoid(activations[-1] @ w + b))
    out = activations[-1]
    delta = (out - y) * out * (1.0 - out) * np.float32(1.0 / x.shape[0])
    eta = np.float32(eta)
    for layer in range(len(params) - 1, -1, -1):
        w, b = params[layer]
        grad_w = activations[layer].T @ delta
        grad_b = delta.sum(axis=0)
        if layer:  # BP2 with the weights before this step's update
            a = activations[layer]
            delta = (delta @ w.T) * a * (1.0 - a)
        w -= eta * grad_w
        b -= eta * grad_b
    return params


def numpy_epoch(
    params: NumpyParams,
    x: np.ndarray,
    labels: np.ndarray,
    eta: float,
    batch_size: int,
    rng: np.random.Generator,
) -> NumpyParams:
    """One pass over the mini-batches of a random permutation of ``(x, labels)``."""
    n = x.shape[0]
    steps = n // batch_size
    order = rng.permutation(n)[: steps * batch_size].reshape(steps, batch_size)
    eye = np.eye(params[-1][0].shape[1], dtype=np.float32)
    for idx in order:
        numpy_step(params, x[idx], eye[labels[idx]], eta)
    return params


def to_numpy(params: model.Params) -> NumpyParams:
    """gd-jax parameters as writable float32 NumPy arrays."""
    return [(np.array(w, np.float32), np.array(b, np.float32)) for w, b in params]


def check_numpy_step(sizes, x: np.ndarray, labels: np.ndarray, *, steps: int = 3) -> float:
    """Runs ``steps`` steps (batch 10, η = 3.0) in NumPy and in gd-jax from the same
    parameters on the same batches, and returns the largest difference between the
    total updates they make, relative to the largest update. Raises if it is not at
    float32 rounding level, since then the NumPy peer would not be the same algorithm.
    (Updates, not parameters: with N(0, 1) weights many sigmoids saturate and the
    updates are small next to the weights, so comparing weights would hide an error.)"""
    start = model.init_params(jax.random.key(3), sizes)
    tx = optim.make("gd", 3.0)
    step = jax.jit(
        train.make_step(train.make_loss(ModelConfig(tuple(sizes), "sigmoid", "mse", "normal")), tx)
    )
    state = train.init_state(start, tx)
    mine = to_numpy(start)
    eye = np.eye(sizes[-1], dtype=np.float32)
    for s in range(steps):
        idx = np.arange(s * 10, (s + 1) * 10)
        state, _ = step(state, jnp.asarray(x[idx]), jnp.asarray(labels[idx]))
        numpy_step(mine, x[idx], eye[labels[idx]], 3.0)
    leaves = lambda p: [np.asarray(a, np.float64) for a in jax.tree.leaves(p)]
    first = leaves(start)
    theirs = [a - a0 for a, a0 in zip(leaves(jax.device_get(state.params)), first, strict=True)]
    ours = [a - a0 for a, a0 in zip(leaves(mine), first, strict=True)]
    scale = max(float(np.max(np.abs(t))) for t in theirs)
    error = max(float(np.max(np.abs(a - b))) for a, b in zip(ours, theirs, strict=True)) / scale
    if not (scale > 0 and error < 1e-4):
        raise AssertionError(f"NumPy peer's updates differ from gd-jax's by {error:.2e}")
    return error


def time_numpy(sizes, x: np.ndarray, labels: np.ndarray, epochs: int, batch_size: int = 10):
    """Best seconds per epoch of the NumPy peer, η = 3.0."""
    params = to_numpy(model.init_params(jax.random.key(0), sizes))
    rng = np.random.default_rng(0)
    seconds = []
    for _ in range(epochs):
        tic = time.perf_counter()
        numpy_epoch(params, x, labels, 3.0, batch_size, rng)
        seconds.append(time.perf_counter() - tic)
    return min(seconds)


def time_torch(sizes, x: np.ndarray, labels: np.ndarray, epochs: int, batch_size: int = 10):
    """Best seconds per epoch of a plain PyTorch CPU loop, or ``None`` without torch.

    ``nn.Sequential`` of ``Linear`` + ``Sigmoid``; the cost is ``MSELoss(reduction="sum")``
    times 1/(2n), which is C = (1/n) Σ ½‖y − a‖²; ``optim.SGD(lr=3.0)``.
    """
    try:
        import torch  # optional: most machines running gd-jax lack it
    except ImportError:
        return None
    torch.manual_seed(0)
    layers = []
    for fan_in, fan_out in itertools.pairwise(sizes):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.Sigmoid()]
    net = torch.nn.Sequential(*layers)
    sgd = torch.optim.SGD(net.parameters(), lr=3.0)
    squared = torch.nn.MSELoss(reduction="sum")
    inputs = torch.from_numpy(np.array(x, np.float32))  # a writable copy, as torch wants
    targets = torch.from_numpy(np.eye(sizes[-1], dtype=np.float32)[labels])
    n = inputs.shape[0]
    steps = n // batch_size
    seconds = []
    for _ in range(epochs):
        tic = time.perf_counter()
        order = torch.randperm(n)[: steps * batch_size].reshape(steps, batch_size)
        for idx in order:
            sgd.zero_grad(set_to_none=True)
            cost = squared(net(inputs[idx]), targets[idx]) / (2 * batch_size)
            cost.backward()
            sgd.step()
        seconds.append(time.perf_counter() - tic)
    return min(seconds)
