"""The multilayer perceptron as pure functions over a list of ``(W, b)`` layers.

A layer maps a batch ``x`` of shape ``[n, fan_in]`` to ``act(x @ W + b)`` with ``W`` of
shape ``[fan_in, fan_out]``: the textbook's ``a' = σ(w a + b)`` written for a batch of
row vectors, so one matmul serves all examples.
"""

import itertools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

Params = list[tuple[jax.Array, jax.Array]]

# exp(x) = 2ⁿ · exp(r) with n = round(x / ln 2) and |r| ≤ ln 2 / 2, ln 2 split in two
# parts so n·ln 2 is exact, and exp(r) by the degree-7 polynomial of the Cephes library's
# expf. x is clamped to where 2ⁿ is a normal float32.
_LOG2E = np.float32(1.44269504088896341)
_LN2_HI, _LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)
_EXP_COEFFS = tuple(
    np.float32(c)
    for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
              1.6666665459e-1, 5.0000001201e-1)
)  # fmt: skip


def _exp32(x: jax.Array) -> jax.Array:
    x = jnp.clip(x, np.float32(-87.3), np.float32(88.3))
    n = jnp.floor(x * _LOG2E + np.float32(0.5))
    r = x - n * _LN2_HI - n * _LN2_LO
    p = _EXP_COEFFS[0]
    for c in _EXP_COEFFS[1:]:
        p = p * r + c
    p = p * (r * r) + r + 1
    two_n = jax.lax.bitcast_convert_type((n.astype(jnp.int32) + 127) << 23, jnp.float32)
    return p * two_n


@jax.custom_jvp
def sigmoid(z: jax.Array) -> jax.Array:
    """σ(z) = 1 / (1 + e⁻ᶻ), the same float32 numbers as ``jax.nn.sigmoid`` (tested
    bit for bit from −120 to 120, ±∞ and NaN) in a form XLA:CPU vectorises.

    XLA:CPU computes the exponential inside ``jax.nn.sigmoid`` with the same
    polynomial, but one element at a time: about 3 ns an element on a 2-core AMD EPYC,
    against 0.4 ns written out here in elementwise operations, and a sweep of 1,024
    networks spends seconds an epoch in it (``benchmarks/README.md``). Other dtypes
    (float64 for the minima study's polish) take ``jax.nn.sigmoid``. Its derivative
    is σ(1 − σ) from the output, as ``jax.nn.sigmoid``'s.
    """
    if z.dtype != jnp.float32:
        return jax.nn.sigmoid(z)
    return 1 / (1 + _exp32(-z))


@sigmoid.defjvp
def _sigmoid_jvp(primals, tangents):
    (z,), (t,) = primals, tangents
    s = sigmoid(z)
    return s, t * (s * (1 - s))


SCHEMES = ("normal", "scaled")
ACTIVATIONS = {
    "sigmoid": sigmoid,
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
}
# The output layer: sigmoid for the quadratic cost (outputs in (0, 1) like one-hot
# targets), raw logits for the softmax cross-entropy.
OUTPUTS = {"sigmoid": sigmoid, "logits": lambda z: z}


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
    """The network's output for a batch.

    Args:
      params: the layers, as from :func:`init_params`.
      x: inputs of shape ``[n, sizes[0]]``.
      activation: hidden-layer nonlinearity, one of ``ACTIVATIONS``.
      output: ``"sigmoid"`` (activations in (0, 1)) or ``"logits"`` (no nonlinearity).

    Returns:
      The output layer, shape ``[n, sizes[-1]]``.
    """
    (w, b), *rest = params
    # b[None] broadcasts the bias over the batch explicitly (tests forbid rank promotion).
    return from_first_layer(x @ w + b[None], rest, activation=activation, output=output)


def from_first_layer(
    z: jax.Array,
    rest: Params,
    *,
    activation: str = "sigmoid",
    output: str = "sigmoid",
    matmul=jnp.matmul,
) -> jax.Array:
    """The network's output from its first layer's pre-activations ``z = x W + b``.

    ``predict`` is this after one matmul; the fast gradient-descent path
    (``gd_jax.fast_gd``) computes ``z`` its own way and then shares this code.

    Args:
      z: pre-activations of the first layer, ``[n, fan_out]``.
      rest: the layers after the first (empty for a network with one layer).
      activation, output: as for :func:`predict`.
      matmul: the product of a layer's input and weights (``jnp.matmul``; the fast
        paths pass ``gd_jax.fast_gd.matmul``, the same product with a backward pass
        laid out for XLA:CPU).
    """
    act = ACTIVATIONS[activation]
    for w, b in rest:
        z = matmul(act(z), w) + b[None]
    return OUTPUTS[output](z)


def num_params(sizes: Sequence[int]) -> int:
    """Weights plus biases of a fully connected network: Σ (fan_in + 1) · fan_out."""
    return sum((fan_in + 1) * fan_out for fan_in, fan_out in itertools.pairwise(sizes))


def count_params(params: Params) -> int:
    """The number of scalars in a parameter pytree."""
    return sum(leaf.size for leaf in jax.tree.leaves(params))


def layer_sizes(params: Params) -> tuple[int, ...]:
    """The widths ``(input, hidden..., output)`` of a parameter list."""
    return (params[0][0].shape[0], *(w.shape[1] for w, _ in params))
