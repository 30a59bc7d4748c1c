"""The core's model and cost, assembled from faster pieces: what the fast paths compute.

Two substitutes, each the same arithmetic as the piece it replaces:

* the vectorised sigmoid (``gd_jax.fast.sigmoid``) for ``jax.nn.sigmoid``, wherever
  ``model.ACTIVATIONS`` or ``model.OUTPUTS`` name it (bit for bit);
* :func:`matmul`, ``a @ w`` with its backward pass spelled out, for the layers after
  the first in the fast paths' heads (the same products, summed in the same order).

Everything else is taken from the core as it is: the activation and output functions
it names, the cost (``costs.COSTS``) and its scores (``train.scores``). So a change to
a cost or an activation reaches the fast paths by itself; a change to
``train.make_loss`` or ``model.predict`` does not, and the check of each path against
the core (``gd_jax.fast.check``) then refuses it.
"""

import jax
import jax.numpy as jnp

from gd_jax import costs, model, train
from gd_jax.config import ModelConfig
from gd_jax.fast.sigmoid import sigmoid

# The core's pieces that have a faster substitute, by identity.
SUBSTITUTES = {jax.nn.sigmoid: sigmoid}


def piece(fn):
    """``fn``'s substitute where it has one, else ``fn`` itself."""
    return SUBSTITUTES.get(fn, fn)


@jax.custom_vjp
def matmul(a: jax.Array, w: jax.Array) -> jax.Array:
    """``a @ w``, with the backward pass written out: ``∂/∂a = g wᵀ`` and
    ``∂/∂w = aᵀ g``, each transpose made a real array first (``optimization_barrier``).

    The deeper layers of a batch of 10 are small products, and ``vmap``-ed over a sweep's
    networks they are batched ones. Left to itself XLA:CPU computes ``aᵀ g`` as a dot
    that contracts the batch axis, which it hands to a slow generic kernel; with the
    transposes materialised both products are plain row-major ones, which go to its
    fast matmul library (``benchmarks/``). The arithmetic is the same products (tested
    equal to ``jnp.matmul``'s gradient). Reverse mode only: the fast paths only take
    gradients.
    """
    return a @ w


def _matmul_forward(a, w):
    return a @ w, (a, w)


def _matmul_backward(saved, g):
    a, w = saved
    pin = jax.lax.optimization_barrier
    return g @ pin(jnp.swapaxes(w, -1, -2)), pin(jnp.swapaxes(a, -1, -2)) @ g


matmul.defvjp(_matmul_forward, _matmul_backward)


def make_forward(model_config: ModelConfig, product=jnp.matmul):
    """The network's output from its first layer's pre-activations ``z = x W + b``.

    Args:
      model_config: the network.
      product: the later layers' product, ``jnp.matmul`` or :func:`matmul`.

    Returns:
      ``forward(z, rest)``, ``rest`` the layers after the first: ``model.predict``
      after its first product, with the substitutes.
    """
    act = piece(model.ACTIVATIONS[model_config.activation])
    output = piece(model.OUTPUTS[model_config.output])

    def forward(z, rest):
        for w, b in rest:
            z = product(act(z), w) + b[None]
        return output(z)

    return forward


def head_loss(model_config: ModelConfig, product=jnp.matmul):
    """``head_loss(z, rest, labels)``: the cost of a batch from its first layer's
    pre-activations (:func:`make_forward`), what the fast paths differentiate."""
    cost, forward = costs.COSTS[model_config.cost], make_forward(model_config, product)

    def loss(z, rest, labels):
        outputs = forward(z, rest)
        return cost.fn(outputs, jax.nn.one_hot(labels, outputs.shape[-1], dtype=outputs.dtype))

    return loss


def _first_layer(head):
    def whole(params, x, *args):
        (w, b), *rest = params
        return head(x @ w + b[None], rest, *args)

    return whole


def make_loss(model_config: ModelConfig) -> train.Loss:
    """``loss(params, x, labels)``: ``train.make_loss`` with the substitutes."""
    return _first_layer(head_loss(model_config))


def make_evaluate(model_config: ModelConfig):
    """``evaluate(params, x, labels)``: ``train.make_evaluate`` with the substitutes."""
    predict = _first_layer(make_forward(model_config))
    return lambda params, x, labels: train.scores(model_config, predict(params, x), labels)
