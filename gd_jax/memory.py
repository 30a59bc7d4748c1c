"""How much of a large computation fits in memory at once, and doing it in chunks.

The arrays that grow with a study are activations: N networks (or N points of a
landscape) × n examples × the hidden units. A computation over many networks is
therefore done ``chunk`` networks at a time, with ``chunk`` chosen so that their
activations stay under a budget; beyond one chunk, peak memory does not grow with N.
"""

import itertools
import math
import os

import jax

from gd_jax.errors import GdJaxError

# The default budget, in GiB, for the activations of one chunk (per device).
MEMORY_BUDGET_GIB = 2.0

# Copies of one network's parameters and activations a computation holds at once: the
# forward pass, the backward pass and, for Hessian-vector products, their tangents.
# Calibrated on XLA's own plan of each computation's scratch memory
# (``compiled.memory_analysis()``, tested in tests/test_device_ready.py): the
# evaluations, Lanczos' spectra, paths and surfaces plan at most 9.4 copies per network;
# the full-batch trace (a gradient, a Hessian-vector product and the step's predictions
# on the whole training set in one program) 13.5–15.3. A Lanczos run holds besides
# about KRYLOV_COPIES parameter vectors per step (its basis, reorthogonalised).
COPIES = 10
TRACE_COPIES = 16
KRYLOV_COPIES = 4
# Bytes of a float32, the type of every parameter and activation.
FLOAT_BYTES = 4


def network_bytes(sizes, examples: int, copies: int = COPIES, *, krylov: int = 0) -> int:
    """The memory one network of layer widths ``sizes`` takes while it works on
    ``examples`` examples at once, in bytes.

    With L layers of widths n_0 (the input) to n_L, the network has
    P = Σ_l (n_{l-1} + 1)·n_l parameters and U = Σ_{l≥1} n_l units, so its activations
    on E examples are E·U numbers. A computation holds ``copies`` copies of both (the
    parameters, their gradient, the optimiser's state, the forward and backward pass
    and their tangents), and a Lanczos run of K steps ``KRYLOV_COPIES``·K vectors of P
    besides, each number a float32:

        bytes = 4 · (copies · (E·U + P) + KRYLOV_COPIES · K · P)

    Args:
      sizes: the network's layer widths, input first.
      examples: examples it sees at once (a mini-batch, or a whole split scored).
      copies: :data:`COPIES`, or :data:`TRACE_COPIES` for the full-batch trace.
      krylov: K, the Lanczos steps of the computation (0 for none).
    """
    units = sum(sizes[1:])
    params = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    return FLOAT_BYTES * (copies * (examples * units + params) + KRYLOV_COPIES * krylov * params)


