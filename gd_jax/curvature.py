"""Curvature of the cost: Hessian-vector products, extreme eigenvalues, step predictions.

Everything here is pure and has fixed iteration counts, so a sweep can ``vmap`` it over
a leading axis of networks inside one compiled program. The public functions take
parameter pytrees; the linear algebra runs on the flat vector of
``jax.flatten_util.ravel_pytree``. The Hessian is never formed except by
:func:`dense_hessian`, meant for tiny networks and tests.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg
from jax.flatten_util import ravel_pytree

from gd_jax import memory

# Basis dot products at full float32 precision: on GPUs the default matmul precision may
# be TF32 (~1e-3 relative), which would leave the Lanczos basis visibly non-orthogonal.
_HIGHEST = jax.lax.Precision.HIGHEST


def _flat_loss(loss: Callable[..., jax.Array], params: Any, args: tuple):
    flat, unravel = ravel_pytree(params)
    return flat, lambda v: loss(unravel(v), *args)


def _flat_hvp(f: Callable[[jax.Array], jax.Array], flat: jax.Array, v: jax.Array) -> jax.Array:
    # Forward-over-reverse: one jvp through the gradient costs about two gradients,
    # against one per coordinate for the Hessian itself.
    return jax.jvp(jax.grad(f), (flat,), (v,))[1]


def hvp(loss: Callable[..., jax.Array], params: Any, vector: Any, *args) -> Any:
    """The Hessian-vector product H·v, with H = ∇²C at ``params`` and C = ``loss(params, *args)``.

    Computed as the directional derivative of the gradient, d/dt ∇C(params + t·v) at t = 0,
    by ``jax.jvp`` of ``jax.grad``: exact, not a finite difference.

    Args:
      loss: the cost, ``loss(params, *args) -> scalar``.
      params: the point at which the Hessian is taken.
      vector: v, a pytree with the structure of ``params``.
      *args: the rest of ``loss``'s arguments (the batch), held fixed.

    Returns:
      H·v, with the structure of ``params``.
    """
    return jax.jvp(lambda p: jax.grad(loss)(p, *args), (params,), (vector,))[1]


def lanczos(
    matvec: Callable[[jax.Array], jax.Array], start: jax.Array, num_iters: int, *,
    keep_basis: bool = False,
) -> tuple[jax.Array, ...]:  # fmt: skip
    """Lanczos tridiagonalisation of a symmetric operator A, with full reorthogonalisation.

    Builds an orthonormal basis q_0..q_{m-1} of the Krylov space span{s, As, A²s, ...} and
    T = QᵀAQ, tridiagonal with diagonal α_j = q_jᵀAq_j and off-diagonal
    β_j = ‖Aq_j − α_j q_j − β_{j-1} q_{j-1}‖. In exact arithmetic the three-term
    recurrence keeps Q orthonormal; in float32 it does not (ghost copies of converged
    eigenvalues appear), so every new vector is projected off the whole stored basis,
    twice: one classical Gram-Schmidt pass leaves errors of order eps·cond, a second
    brings them to eps ("twice is enough"), and each pass is two matmuls. Cost: m
    matvecs plus O(m²·dim) flops, and an [m, dim] basis in memory (per network under
    ``vmap``).

    Breakdown (β_j ≈ 0: the Krylov space is invariant, e.g. A has fewer distinct
    eigenvalues than m, or m > dim) sets β_j = 0 and restarts from a coordinate vector
    projected off the basis, so T stays block diagonal with QᵀAQ = T. Once the basis
    spans the whole space no vector is left; the remaining diagonal entries repeat
    α_0 (a Rayleigh quotient, so inside [λ_min, λ_max]) with β = 0, which leaves the
    extreme Ritz values exact. Those padding entries do show up as interior Ritz values.

    Args:
      matvec: v ↦ Av for a symmetric A on vectors of shape ``[dim]``.
      start: a nonzero starting vector, shape ``[dim]``; it is normalised here.
      num_iters: m, the number of matvecs and the size of T (a Python int).
      keep_basis: also return the basis Q, ``[m, dim]`` (rows q_j; rows past the point
        where the basis spans the space are zero).

    Returns:
      ``(alphas, betas)``: the diagonal ``[m]`` and off-diagonal ``[m - 1]`` of T; with
      ``keep_basis``, ``(alphas, betas, basis)``.
    """
    dim = start.shape[0]
    dtype = start.dtype
    # Below this, β (relative to ‖Aq‖) is rounding noise rather than a new direction.
    tol = 100 * jnp.finfo(dtype).eps

    def orthogonalise(basis, w):
        for _ in range(2):
            w = w - jnp.matmul(jnp.matmul(basis, w, precision=_HIGHEST), basis, precision=_HIGHEST)
        return w

    def step(carry, j):
        basis, q, q_prev, beta_prev, alive, alpha_0 = carry
        basis = basis.at[j].set(q)
        aq = matvec(q)
        alpha = jnp.vdot(q, aq, precision=_HIGHEST)
        alpha = jnp.where(alive, alpha, alpha_0)
        alpha_0 = jnp.where(j == 0, alpha, alpha_0)
        w = orthogonalise(basis, aq - alpha * q - beta_prev * q_prev)
        beta = jnp.linalg.norm(w)
        broke = beta <= tol * jnp.linalg.norm(aq)
        # On breakdown, restart from the coordinate vector e_k the basis covers least:
        # ‖Qᵀe_k‖² ≤ rank/dim, so e_k keeps a component ≥ 1/√dim off the basis whenever
        # the basis does not yet span R^dim, and none once it does.
        coverage = jnp.sum(jnp.square(basis), axis=0)
        restart = orthogonalise(basis, jax.nn.one_hot(jnp.argmin(coverage), dim, dtype=dtype))
        restart_norm = jnp.linalg.norm(restart)
        fresh = restart_norm > tol
        alive = ~broke | fresh
        beta = jnp.where(broke, 0.0, beta)
        # Divide only by norms known to be nonzero, so no NaN is made even where discarded.
        q_next = jnp.where(
            broke, restart / jnp.where(fresh, restart_norm, 1), w / jnp.where(broke, 1, beta)
        )
        q_next = jnp.where(alive, q_next, 0.0)
        return (basis, q_next, q, beta, alive, alpha_0), (alpha, beta)

    q0 = start / jnp.linalg.norm(start)
    zero = jnp.zeros((), dtype)
    init = (jnp.zeros((num_iters, dim), dtype), q0, jnp.zeros_like(q0), zero, jnp.array(True), zero)
    (basis, *_), (alphas, betas) = jax.lax.scan(step, init, jnp.arange(num_iters))
    return (alphas, betas[:-1], basis) if keep_basis else (alphas, betas[:-1])


def ritz_values(alphas: jax.Array, betas: jax.Array) -> jax.Array:
    """The eigenvalues of the tridiagonal T(α, β), ascending: the Ritz values of A.

    By bisection on Sturm sequences (``jax.scipy.linalg.eigh_tridiagonal``), in plain
    XLA ops, not by LAPACK's ``syevd``. On the CPU, jaxlib runs a batched ``syevd`` (any
    ``eigh`` under ``vmap``) by splitting the batch over XLA's own thread pool and
    waiting for the pieces; two such kernels running side by side, as they do in a
    chunked map whose last, shorter chunk runs beside the others, each hold a worker
    while they wait, and on a 2-core machine no worker is left to do the pieces: the
    program waits for ever (see ``tests/test_no_hang.py``). Bisection needs no library
    call and is as accurate (float32 rounding of the extreme eigenvalues).
    """
    ritz = jax.scipy.linalg.eigh_tridiagonal(alphas, betas, eigvals_only=True)
    return jnp.sort(ritz)


def extreme_eigenvalues(
    loss: Callable[..., jax.Array], params: Any, *args, key: jax.Array, num_iters: int = 20
) -> tuple[jax.Array, jax.Array]:
    """(λ_min, λ_max) of the Hessian ∇²C at ``params``, by Lanczos on Hessian-vector products.

    Why Lanczos rather than power iteration: power iteration converges to the eigenvalue
    of largest |λ|, and near initialisation the Hessian can have a negative eigenvalue
    larger in magnitude than λ_max, so it would report that instead of the sharpness that
    governs stability (gradient descent on a quadratic is stable iff η < 2/λ_max). The
    Krylov space Lanczos builds holds the best polynomial approximations at both ends of
    the spectrum, so both extremes converge first, together, from the same m matvecs.
    The Ritz values lie inside [λ_min, λ_max] and approach the ends from within.

    Args:
      loss: the cost, ``loss(params, *args) -> scalar``.
      params: where the Hessian is taken.
      *args: the rest of ``loss``'s arguments (the batch).
      key: draws the random unit start vector.
      num_iters: Lanczos steps, each one Hessian-vector product.

    Returns:
      ``(λ_min, λ_max)``, the extreme Ritz values, as scalars.
    """
    ritz = ritz_values(*hessian_tridiagonal(loss, params, *args, key=key, num_iters=num_iters))
    return ritz[0], ritz[-1]


def hessian_tridiagonal(
    loss: Callable[..., jax.Array], params: Any, *args, key: jax.Array, num_iters: int = 20
) -> tuple[jax.Array, jax.Array]:
    """Lanczos on the Hessian ∇²C at ``params`` from a random unit start drawn from
    ``key``: the diagonal ``[m]`` and off-diagonal ``[m - 1]`` of T = QᵀHQ, whose
    eigenvalues (:func:`ritz_values` in a program, :func:`extreme_ritz_values` on the
    host) approximate H's from both ends."""
    flat, f = _flat_loss(loss, params, args)
    start = jax.random.normal(key, flat.shape, flat.dtype)
    return lanczos(lambda v: _flat_hvp(f, flat, v), start, num_iters)


