"""The loss landscape between two networks: paths, barriers, symmetries, alignment.

Gradient descent from different seeds ends at different parameter vectors θ_A, θ_B. They
may still be the same minimum: a multilayer perceptron computes the same function after
its hidden units are reordered (every activation), or after a unit's sign is flipped
(odd tanh, and sigmoid via σ(−z) = 1 − σ(z)). :func:`align` undoes those symmetries as
well as weight matching can, and :func:`path` / :func:`barrier` measure the cost along
the straight line between the two networks before and after. The permutation conjecture
(Entezari et al. 2022) is that after the right alignment the barrier vanishes; weight
matching is the data-free alignment of Ainsworth et al. 2023, "Git Re-Basin".

A hidden layer ``l`` (0 = the first) is ``params[l]`` (its incoming weights and biases);
its outgoing weights are ``params[l + 1]``. Permutations follow gather order: after
:func:`permute`, unit ``i`` is the old unit ``perm[i]``.
"""

import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
from jax.typing import ArrayLike

from gd_jax import memory, model

_SIGN_SYMMETRIC = ("sigmoid", "tanh")


def interpolate(params_a: model.Params, params_b: model.Params, alpha: ArrayLike) -> model.Params:
    """θ(α) = (1 − α)θ_A + αθ_B, leaf by leaf; exactly θ_A at α = 0 and θ_B at α = 1."""
    return jax.tree.map(lambda a, b: (1 - alpha) * a + alpha * b, params_a, params_b)


@functools.partial(jax.jit, static_argnames=("evaluate", "chunk"))
def _scores_along(evaluate, params_a, params_b, x, labels, alphas, chunk):
    # evaluate is static, so jit's own cache holds one program per (evaluate, shapes).
    score = lambda alpha: evaluate(interpolate(params_a, params_b, alpha), x, labels)
    return memory.map_in_chunks(score, alphas, chunk)


def path(
    evaluate: Callable[..., dict[str, jax.Array]],
    params_a: model.Params,
    params_b: model.Params,
    x: jax.Array,
    labels: jax.Array,
    *,
    num: int = 25,
    chunk: int | None = None,
) -> dict[str, np.ndarray]:
    """Scores along the straight line from θ_A to θ_B.

    All ``num`` points are one compiled program: α is a ``vmap`` axis, taken ``chunk``
    points at a time (all at once if None), so memory is ``chunk`` times that of one
    ``evaluate`` on ``x``. The program is cached by the
    ``evaluate`` object (a static argument) and the shapes, so pass the *same* evaluate
    (``train.make_evaluate`` builds a new one per call) to avoid compiling again.

    Args:
      evaluate: ``(params, x, labels) -> dict of scalars``, e.g. ``train.make_evaluate``.
      params_a, params_b: the endpoints, with the same structure and shapes.
      x, labels: the data the scores are taken on.
      num: points α = 0, 1/(num − 1), …, 1.
      chunk: points evaluated at once (``memory.chunk_for`` gives one for a budget).

    Returns:
      ``{"alpha": [num], <each key of evaluate>: [num]}`` as NumPy arrays.
    """
    dtype = jnp.result_type(*jax.tree.leaves(params_a))
    # np.linspace puts exactly 0 and 1 at the ends, so the endpoints are θ_A and θ_B.
    alphas = jnp.asarray(np.linspace(0.0, 1.0, num), dtype)
    chunk = num if chunk is None else chunk
    scores = jax.device_get(_scores_along(evaluate, params_a, params_b, x, labels, alphas, chunk))
    return {"alpha": np.asarray(alphas), **{k: np.asarray(v) for k, v in scores.items()}}


def barrier(costs: np.ndarray) -> float:
    """The loss barrier of a path: max_α C(α) − (C(0) + C(1)) / 2.

    Zero when the cost never rises above the endpoints' mean (e.g. a network with
    itself, or a linearly connected pair). It is negative only when the endpoint costs
    differ and the path stays below their mean throughout, or by rounding; it is
    returned as is, not clipped.
    """
    costs = np.asarray(costs)
    return float(np.max(costs) - (costs[0] + costs[-1]) / 2)


def distance(params_a: model.Params, params_b: model.Params) -> float:
    """‖θ_A − θ_B‖, the Euclidean norm over all leaves."""
    squares = jax.tree.map(lambda a, b: jnp.sum((a - b) ** 2), params_a, params_b)
    return float(jnp.sqrt(sum(jax.tree.leaves(squares))))


def _check_hidden(params: model.Params, layer: int) -> None:
    if not 0 <= layer < len(params) - 1:
        raise ValueError(f"layer {layer} is not a hidden layer of {len(params)} layers")


