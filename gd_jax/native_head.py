"""The native head: the steps of one block of ``fast_gd.run``'s delayed path, for N
sigmoid networks with the quadratic cost, as one compiled C++ call inside XLA.

A sweep of 1,024 networks of 784-16-16-10 at batch 10 spent most of a step outside
its first layer's two large products: each later layer is 1,024 products of 10×16 by
16×16, and XLA:CPU runs each such op, and each elementwise one over the 1,024
networks, at a few GFLOP/s (``benchmarks/README.md``). ``native_head.cc`` takes the
block's ``x_s W_0`` and Gram matrix and does the rest of every step: the first layer's
pre-activations with the correction for the updates held back, the later layers'
forward pass, backward pass and update, and the ``−η δ_s`` the first layer's update is
made of. Sixteen (AVX-512) or eight (AVX2) networks sit side by side in the lanes of a
vector, and each network's parameters stay in cache for the whole block. The first
layer's products stay XLA's.

It computes the same numbers as ``jax.grad`` of ``train.make_head_loss``, in another
order of the sums, so they agree up to float rounding. Since it is a second
definition of the model and its cost, :func:`usable` checks it against ``jax.grad``
of the model's own cost, for each network shape, before a run may take it: a change
to ``model.sigmoid`` or ``costs.mse`` that the C++ code does not follow turns the
native head off with a warning, rather than training a different model.

The library is built on first use with the machine's C++ compiler (``$CXX``, else
``c++``, ``g++`` or ``clang++``), for the machine's own instruction set, and kept in
``$GD_JAX_CACHE`` (default ``~/.cache/gd_jax``) under a name that changes with the
source, the compiler, jaxlib and the CPU. Without a compiler, or where
``GD_JAX_NATIVE_HEAD=0``, the fast paths keep XLA's head: the results are the same
up to float rounding, only slower.
"""

import ctypes
import functools
import hashlib
import itertools
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from absl import logging

from gd_jax import train
from gd_jax.config import ModelConfig

SOURCE = Path(__file__).with_name("native_head.cc")
TARGET = "gd_jax_native_head_block"
# The only configuration the C++ code computes: sigmoid units, the quadratic cost
# (sigmoid outputs), and at most 15 layers after the first.
ACTIVATION, COST, MAX_LAYERS = "sigmoid", "mse", 15
# Agreement with jax.grad that the check before use asks for: relative to the largest
# change of each parameter over the check's steps (of the cost, to the largest cost),
# where sums in another order leave about 3e-6, plus float32's rounding of the stored
# weights (2⁻²³ ≈ 1.2e-7 of the largest; a few such roundings).
CHECK_TOLERANCE = 1e-4
STORE_ROUNDING = 1e-6
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w")


