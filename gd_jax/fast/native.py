"""The native head: the steps of one block of the delayed path (``gd_jax.fast.delayed``)
for N sigmoid networks with the quadratic cost, as one compiled C++ call inside XLA.

A sweep of a thousand networks of 784-16-16-10 at batch 10 spends most of a step
outside its first layer's two large products: each later layer is a thousand tiny
products, and XLA:CPU runs each such op, and each elementwise one over the networks,
far below the machine's peak (``benchmarks/``). ``native_head.cc`` takes the block's
``x_s W_0`` and Gram matrix and does the rest of every step: the first layer's
pre-activations with the correction for the updates held back, the later layers'
forward pass, backward pass and update, and the ``−η δ_s`` the first layer's update is
made of. Sixteen (AVX-512) or eight (AVX2) networks sit side by side in the lanes of a
vector, and each network's parameters stay in cache for the whole block. The first
layer's products stay XLA's.

It is a second definition of the model and its cost, written by hand, so a run takes
it only after ``gd_jax.fast.check`` has compared it with the core's ``train.make_loss``
for the run's network (``gd_jax.fast.paths``).

The library is built on first use with the machine's C++ compiler (``$CXX``, else
``c++``, ``g++`` or ``clang++``), for the machine's own instruction set, checked by
loading it in a child process, and kept in ``$GD_JAX_CACHE`` (default
``~/.cache/gd_jax``) under a name that changes with the source, the compiler, jaxlib
and the CPU, beside the SHA-256 of its bytes. A cached file whose bytes no longer match
(cut short, overwritten) is built again, never loaded; so is one that fails to load.
"""

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import jaxlib
from absl import logging

from gd_jax.config import ModelConfig

SOURCE = Path(__file__).with_name("native_head.cc")
TARGET = "gd_jax_native_head_block"
SYMBOL = "GdJaxHeadBlock"
# The only configuration the C++ code computes: sigmoid units, the quadratic cost
# (sigmoid outputs), and at most 15 layers after the first.
ACTIVATION, COST, MAX_LAYERS = "sigmoid", "mse", 15
FLAGS = ("-O3", "-march=native", "-std=c++17", "-shared", "-fPIC", "-w")
SWITCH = "GD_JAX_NATIVE_HEAD"
# Seconds a build may take; a temporary file older than twice this is a dead build's.
BUILD_SECONDS = 300


def disabled() -> bool:
    """Whether ``GD_JAX_NATIVE_HEAD`` turns the native head off: 0, false, no or off in
    any case (or any number equal to 0)."""
    value = os.environ.get(SWITCH, "").strip().lower()
    if value in ("false", "no", "off"):
        return True
    try:
        return float(value) == 0
    except ValueError:
        return False


def applies(model_config: ModelConfig) -> bool:
    """Whether the C++ code computes this kind of network at all."""
    same = (model_config.activation, model_config.cost) == (ACTIVATION, COST)
    return same and 2 <= len(model_config.sizes) <= MAX_LAYERS + 2


def unavailable(model_config: ModelConfig) -> str:
    """Why the native head cannot step this network on this machine, or "" if it can
    (its agreement with the core is ``gd_jax.fast.check``'s to judge)."""
    if not applies(model_config):
        return (
            f"it computes networks of {ACTIVATION} units with the {COST} cost and at most "
            f"{MAX_LAYERS} layers after the first, not this {model_config.activation} "
            f"network with the {model_config.cost} cost"
        )
    if jax.default_backend() != "cpu":
        return f"it runs on the CPU only (the backend is {jax.default_backend()})"
    if jax.device_count() != 1:
        return f"{jax.device_count()} devices are visible, and the call has no rule to split it"
    return _library()[1]


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


class _BuildError(Exception):
    pass


def _cache_dir() -> Path:
    root = os.environ.get("GD_JAX_CACHE")
    if root:
        return Path(root)
    try:
        return Path.home() / ".cache" / "gd_jax"
    except (RuntimeError, KeyError):  # no $HOME and no entry for this user
        raise _BuildError(
            "there is no folder to keep the built library in (no home directory); set "
            "GD_JAX_CACHE to one"
        ) from None


@functools.cache
def _library() -> tuple[ctypes.CDLL | None, str]:
    """``(library, "")``, built and loaded once per process, or ``(None, why not)``."""
    if disabled():
        return None, f"{SWITCH}={os.environ[SWITCH]} turns it off"
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
            handler = jax.ffi.pycapsule(getattr(library, SYMBOL))
            jax.ffi.register_ffi_target(TARGET, handler, platform="cpu")
            _REGISTERED.append(path)
    except Exception as e:  # a library that does not load or register is not usable
        _forget(path)  # built again next time, not loaded again
        return None, f"{path} could not be loaded: {str(e).splitlines()[0]}"
    return library, ""