def permute(params: model.Params, layer: int, perm: ArrayLike) -> model.Params:
    """Reorders the units of hidden layer ``layer``; the network's function is unchanged.

    Unit ``i`` becomes the old unit ``perm[i]``: W_l ← W_l[:, perm], b_l ← b_l[perm],
    W_{l+1} ← W_{l+1}[perm, :].
    """
    _check_hidden(params, layer)
    perm = jnp.asarray(perm)
    (w_in, b_in), (w_out, b_out) = params[layer], params[layer + 1]
    new = [(w_in[:, perm], b_in[perm]), (w_out[perm, :], b_out)]
    return [*params[:layer], *new, *params[layer + 2 :]]


def flip(params: model.Params, layer: int, signs: ArrayLike, activation: str) -> model.Params:
    """Flips the sign of units of hidden layer ``layer``; the network's function is unchanged.

    With s ∈ {±1} per unit and h = act(z) its output: the incoming weights and bias
    become s·w, s·b and the outgoing weights s·w'. For tanh, tanh(−z) = −tanh(z) makes
    that exact. For sigmoid, σ(−z) = 1 − σ(z) leaves a constant: (1 − h)(−w') = hw' − w',
    so each flipped unit's original w' is added to the next layer's bias,
    b_{l+1} ← b_{l+1} + Σ_i (1 − s_i)/2 · W_{l+1}[i, :]. ReLU has no sign symmetry.

    Raises:
      ValueError: for relu when any sign is −1 (the check needs concrete ``signs``), or
        for an unknown activation.
    """
    _check_hidden(params, layer)
    if activation == "relu":
        if np.any(np.asarray(signs) != 1):
            raise ValueError("relu has no sign symmetry; flip needs all signs +1")
        return list(params)
    if activation not in _SIGN_SYMMETRIC:
        raise ValueError(f"unknown activation {activation!r}")
    (w_in, b_in), (w_out, b_out) = params[layer], params[layer + 1]
    s = jnp.asarray(signs, w_in.dtype)
    if activation == "sigmoid":
        # An elementwise sum, not a matmul: GPU matmuls may default to TF32.
        b_out = b_out + jnp.sum(((1 - s) / 2)[:, None] * w_out, axis=0)
    new = [(w_in * s[None], b_in * s), (w_out * s[:, None], b_out)]
    return [*params[:layer], *new, *params[layer + 2 :]]


def transform(
    params: model.Params,
    perms: Sequence[ArrayLike],
    signs: Sequence[ArrayLike] | None,
    activation: str,
) -> model.Params:
    """Applies a symmetry to every hidden layer: for each layer, :func:`flip` then :func:`permute`.

    Flip first means ``signs[l]`` is indexed by the units *before* the permutation: the
    new unit i of layer l is ``signs[l][perms[l][i]]`` times the old unit ``perms[l][i]``.
    ``signs=None`` permutes only.
    """
    for layer, perm in enumerate(perms):
        if signs is not None:
            params = flip(params, layer, signs[layer], activation)
        params = permute(params, layer, perm)
    return params


def random_symmetry(
    key: jax.Array, params: model.Params, activation: str
) -> tuple[model.Params, list[jax.Array], list[jax.Array]]:
    """A uniformly random permutation of every hidden layer and, for sigmoid and tanh,
    random signs, applied with :func:`transform`.

    Returns:
      ``(transformed params, perms, signs)``; for relu the signs are all +1.
    """
    perms, signs = [], []
    keys = jax.random.split(key, len(params) - 1)
    for layer_key, (_, b) in zip(keys, params[:-1], strict=True):
        perm_key, sign_key = jax.random.split(layer_key)
        perms.append(jax.random.permutation(perm_key, b.shape[0]))
        if activation in _SIGN_SYMMETRIC:
            signs.append(jax.random.rademacher(sign_key, b.shape, b.dtype))
        else:
            signs.append(jnp.ones_like(b))
    flips = signs if activation in _SIGN_SYMMETRIC else None
    return transform(params, perms, flips, activation), perms, signs