def chunk_for(
    sizes,
    examples: int,
    budget_gib: float = MEMORY_BUDGET_GIB,
    *,
    copies: int = COPIES,
    krylov: int = 0,
) -> int:
    """How many networks of layer widths ``sizes`` can be worked on ``examples``
    examples at once within ``budget_gib`` GiB (at least 1; see :func:`network_bytes`).

    Args:
      sizes: the network's layer widths, input first.
      examples: examples each network sees at once.
      budget_gib: the memory the chunk's activations may take.
      copies, krylov: as in :func:`network_bytes`.
    """
    need = network_bytes(sizes, examples, copies, krylov=krylov)
    return max(1, int(budget_gib * 2**30 // need))


def check_budget(value: float) -> float:
    """``--memory_budget`` checked: a finite positive number of GiB, returned as a float.

    Raises:
      GdJaxError: zero, a negative number, NaN or infinity (no chunk can be sized
        from them).
    """
    try:
        budget = float(value)
    except (TypeError, ValueError):
        budget = math.nan
    if not (math.isfinite(budget) and budget > 0):
        raise GdJaxError(
            f"--memory_budget={value} must be a finite positive number of GiB: it is the "
            "memory (per device) the networks worked on at once may take, and the chunks "
            f"of networks are sized to fit it. Give e.g. --memory_budget={MEMORY_BUDGET_GIB:g} "
            "(the default), or more where the device has the memory.",
            field="memory_budget",
        )
    return budget


def available_gib() -> tuple[float, str]:
    """The memory free for a computation now, in GiB, and where the number comes from.

    An accelerator that reports its memory (``memory_stats``: a GPU) gives its limit
    less what is in use; otherwise (a CPU) the host's ``MemAvailable`` in
    ``/proc/meminfo``, or where there is none the free pages ``os.sysconf`` counts.
    """
    device = jax.local_devices()[0]
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
        free = stats["bytes_limit"] - stats.get("bytes_in_use", 0)
        return free / 2**30, f"the free memory of {device.device_kind}"
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    kib = int(line.split()[1])
                    return kib / 2**20, "the machine's available memory (MemAvailable)"
    except (OSError, ValueError, IndexError):
        pass
    pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return pages / 2**30, "the machine's free memory"


def check_fits(
    sizes, examples: int, budget_gib: float, *, field: str, value: str, budget_from: str
) -> None:
    """Refuses a network that alone needs more than ``budget_gib`` GiB
    (:func:`network_bytes`): chunks of networks cannot be smaller than one network.

    Args:
      sizes: the network's layer widths, input first.
      examples: examples it sees at once.
      budget_gib: the memory it may take.
      field, value: the flag that made it so wide and its value as a command line
        spells it (``"layers"``, ``"100000,100000"``).
      budget_from: where the budget comes from, for the message (``--memory_budget``).

    Raises:
      GdJaxError: the network does not fit.
    """
    needed = network_bytes(sizes, examples) / 2**30
    if needed <= budget_gib:
        return
    params = sum((a + 1) * b for a, b in itertools.pairwise(sizes))
    larger = (
        ", or a larger --memory_budget if the device has it"
        if "--memory_budget" in budget_from
        else ""
    )
    raise GdJaxError(
        f"--{field}={value} makes a {'-'.join(map(str, sizes))} network of {params:,} parameters; "
        f"working on {examples:,} examples at once it needs about {_gib(needed)} GiB "
        f"({COPIES} float32 copies of its parameters and activations), more than the "
        f"{_gib(budget_gib)} GiB of {budget_from}, so it would run out of memory. Use "
        f"narrower hidden layers or fewer training examples (--train_size){larger}.",
        field=field,
    )


def _gib(value: float) -> str:
    """GiB for a message: 1.5, 1,024.0, or 0.0161 below one GiB (never 0.0)."""
    return f"{value:,.1f}" if value >= 1 else f"{value:.3g}"


def chunks_of(count: int, chunk: int) -> int:
    """How many chunks :func:`map_in_chunks` cuts ``count`` entries into."""
    return 1 if count <= chunk else -(-count // chunk)


def map_in_chunks(fn, tree, chunk: int):
    """``jax.vmap(fn)(tree)`` over the leading axis of ``tree``, at most ``chunk``
    entries at a time (a ``lax.map`` over chunks), so only one chunk's intermediates
    are alive.

    The chunks are all of one size: N entries in k = ⌈N/chunk⌉ chunks of ⌈N/k⌉, the
    last one filled up with copies of the first entry, whose results are dropped. A
    shorter last chunk would be a second program beside the loop over the others, and
    XLA plans the scratch memory of both at once (measured: 15 networks in chunks of 8
    planned 213 MiB of scratch, 16 networks 139 MiB).
    """
    count = jax.tree.leaves(tree)[0].shape[0]
    if count <= chunk:
        return jax.vmap(fn)(tree)
    chunks = chunks_of(count, chunk)
    size = -(-count // chunks)
    extra = chunks * size - count
    if extra:
        tree = jax.tree.map(
            lambda a: jax.numpy.concatenate([a, jax.numpy.repeat(a[:1], extra, axis=0)]), tree
        )
    found = jax.lax.map(fn, tree, batch_size=size)
    return jax.tree.map(lambda a: a[:count], found) if extra else found