def extreme_ritz_values(alphas, betas) -> tuple[np.ndarray, np.ndarray]:
    """(λ_min, λ_max) of each tridiagonal T(α, β) of a batch ``[..., m]``, on the host in
    float64; NaN where T holds a NaN (a quantity not measured)."""
    alphas, betas = np.asarray(alphas, np.float64), np.asarray(betas, np.float64)
    low, high = np.full(alphas.shape[:-1], np.nan), np.full(alphas.shape[:-1], np.nan)
    for index in np.ndindex(alphas.shape[:-1]):
        if np.all(np.isfinite(alphas[index])) and np.all(np.isfinite(betas[index])):
            found = scipy.linalg.eigvalsh_tridiagonal(alphas[index], betas[index])
            low[index], high[index] = found[0], found[-1]
    return low, high


def dense_hessian(
    loss: Callable[..., jax.Array], params: Any, *args, chunk: int | None = None
) -> jax.Array:
    """The full Hessian ∇²C, shape ``[P, P]``, in ``ravel_pytree`` order (small nets only).

    Args:
      loss, params, args: the cost ``loss(params, *args)`` and the point.
      chunk: columns computed at once, each a Hessian-vector product with a unit
        vector; None computes all P at once (``jax.hessian``), which holds P copies of
        the network's activations on every example (12 GiB for 3,210 parameters on
        10,000 examples in float64).
    """
    flat, f = _flat_loss(loss, params, args)
    if chunk is None:
        return jax.hessian(f)(flat)
    column = lambda i: _flat_hvp(f, flat, jax.nn.one_hot(i, flat.size, dtype=flat.dtype))
    return memory.map_in_chunks(column, jnp.arange(flat.size), chunk).T