def align(
    params_a: model.Params, params_b: model.Params, activation: str
) -> tuple[model.Params, list[np.ndarray], list[np.ndarray]]:
    """Weight matching: the symmetry of B that best lines its hidden units up with A's.

    Layer by layer from the input, unit i of A is scored against unit j of B by the
    cosine of their incoming vectors u = (W_l[:, unit], b_l[unit]). B's earlier layers
    are aligned already, so the rows of its W_l are in A's order and the vectors are
    comparable. With sign symmetry (sigmoid, tanh) the score is |cos| and the sign of
    cos is the unit's flip; for relu it is cos and no flip. The assignment maximising
    the total score (``scipy.optimize.linear_sum_assignment``) is applied to B with
    :func:`flip` and :func:`permute`, so aligned B computes the same function as B.

    For B an exact transformed copy of A this recovers the transformation: a unit's
    cosine with itself is ±1, the unique maximum when A's units are distinct, so aligned
    B equals A up to rounding. For independently trained networks it is a heuristic
    (Ainsworth et al. 2023, "Git Re-Basin"); it looks only at weights, never at data.

    Returns:
      ``(aligned B, perms, signs)``, NumPy arrays per hidden layer with
      ``transform(params_b, perms, signs, activation)`` equal to aligned B.

    Raises:
      ValueError: if A and B have different layer sizes.
    """
    if model.layer_sizes(params_a) != model.layer_sizes(params_b):
        raise ValueError("align needs networks of the same layer sizes")
    if activation not in model.ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}")
    signed = activation in _SIGN_SYMMETRIC
    perms, signs = [], []
    for layer in range(len(params_a) - 1):
        units_a, units_b = (_unit_directions(p[layer]) for p in (params_a, params_b))
        cos = units_a @ units_b.T  # [units of A, units of B]
        score = np.abs(cos) if signed else cos
        rows, cols = scipy.optimize.linear_sum_assignment(score, maximize=True)
        # The problem is square, so rows == arange(k): cols[i] is B's match for A's unit i.
        sign = np.ones(len(cols))
        if signed:
            sign[cols] = np.where(cos[rows, cols] < 0, -1.0, 1.0)
        params_b = permute(flip(params_b, layer, sign, activation), layer, cols)
        perms.append(cols)
        signs.append(sign)
    return params_b, perms, signs


def _unit_directions(layer: tuple[jax.Array, jax.Array]) -> np.ndarray:
    """Unit vectors of the incoming weights and bias, one row per unit, in float64."""
    w, b = (np.asarray(a, np.float64) for a in layer)
    units = np.concatenate([w, b[None]], axis=0).T
    norms = np.linalg.norm(units, axis=1, keepdims=True)
    # A dead unit (all zeros) scores 0 against everything rather than NaN.
    return units / np.maximum(norms, np.finfo(np.float64).tiny)


def unit_normalized_direction(key: jax.Array, params: model.Params) -> model.Params:
    """A random direction scaled unit by unit like ``params`` (Li et al. 2018).

    Each unit's incoming weights (a column of W) and its bias are drawn from N(0, 1) and
    rescaled to the norm of that unit's weights in ``params``, so a step of 1 along the
    direction moves every unit by as much as its own size: the scale symmetries of the
    network do not distort the picture.
    """
    direction = []
    for layer_key, (w, b) in zip(jax.random.split(key, len(params)), params, strict=True):
        kw, kb = jax.random.split(layer_key)
        dw = jax.random.normal(kw, w.shape, w.dtype)
        db = jax.random.normal(kb, b.shape, b.dtype)
        size = jnp.sqrt(jnp.sum(jnp.square(w), axis=0) + jnp.square(b))
        norm = jnp.sqrt(jnp.sum(jnp.square(dw), axis=0) + jnp.square(db))
        scale = size / jnp.maximum(norm, 1e-12)
        direction.append((dw * scale[None], db * scale))
    return direction


@functools.partial(jax.jit, static_argnums=(0, 5))
def _surface_scores(evaluate, params, directions, xy, axes, chunk):
    """C(θ + s·d₁ + t·d₂) at every (s, t) of ``axes`` = (a, b), ``chunk`` points at a time."""
    (d1, d2), (x, labels), (a, b) = directions, xy, axes

    def at(st):
        s, t = st
        moved = jax.tree.map(lambda p, u, v: p + s * u + t * v, params, d1, d2)
        return evaluate(moved, x, labels)["cost"]

    if chunk >= a.size * b.size:  # the whole grid at once
        return jax.vmap(lambda s: jax.vmap(lambda t: at((s, t)))(b))(a)
    s, t = jnp.meshgrid(a, b, indexing="ij")
    return memory.map_in_chunks(at, (s.ravel(), t.ravel()), chunk).reshape(s.shape)


def surface(
    evaluate: Callable[..., dict[str, jax.Array]],
    params: model.Params,
    x: jax.Array,
    labels: jax.Array,
    *,
    key: jax.Array,
    num: int = 21,
    extent: float = 1.0,
    chunk: int | None = None,
) -> dict[str, np.ndarray]:
    """The cost on a 2-D plane through ``params`` spanned by two unit-normalised random
    directions: C(θ + s·d₁ + t·d₂) for s, t in [−extent, extent] on a ``num`` × ``num``
    grid, one compiled program that takes ``chunk`` points at a time (all if None).

    Returns:
      ``{"s": [num], "t": [num], "cost": [num, num]}`` (cost[i, j] at s[i], t[j]).
    """
    k1, k2 = jax.random.split(key)
    d1 = unit_normalized_direction(k1, params)
    d2 = unit_normalized_direction(k2, params)
    grid = jnp.asarray(np.linspace(-extent, extent, num), jnp.float32)
    chunk = num * num if chunk is None else chunk
    cost = _surface_scores(evaluate, params, (d1, d2), (x, labels), (grid, grid), chunk)
    return {"s": np.asarray(grid), "t": np.asarray(grid), "cost": np.asarray(cost)}