def disabled() -> bool:
    """Whether ``GD_JAX_NATIVE_HEAD=0`` turns the native head off."""
    return os.environ.get("GD_JAX_NATIVE_HEAD", "1").strip() in ("0", "false", "no", "off")


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def _cpu_signature() -> str:
    """What ``-march=native`` depends on: the CPU's feature flags where Linux lists
    them, else the machine's name. A library built for one CPU is never loaded on
    another (a cache shared by a cluster's nodes)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return f"{platform.machine()} {platform.processor()}"


def _cache_dir() -> Path:
    root = os.environ.get("GD_JAX_CACHE") or Path.home() / ".cache" / "gd_jax"
    return Path(root)


@functools.cache
def _library() -> tuple[ctypes.CDLL | None, str]:
    """``(library, "")``, built and loaded once per process, or ``(None, why not)``."""
    if disabled():
        return None, "GD_JAX_NATIVE_HEAD=0"
    if jax.default_backend() != "cpu":
        return None, f"it runs on the CPU only (the backend is {jax.default_backend()})"
    compiler = _compiler()
    if compiler is None:
        return None, "no C++ compiler was found (set $CXX, or install g++)"
    try:
        path = _built(compiler)
    except (OSError, subprocess.SubprocessError, _BuildError) as e:
        return None, str(e)
    try:
        library = ctypes.cdll.LoadLibrary(str(path))
        if not _REGISTERED:  # XLA takes one handler per name for the life of the process
            handler = jax.ffi.pycapsule(library.GdJaxHeadBlock)
            jax.ffi.register_ffi_target(TARGET, handler, platform="cpu")
            _REGISTERED.append(path)
    except Exception as e:  # a library that does not load or register is not usable
        return None, f"{path} could not be loaded: {str(e).splitlines()[0]}"
    return library, ""


class _BuildError(Exception):
    pass


def _built(compiler: str) -> Path:
    """The library for this source, compiler, jaxlib and CPU, built if not cached."""
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, timeout=60
    ).stdout
    parts = [SOURCE.read_text(), version, " ".join(FLAGS), jax.__version__,
             jaxlib.__version__, _cpu_signature()]  # fmt: skip
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    path = _cache_dir() / f"native_head_{key}.so"
    if path.exists():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    # Built under a temporary name and renamed: processes building at once never load
    # a half-written file.
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=path.parent)
    os.close(fd)
    command = [compiler, *FLAGS, "-I", jax.ffi.include_dir(), str(SOURCE), "-o", tmp]
    try:
        try:
            built = subprocess.run(command, capture_output=True, text=True, timeout=300)
        except subprocess.TimeoutExpired:
            raise _BuildError(f"{compiler} took over 300 s to build {SOURCE.name}") from None
        if built.returncode != 0:
            lines = built.stderr.strip().splitlines() or ["(no message)"]
            first = next((line for line in lines if "error" in line), lines[0])
            raise _BuildError(f"{compiler} could not build {SOURCE.name}: {first}")
        # Readable by every user of a shared cache (mkstemp made it the owner's only).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o755 & ~umask)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


_REGISTERED: list[Path] = []  # the library whose handler XLA calls


def block(start, gram, labels, eta, b1, rest):
    """A block of K gradient-descent steps of N networks, their first layer's updates
    held back (``fast_gd.run``), networks last.

    Args:
      start: the first layer's pre-activations from the block's starting weights,
        ``x_s W_0`` without the bias, ``[K, B, H, N]``.
      gram: the block's Gram matrix ``x_s x_rᵀ``, ``[K·B, K·B]`` (unread when K = 1).
      labels: the batches' labels, ``[K, B]``.
      eta: each network's learning rate, ``[N]``.
      b1: the first layer's bias, ``[H, N]``.
      rest: the later layers ``[(W [I, J, N], b [J, N]), ...]``.

    Returns:
      ``(costs, deltas, b1, rest)``: each step's cost before its update ``[K, N]``;
      ``−η ∂C/∂z1`` of every step ``[K·B, H, N]``, of which the first layer's update
      over the block is ``Σ_s x_sᵀ (−η δ_s)``; the first bias and the later layers
      after the block, as given.
    """
    library, why = _library()
    if library is None:
        raise RuntimeError(f"the native head cannot be used: {why}")
    steps, size, h, n = start.shape
    flat = [leaf for layer in rest for leaf in layer]
    like = lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype)
    outputs = [
        jax.ShapeDtypeStruct((steps, n), jnp.float32),
        jax.ShapeDtypeStruct((steps * size, h, n), jnp.float32),
        like(b1),
        *map(like, flat),
    ]
    # Updated in place: b1 and every later layer.
    aliases = {4: 2, **{5 + k: 3 + k for k in range(len(flat))}}
    costs, deltas, b1, *flat = jax.ffi.ffi_call(TARGET, outputs, input_output_aliases=aliases)(
        start, gram, labels.astype(jnp.int32), eta, b1, *flat
    )
    return costs, deltas, b1, [(flat[k], flat[k + 1]) for k in range(0, len(flat), 2)]


def to_networks_last(params):
    """``[(W [N, I, J], b [N, J]), ...]`` to ``[(W [I, J, N], b [J, N]), ...]``."""
    return [(jnp.moveaxis(w, 0, -1), jnp.moveaxis(b, 0, -1)) for w, b in params]


def from_networks_last(params):
    """The inverse of :func:`to_networks_last`."""
    return [(jnp.moveaxis(w, -1, 0), jnp.moveaxis(b, -1, 0)) for w, b in params]


def _check(model_config: ModelConfig) -> str:
    """ "" if ``fast_gd.run`` with the native head agrees with it with XLA's
    (``jax.grad`` of ``train.make_head_loss``) on random networks of this shape (a whole
    group of SIMD lanes and a remainder), on mini-batches (two blocks of
    ``fast_gd.DELAY`` steps and a shorter one) and on one full batch; else what differs."""
    from gd_jax import fast_gd  # fast_gd takes this module's block

    sizes = model_config.sizes
    n, examples, batch_size = 19, 80, 2
    rng = np.random.default_rng(0)
    draw = lambda *shape: rng.normal(size=shape).astype(np.float32)
    params = [(draw(n, i, j), draw(n, j)) for i, j in itertools.pairwise(sizes)]
    x = draw(examples, sizes[0]) / np.sqrt(sizes[0])  # first-layer units unsaturated
    labels = rng.integers(0, sizes[-1], examples).astype(np.int32)
    eta = np.geomspace(0.01, 1, n).astype(np.float32)  # small steps: rounding stays small
    order = np.arange(examples, dtype=np.int32).reshape(-1, batch_size)
    head_loss = train.make_head_loss(model_config, fast_gd.matmul)

    def both(params, x, labels, eta, order):  # the data as arguments, not constants
        def run(native, full):
            batch = (lambda idx: (x, labels)) if full else (lambda idx: (x[idx], labels[idx]))
            return fast_gd.run(
                params, eta, batch, order[:1] if full else order, head_loss,
                full=full, native=native,
            )  # fmt: skip

        return [(run(False, full), run(True, full)) for full in (False, True)]

    try:
        with jax.ensure_compile_time_eval():  # concrete numbers, even under a trace
            results = jax.jit(both)(params, x, labels, eta, order)
    except Exception as e:  # any failure of the library means: not usable
        return f"the check failed to run: {str(e).splitlines()[0]}"
    names = [f"{kind}{k + 1}" for k in range(len(params)) for kind in ("W", "b")] + ["cost"]
    # Measured against each parameter's change over the steps, not its value (an error
    # in a small update would hide behind a large weight), plus the rounding of storing
    # weight + change in float32.
    before = [np.asarray(leaf) for leaf in jax.tree.leaves(params)] + [0.0]
    for (want, got), what in zip(results, ("mini-batches", "a full batch"), strict=True):
        pairs = zip(names, before, jax.tree.leaves(want), jax.tree.leaves(got), strict=True)
        for name, start, a, b in pairs:
            a, b = np.asarray(a), np.asarray(b)
            change = max(np.max(np.abs(a - start)), 1e-30)
            error = np.max(np.abs(a - b))
            if not error <= CHECK_TOLERANCE * change + STORE_ROUNDING * np.max(np.abs(a)):
                what_changed = "the cost" if name == "cost" else f"the change of {name}"
                return (
                    f"on {what}, {what_changed} differs from jax.grad's by "
                    f"{error / change:.1e} of its largest"
                )
    return ""


@functools.cache
def usable(model_config: ModelConfig) -> bool:
    """Whether the fast paths may take the native head for this network: its
    configuration is the one the C++ code computes, the library builds and loads on
    this machine, only one device is visible (the call has no rule to split it across
    devices), and it agrees with ``jax.grad`` of the model's cost (:func:`_check`).
    Logs why not, once per network shape."""
    if (model_config.activation, model_config.cost) != (ACTIVATION, COST):
        return False
    if not 2 <= len(model_config.sizes) <= MAX_LAYERS + 2:
        return False
    if jax.default_backend() != "cpu":
        logging.info("native head not used: it runs on the CPU only")
        return False
    if jax.device_count() != 1:
        logging.info("native head not used: %d devices are visible", jax.device_count())
        return False
    library, why = _library()
    if library is None:
        logging.warning("native head not used (XLA's head instead): %s", why)
        return False
    mismatch = _check(model_config)
    if mismatch:
        logging.warning(
            "native head not used (XLA's head instead) for %s: %s. native_head.cc no "
            "longer computes the model and cost of train.make_head_loss; change it to "
            "match, or set GD_JAX_NATIVE_HEAD=0.",
            "-".join(map(str, model_config.sizes)),
            mismatch,
        )
        return False
    logging.info("native head for %s (%s)", "-".join(map(str, model_config.sizes)), _REGISTERED[0])
    return True