def dense_eigenvalues(hessian: jax.typing.ArrayLike) -> np.ndarray:
    """Every eigenvalue of a dense symmetric Hessian, ascending (LAPACK's ``eigvalsh`` in
    float64, on the host: not jittable)."""
    return np.linalg.eigvalsh(np.asarray(hessian, np.float64))


def negative_eigenvalue_count(hessian: jax.typing.ArrayLike, *, rtol: float = 1e-4) -> int:
    """The number of eigenvalues λ < −rtol · max|λ|: directions of negative curvature that
    stand clear of rounding noise. On the host, not jittable."""
    eigenvalues = dense_eigenvalues(hessian)
    return int(np.sum(eigenvalues < -rtol * np.max(np.abs(eigenvalues))))


def first_order_prediction(grad_norm_sq: jax.typing.ArrayLike, learning_rate: jax.typing.ArrayLike):
    """ΔC ≈ −η‖∇C‖² for the step Δv = −η∇C: the Taylor series to first order."""
    return -learning_rate * grad_norm_sq


def second_order_prediction(
    grad_norm_sq: jax.typing.ArrayLike,
    g_h_g: jax.typing.ArrayLike,
    learning_rate: jax.typing.ArrayLike,
):
    """ΔC ≈ −η‖g‖² + ½η² gᵀHg for the step Δv = −ηg; exact when C is quadratic."""
    return -learning_rate * grad_norm_sq + 0.5 * learning_rate**2 * g_h_g


def step_predictions(
    loss: Callable[..., jax.Array], params: Any, *args, learning_rate: jax.typing.ArrayLike
) -> dict[str, jax.Array]:
    """One plain gradient-descent step v ↦ v − ηg, g = ∇C(v), measured and predicted.

    Args:
      loss: the cost, ``loss(params, *args) -> scalar``.
      params: v, the point the step starts from.
      *args: the rest of ``loss``'s arguments (the batch).
      learning_rate: η; may be a traced scalar, so a sweep over η compiles once.

    Returns:
      ``{"cost": C(v), "measured": C(v − ηg) − C(v), "first_order": −η‖g‖²,
      "second_order": −η‖g‖² + ½η² gᵀHg, "grad_norm_sq": ‖g‖², "g_h_g": gᵀHg}``.
      In float32, ``measured`` is a difference of two costs and carries an absolute
      error of order eps·C, which swamps small steps.
    """
    flat, f = _flat_loss(loss, params, args)
    cost, g = jax.value_and_grad(f)(flat)
    grad_norm_sq = jnp.vdot(g, g, precision=_HIGHEST)
    g_h_g = jnp.vdot(g, _flat_hvp(f, flat, g), precision=_HIGHEST)
    return {
        "cost": cost,
        "measured": f(flat - learning_rate * g) - cost,
        "first_order": first_order_prediction(grad_norm_sq, learning_rate),
        "second_order": second_order_prediction(grad_norm_sq, g_h_g, learning_rate),
        "grad_norm_sq": grad_norm_sq,
        "g_h_g": g_h_g,
    }