def match_objective(params_a: model.Params, params_b: model.Params) -> float:
    """Σ over every weight and bias of θ_A · θ_B: the similarity weight matching raises."""
    products = jax.tree.map(lambda a, b: jnp.vdot(a, b), params_a, params_b)
    return float(sum(jax.tree.leaves(products)))


def weight_matching(
    params_a: model.Params,
    params_b: model.Params,
    activation: str,
    *,
    key: jax.Array,
    max_sweeps: int = 100,
) -> tuple[model.Params, list[np.ndarray], list[np.ndarray], list[float]]:
    """Weight matching as Git Re-Basin solves it (Ainsworth et al. 2023), with sign flips.

    Finds the symmetry (per hidden layer a permutation and, for sigmoid and tanh, signs)
    of B that maximises :func:`match_objective` of A and transformed B, by coordinate
    ascent: each hidden layer's assignment in turn, the others held fixed, solved
    exactly as a linear assignment from everything the layer's units touch: their
    incoming weights and bias and their outgoing weights (and, for a flipped sigmoid
    unit, the next bias it shifts). Layers are visited in a random order each sweep,
    until a sweep changes nothing. Each step can only raise the objective, so it never
    decreases from one sweep to the next, and the method stops at a local optimum (the
    problem is NP-hard for more than one hidden layer). It starts from :func:`align`, the
    one-pass, incoming-only heuristic, so it ends at least as similar to A as that.

    Args:
      params_a, params_b: networks of the same layer sizes.
      activation: the hidden nonlinearity (relu has no sign symmetry).
      key: orders the layers of each sweep.
      max_sweeps: stop after this many sweeps even if the last one changed something.

    Returns:
      ``(matched B, perms, signs, objectives)``: transformed B, the symmetry as for
      :func:`transform`, and the objective before the first sweep and after each.
    """
    if model.layer_sizes(params_a) != model.layer_sizes(params_b):
        raise ValueError("weight_matching needs networks of the same layer sizes")
    signed = activation in _SIGN_SYMMETRIC
    a = [(np.asarray(w, np.float64), np.asarray(b, np.float64)) for w, b in params_a]
    hidden = len(a) - 1
    # From the one-pass alignment, so the result is never worse than it.
    _, perms, signs = align(params_a, params_b, activation)
    perms, signs = [np.asarray(p) for p in perms], [np.asarray(s, np.float64) for s in signs]
    flips = lambda s: s if signed else None
    current = lambda: transform(params_b, perms, flips(signs), activation)
    objectives = [match_objective(params_a, current())]
    for sweep_key in jax.random.split(key, max_sweeps):
        changed = False
        for layer in np.asarray(jax.random.permutation(sweep_key, hidden)):
            layer = int(layer)
            before = perms[layer], signs[layer]
            # B with every other layer's symmetry applied and this layer's undone.
            units = len(perms[layer])
            perms[layer], signs[layer] = np.arange(units), np.ones(units)
            b = [(np.asarray(w, np.float64), np.asarray(c, np.float64)) for w, c in current()]
            (w_in_a, b_in_a), (w_out_a, b_next_a) = a[layer], a[layer + 1]
            (w_in_b, b_in_b), (w_out_b, _) = b[layer], b[layer + 1]
            # same[i, j]: what pairing A's unit i with B's unit j adds to the objective.
            same = w_in_a.T @ w_in_b + np.outer(b_in_a, b_in_b) + w_out_a @ w_out_b.T
            score, sign = same, np.ones_like(same)
            if signed:
                # Flipped, every product changes sign; a sigmoid unit also adds its
                # outgoing row to the next layer's bias.
                shift = (w_out_b @ b_next_a)[None] if activation == "sigmoid" else 0.0
                flipped = -same + shift
                sign = np.where(flipped > same, -1.0, 1.0)
                score = np.maximum(same, flipped)
            _, cols = scipy.optimize.linear_sum_assignment(score, maximize=True)
            unit_sign = np.ones(units)
            unit_sign[cols] = sign[np.arange(units), cols]
            perms[layer], signs[layer] = cols, unit_sign
            changed |= not (
                np.array_equal(cols, before[0]) and np.array_equal(unit_sign, before[1])
            )
        objectives.append(match_objective(params_a, current()))
        if not changed:
            break
    return current(), perms, signs, objectives