_REGISTERED: list[Path] = []  # the library whose handler XLA calls


def _built(compiler: str) -> Path:
    """The library for this source, compiler, jaxlib and CPU: the cached one if its
    bytes are those it was built with, else built (and cached) now."""
    version = subprocess.run(
        [compiler, "--version"], capture_output=True, text=True, timeout=60
    ).stdout
    parts = [SOURCE.read_text(), version, " ".join(FLAGS), jax.__version__,
             jaxlib.__version__, _cpu_signature()]  # fmt: skip
    key = hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
    folder = _cache_dir()
    path = folder / f"native_head_{key}.so"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise _BuildError(f"the cache folder {folder} cannot be made ({e.strerror})") from None
    _clean_dead_builds(folder)
    if path.exists():
        if _intact(path):
            return path
        logging.warning("%s does not hold the bytes it was built with; building it again.", path)
        _forget(path)
    _build(compiler, path)
    return path


def _digest_path(path: Path) -> Path:
    return path.with_suffix(".sha256")


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _intact(path: Path) -> bool:
    try:
        return _digest_path(path).read_text().strip() == _sha256(path)
    except OSError:
        return False


def _forget(path: Path) -> None:
    for stale in (path, _digest_path(path)):
        with contextlib.suppress(OSError):
            stale.unlink()


def _build(compiler: str, path: Path) -> None:
    """Builds the library into ``path``: compiled under a temporary name, loaded once in
    a child process (a broken file crashes the child, not this process), its digest
    written, then renamed, so no process ever loads a half-written file."""
    tmp = path.with_name(f".{path.stem}.{socket.gethostname()}.{os.getpid()}.tmp.so")
    command = [compiler, *FLAGS, "-I", jax.ffi.include_dir(), str(SOURCE), "-o", str(tmp)]
    try:
        built = _run_alone(command, timeout=BUILD_SECONDS)
        if built.returncode != 0:
            lines = built.stderr.strip().splitlines() or ["(no message)"]
            first = next((line for line in lines if "error" in line), lines[0])
            raise _BuildError(f"{compiler} could not build {SOURCE.name}: {first}")
        probe = [sys.executable, "-c", "import ctypes, sys; getattr(ctypes.CDLL(sys.argv[1]), "
                 f"{SYMBOL!r})", str(tmp)]  # fmt: skip
        loaded = _run_alone(probe, timeout=60)
        if loaded.returncode != 0:
            why = (loaded.stderr.strip().splitlines() or [f"exit status {loaded.returncode}"])[-1]
            raise _BuildError(f"{compiler} built a library that does not load ({why})")
        # Readable by every user of a shared cache.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o755 & ~umask)
        digest = _digest_path(path)
        digest_tmp = tmp.with_suffix(".sha256")
        digest_tmp.write_text(_sha256(tmp) + "\n")
        os.replace(digest_tmp, digest)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, tmp.with_suffix(".sha256")):
            if leftover.exists():
                leftover.unlink()


def _run_alone(command: list[str], *, timeout: float) -> subprocess.CompletedProcess:
    """Runs ``command`` in a session of its own and returns what it did; if this process
    is interrupted (or the command runs past ``timeout``) the whole session is killed,
    so no compiler stage is left running as an orphan."""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    ) as process:  # fmt: skip
        try:
            out, err = process.communicate(timeout=timeout)
        except BaseException as e:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.communicate()  # reaps it and closes its pipes
            if isinstance(e, subprocess.TimeoutExpired):
                raise _BuildError(f"{command[0]} took over {timeout:g} s") from None
            raise
    return subprocess.CompletedProcess(command, process.returncode, out, err)


def _clean_dead_builds(folder: Path) -> None:
    """Removes what a killed build left: temporary files of a process of this host that
    is gone, or of any host and older than twice the longest build."""
    host = socket.gethostname()
    for tmp in folder.glob(".native_head_*.tmp.*"):
        parts = tmp.name.split(".")  # "", stem, host..., pid, "tmp", suffix
        try:
            pid = int(parts[-3])
            dead = ".".join(parts[2:-3]) == host and not _alive(pid)
            old = time.time() - tmp.stat().st_mtime > 2 * BUILD_SECONDS
            if dead or old:
                tmp.unlink()
        except (ValueError, IndexError, OSError):
            continue


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def block(start, gram, labels, eta, b1, rest):
    """A block of K gradient-descent steps of N networks, their first layer's updates
    held back (``gd_jax.fast.delayed``), networks last.

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
