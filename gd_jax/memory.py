"""How much of a large computation fits in memory at once, and doing it in chunks.

The arrays that grow with a study are activations: N networks (or N points of a
landscape) × n examples × the hidden units. A computation over many networks is
therefore done ``chunk`` networks at a time, with ``chunk`` chosen so that their
activations stay under a budget; beyond one chunk, peak memory does not grow with N.
"""

import itertools

import jax

# The default budget, in GiB, for the activations of one chunk (per device).
MEMORY_BUDGET_GIB = 2.0

# Copies of one network's activations a computation holds at once: the forward pass,
# the backward pass and, for Hessian-vector products, their tangents.
COPIES = 8


def chunk_for(sizes, examples: int, budget_gib: float = MEMORY_BUDGET_GIB) -> int:
    """How many networks of layer widths ``sizes`` can be worked on ``examples``
    examples at once within ``budget_gib`` GiB (at least 1).

    Args:
      sizes: the network's layer widths, input first.
      examples: examples each network sees at once.
      budget_gib: the memory the chunk's activations may take.
    """
    units = sum(sizes[1:])
    params = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    per_network = COPIES * 4 * (examples * units + params)
    return max(1, int(budget_gib * 2**30 // per_network))


def map_in_chunks(fn, tree, chunk: int):
    """``jax.vmap(fn)(tree)`` over the leading axis of ``tree``, ``chunk`` entries at a
    time (a ``lax.map`` over chunks), so only one chunk's intermediates are alive."""
    count = jax.tree.leaves(tree)[0].shape[0]
    if count <= chunk:
        return jax.vmap(fn)(tree)
    return jax.lax.map(fn, tree, batch_size=chunk)
