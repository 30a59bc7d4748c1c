"""The multilayer perceptron as pure functions over a list of ``(W, b)`` layers.

A layer maps a batch ``x`` of shape ``[n, fan_in]`` to ``act(x @ W + b)`` with ``W`` of
shape ``[fan_in, fan_out]``: the textbook's ``a' = σ(w a + b)`` written for a batch of
row vectors, so one matmul serves all examples.
"""

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp

Params = list[tuple[jax.Array, jax.Array]]

SCHEMES = ("normal", "scaled")
ACTIVATIONS = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
}
# The output layer: sigmoid for the quadratic cost (outputs in (0, 1) like one-hot
# targets), raw logits for the softmax cross-entropy.
OUTPUTS = {"sigmoid": jax.nn.sigmoid, "logits": lambda z: z}


def init_params(key: jax.Array, sizes: Sequence[int], scheme: str = "normal") -> Params:
    """Draws the weights and biases of a fully connected network.

    Args:
      key: a PRNG key, split once per layer.
      sizes: layer widths from input to output, e.g. ``(784, 16, 16, 10)``.
      scheme: ``"normal"``: every weight and bias N(0, 1), the textbook's first
        initialisation; ``"scaled"``: weights N(0, 1/fan_in), biases N(0, 1), which
        keeps pre-activations of order one so sigmoid units start unsaturated.

    Returns:
      A list of ``(W, b)`` with ``W`` of shape ``[fan_in, fan_out]`` and ``b`` of
      shape ``[fan_out]``, float32.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {SCHEMES}")
    params = []
    for layer_key, fan_in, fan_out in zip(
        jax.random.split(key, len(sizes) - 1), sizes[:-1], sizes[1:], strict=True
    ):
        w_key, b_key = jax.random.split(layer_key)
        scale = 1.0 if scheme == "normal" else 1.0 / jnp.sqrt(fan_in)
        w = scale * jax.random.normal(w_key, (fan_in, fan_out), jnp.float32)
        b = jax.random.normal(b_key, (fan_out,), jnp.float32)
        params.append((w, b))
    return params


def predict(
    params: Params,
    x: jax.Array,
    *,
    activation: str = "sigmoid",
    output: str = "sigmoid",
) -> jax.Array:
    """The network's output for a batch: ``a ← act(a W + b)`` layer by layer.

    Args:
      params: the layers, as from :func:`init_params`.
      x: inputs of shape ``[n, sizes[0]]``.
      activation: hidden-layer nonlinearity, one of ``ACTIVATIONS``.
      output: the output layer, one of ``OUTPUTS``: ``"sigmoid"`` (activations in
        (0, 1)) or ``"logits"`` (no nonlinearity).

    Returns:
      The output layer, shape ``[n, sizes[-1]]``.
    """
    act = ACTIVATIONS[activation]
    *hidden, (w_out, b_out) = params
    a = x
    for w, b in hidden:
        # b[None] broadcasts the bias over the batch explicitly (tests forbid rank promotion).
        a = act(a @ w + b[None])
    return OUTPUTS[output](a @ w_out + b_out[None])


def num_params(sizes: Sequence[int]) -> int:
    """Weights plus biases of a fully connected network: Σ (fan_in + 1) · fan_out."""
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in itertools.pairwise(sizes))


def count_params(params: Params) -> int:
    """The number of scalars in a parameter pytree."""
    return sum(leaf.size for leaf in jax.tree.leaves(params))


def layer_sizes(params: Params) -> tuple[int, ...]:
    """The widths ``(input, hidden..., output)`` of a parameter list."""
    return (params[0][0].shape[0], *(w.shape[1] for w, _ in params))