def spectrum(
    loss: Callable[..., jax.Array],
    params: Any,
    *args,
    key: jax.Array,
    num_iters: int = 40,
    num_probes: int = 2,
) -> dict[str, jax.Array]:
    """The Hessian's spectrum at ``params``, by Lanczos from ``num_probes`` random starts.

    One Lanczos run of m = ``num_iters`` Hessian-vector products from a random unit
    vector v gives T = QᵀHQ; its eigenvalues θ_k (the Ritz values) with weights
    τ_k = (first component of T's k-th eigenvector)² are a quadrature of the spectral
    density φ(t) = (1/P) Σ_i δ(t − λ_i): vᵀ f(H) v ≈ Σ_k τ_k f(θ_k), and for v uniform
    on the sphere E[vᵀ f(H) v] = (1/P) Σ_i f(λ_i). Averaged over probes this is
    stochastic Lanczos quadrature (Ghorbani, Krishnan and Xiao 2019). The same Ritz
    values hold the extreme eigenvalues, the largest and smallest converging first.

    This part is jittable and returns T; :func:`quadrature` turns T into the nodes and
    weights on the host, after the compiled program (why: :func:`ritz_values`).

    Args:
      loss, params, *args: the cost and where its Hessian is taken.
      key: draws the probes.
      num_iters: m, Lanczos steps (and Hessian-vector products) per probe.
      num_probes: independent random starts.

    Returns:
      ``{"alphas": [probes, m], "betas": [probes, m - 1]}``: each probe's T.
    """
    flat, f = _flat_loss(loss, params, args)
    return spectrum_of(lambda v: _flat_hvp(f, flat, v), flat.shape[0], flat.dtype, key=key,
                       num_iters=num_iters, num_probes=num_probes)  # fmt: skip


def spectrum_of(matvec, dim: int, dtype, *, key, num_iters: int, num_probes: int):
    """:func:`spectrum` for any symmetric operator ``matvec`` on vectors of size ``dim``."""

    def one(probe_key):
        start = jax.random.normal(probe_key, (dim,), dtype)
        return lanczos(matvec, start, num_iters)

    alphas, betas = jax.lax.map(one, jax.random.split(key, num_probes))
    return {"alphas": alphas, "betas": betas}


def quadrature(alphas, betas) -> tuple[np.ndarray, np.ndarray]:
    """The nodes θ_k (ascending) and weights τ_k of :func:`spectrum`'s quadrature, on the
    host in float64, for any leading batch axes.

    Args:
      alphas: T's diagonals, ``[..., m]``.
      betas: T's off-diagonals, ``[..., m - 1]``.

    Returns:
      ``(nodes, weights)``, both ``[..., m]``; each set of weights sums to 1.
    """
    alphas, betas = np.asarray(alphas, np.float64), np.asarray(betas, np.float64)
    nodes, weights = np.empty_like(alphas), np.empty_like(alphas)
    for index in np.ndindex(alphas.shape[:-1]):
        found, vectors = scipy.linalg.eigh_tridiagonal(alphas[index], betas[index])
        nodes[index], weights[index] = found, np.square(vectors[0])
    return nodes, weights


def density(nodes, weights, grid, *, sigma: float) -> np.ndarray:
    """The spectral density on ``grid``: each probe's quadrature smoothed by Gaussians of
    width ``sigma``, averaged over probes. Integrates to about 1 over a grid that covers
    the spectrum with a margin of a few ``sigma``."""
    nodes, weights, grid = (np.asarray(a, np.float64) for a in (nodes, weights, grid))
    kernel = np.exp(-0.5 * ((grid[None, None] - nodes[..., None]) / sigma) ** 2)
    kernel /= sigma * np.sqrt(2 * np.pi)
    return np.mean(np.sum(weights[..., None] * kernel, axis=-2), axis=0)


def negative_mass(nodes, weights, *, rtol: float = 0.0) -> float:
    """The fraction of the spectrum below ``−rtol · max|λ|`` (the quadrature's weight on
    those Ritz values, averaged over probes): the share of directions that curve down."""
    nodes, weights = np.asarray(nodes, np.float64), np.asarray(weights, np.float64)
    below = nodes < -rtol * np.max(np.abs(nodes))
    return float(np.mean(np.sum(np.where(below, weights, 0.0), axis=-1)))
