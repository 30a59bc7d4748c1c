"""Which path trains a run: the core's plain scan, or a fast substitute checked against it.

A run names its path with two flags (``TrainConfig.epoch_path`` and ``head``); ``auto``
is resolved here, once, when the run starts, into a :class:`Path` that the run logs in
one line, records in ``config.json`` and ``summary.json`` and keys its stages on.

* ``plain``: ``train.make_epoch``, a ``lax.scan`` of ``train.make_step`` (``vmap``-ed
  over a sweep's networks): the code the core reads as, for every optimiser.
* ``delayed``: plain gradient descent with the first layer's updates held back and
  applied once per block of steps (``gd_jax.fast.delayed``); a sweep's networks side by
  side in one matrix. Mini-batches shared by every network, or full batches.
* ``column``: one full-batch step of a single network with its first layer in the
  column layout (``gd_jax.fast.column``).

A sweep on the delayed path steps its later layers by XLA's head (``jax.grad``) or by
the native head (``gd_jax.fast.native``, C++). A fast path computes with the pieces of
``gd_jax.fast.pieces`` (the vectorised sigmoid), and so do the run's scores; ``plain``
keeps to the core's everywhere.

``auto`` takes a fast path where it was measured faster (plain gradient descent on a
CPU), and only after ``gd_jax.fast.check`` has found it taking the core's steps for the
run's network: an edit to the core that a fast path does not follow sends the run to
the plain path, with the reason in the log. A path asked for by name that cannot be
taken, or that no longer agrees with the core, is refused with a message.
"""

from typing import NamedTuple

import jax
from absl import logging

from gd_jax import train
from gd_jax.config import AUTO, ModelConfig, TrainConfig
from gd_jax.errors import GdJaxError
from gd_jax.fast import check, column, delayed, native, pieces

PLAIN, DELAYED, COLUMN = "plain", "delayed", "column"
XLA, NATIVE = "xla", "native"
# The backends the fast paths were measured faster on (benchmarks/); elsewhere ``auto``
# keeps the plain path.
TUNED_BACKENDS = ("cpu",)
NAMES = {
    PLAIN: "the plain scan of train.make_step",
    DELAYED: "delayed first-layer updates",
    COLUMN: "column-layout full batch",
}


class Path(NamedTuple):
    """The path a run trains on, and why.

    Attributes:
      epoch: ``plain``, ``delayed`` or ``column``.
      head: ``xla`` or ``native``: what steps the layers after the first on the
        delayed path of a sweep (``xla`` everywhere else).
      why: how it was chosen, in words.
    """

    epoch: str
    head: str
    why: str

    @property
    def fast(self) -> bool:
        return self.epoch != PLAIN

    @property
    def pieces(self) -> str:
        """What the run's other computations (scores, traces) are made of: ``fast``
        (``gd_jax.fast.pieces``) or ``core``."""
        return "fast" if self.fast else "core"

    def record(self) -> dict:
        """The path as ``config.json``, ``summary.json`` and the tables record it."""
        return {"epoch_path": self.epoch, "head": self.head}

    def describe(self) -> str:
        head = " with the native head" if self.head == NATIVE else ""
        return f"{NAMES[self.epoch]}{head} ({self.why})"


def choose(
    config: TrainConfig, model_config: ModelConfig, *, sweep: bool, shared_order: bool = True
) -> Path:
    """Resolves ``config.epoch_path`` and ``config.head`` for a run of ``model_config``.

    Args:
      config: the run; its ``optimizer``, ``batch_size``, ``epoch_path`` and ``head``.
      model_config: the network (every network of a sweep).
      sweep: many networks at once (``gd_jax.sweep``), or one run.
      shared_order: a sweep's networks all see the same mini-batches.

    Raises:
      GdJaxError: a path or head asked for by name cannot be taken, with the reason.
    """
    full = config.batch_size == 0
    fast = COLUMN if full and not sweep else DELAYED
    asked = config.epoch_path
    if asked == PLAIN:
        epoch, why = PLAIN, "--epoch_path=plain"
    else:
        blocked = _blocked(config, sweep=sweep, shared_order=shared_order, auto=asked == AUTO)
        if asked != AUTO and blocked is None and asked != fast:
            blocked = (
                f"it is {'a single run' if not sweep else 'a sweep'} with "
                f"--batch_size={config.batch_size}, whose fast path is {fast}"
            )
        mismatch = "" if blocked else _disagrees(model_config, fast, full=full)
        if asked != AUTO and (blocked or mismatch):
            raise GdJaxError(_refusal("epoch_path", asked, blocked or mismatch, fast))
        if blocked:
            epoch, why = PLAIN, f"auto: {blocked}"
        elif mismatch:
            epoch = PLAIN
            why = f"auto: the {fast} path no longer takes the core's steps ({mismatch})"
            logging.warning("The %s path is not taken: %s. Training on the plain path.",
                            fast, mismatch)  # fmt: skip
        else:
            epoch = fast
            why = "asked for" if asked != AUTO else "auto: plain gradient descent on a CPU"
            why += "; checked against train.make_loss"
    head, head_why = _head(config, model_config, epoch, sweep=sweep, full=full)
    return Path(epoch, head, why + head_why)


def _blocked(config: TrainConfig, *, sweep: bool, shared_order: bool, auto: bool) -> str | None:
    """Why no fast path can train this run, or None."""
    if config.optimizer != "gd":
        return f"--optimizer={config.optimizer}; the fast paths do plain gradient descent only"
    if config.weight_decay:
        return (
            f"--weight_decay={config.weight_decay:g}; the fast paths do not add the penalty "
            "(the delayed path would have to decay the weights it holds back)"
        )
    if sweep and not shared_order and config.batch_size > 0:
        return "each network draws its own mini-batches; the delayed path needs them shared"
    if auto and jax.default_backend() not in TUNED_BACKENDS:
        return (
            f"the fast paths were measured faster on a CPU only, and the backend is "
            f"{jax.default_backend()}"
        )
    return None


def _disagrees(model_config: ModelConfig, fast: str, *, full: bool) -> str:
    if fast == COLUMN:
        return check.column_layout(model_config)
    return check.delayed_path(model_config, full=full, native=False)


def _refusal(flag: str, value: str, reason: str, fast: str) -> str:
    return (
        f"--{flag}={value} cannot train this run: {reason}. Use --{flag}=auto (which "
        f"takes the fastest path that can) or --epoch_path=plain (the core's own steps)"
        + (f"; this run's fast path is {fast}." if value != fast else ".")
    )


def _head(config, model_config, epoch: str, *, sweep: bool, full: bool) -> tuple[str, str]:
    """The head (and a word on why) of a run on path ``epoch``."""
    asked = config.head
    if epoch != DELAYED or not sweep:
        if asked == NATIVE:
            where = "a single run" if not sweep else f"the {epoch} path"
            raise GdJaxError(
                f"--head=native steps the sweeps of the delayed path only, and this is "
                f"{where}. Use --head=auto or --head=xla."
            )
        return XLA, ""
    if asked == XLA:
        return XLA, "; --head=xla"
    why = native.unavailable(model_config) or check.delayed_path(
        model_config, full=full, native=True
    )
    if not why:
        return NATIVE, "; the native head checked against it too"
    if asked == NATIVE:
        raise GdJaxError(
            f"--head=native cannot be used: {why}. Use --head=auto or --head=xla (XLA's "
            "head, jax.grad of the model's cost: the same numbers up to float rounding)."
        )
    if native.applies(model_config):  # a network it computes, on a machine it cannot
        logging.warning("The native head is not used (XLA's head instead): %s.", why)
    return XLA, f"; XLA's head, the native head not available ({why})"


def build_epoch(model_config: ModelConfig, path: Path, tx, batch_size: int, *, learning_rate):
    """One epoch of a single run on ``path``: ``train.make_epoch``'s contract.

    Args:
      model_config: the network.
      path: from :func:`choose` (``sweep=False``).
      tx: the optimiser (``optim.make``); the plain path steps by it.
      batch_size: examples per step; 0 for full batches.
      learning_rate: the run's η, by which the fast paths step (``tx`` holds the same).
    """
    if path.epoch == PLAIN:
        return train.make_epoch(train.make_loss(model_config), tx, batch_size)
    head_loss = pieces.head_loss(model_config, pieces.matmul)
    if path.epoch == COLUMN:
        return column.full_batch_step(head_loss, learning_rate)
    eta = jax.numpy.full((1,), learning_rate, jax.numpy.float32)  # a sweep of one network
    full = batch_size == 0

    def epoch(state: train.TrainState, x: jax.Array, labels: jax.Array, key: jax.Array):
        if full:
            order, batch = jax.numpy.zeros((1, 1), jax.numpy.int32), lambda idx: (x, labels)
        else:
            order = train.batch_order(key, x.shape[0], batch_size)
            batch = lambda idx: (x[idx], labels[idx])
        stacked = jax.tree.map(lambda a: a[None], state)
        stacked, costs = delayed.delayed_steps(stacked, eta, batch, order, head_loss, full=full)
        return jax.tree.map(lambda a: a[0], stacked), jax.numpy.mean(costs)

    return epoch


class Functions(NamedTuple):
    """What a run computes its costs and scores with: the core's, or the substitutes."""

    loss: train.Loss
    evaluate: object  # (params, x, labels) -> dict of scores


def functions(model_config: ModelConfig, path: Path) -> Functions:
    """The loss and scores of a run on ``path``: ``gd_jax.fast.pieces``' on a fast path
    (the vectorised sigmoid: the same float32 numbers), the core's on the plain one."""
    if path.fast:
        return Functions(pieces.make_loss(model_config), pieces.make_evaluate(model_config))
    return Functions(train.make_loss(model_config), train.make_evaluate(model_config))


# The flags that choose the path: a study's stages are keyed on the path they resolve
# to (Path.record), not on these words, and a study may be resumed with others.
FLAGS = ("epoch_path", "head")


def without_path(flags: dict) -> dict:
    """``flags`` without those that choose the path (:data:`FLAGS`)."""
    return {k: v for k, v in flags.items() if k not in FLAGS}


def recorded(path: Path, config: TrainConfig, previous: dict | None, *, recompute: bool) -> dict:
    """``path`` as ``config.json`` records it, once checked against the run it resumes.

    A resumed run never mixes two paths. A study (``recompute``) whose path was named on
    the command line goes on with it: its stages are keyed on the path, so what the
    other path made is computed again. A path that ``auto`` resolves to here but that
    differs from the recorded one, and any change of path in a single run (whose epochs
    all come from one path), are refused.

    Args:
      path: the path of this run.
      config: its flags (were ``epoch_path`` and ``head`` named?).
      previous: the ``config.json`` of the run being resumed, None for a new run.
      recompute: whether the run's stages are keyed on the path (a study).

    Raises:
      GdJaxError: a resume that would mix two paths, with what to do instead.
    """
    record = {"path": path.record(), "path_reason": path.why}
    before = (previous or {}).get("path")
    if before is None or before == path.record():
        return record
    named = (config.epoch_path, config.head) != (AUTO, AUTO)
    old = f"--epoch_path={before.get('epoch_path')} --head={before.get('head')}"
    new = f"--epoch_path={path.epoch} --head={path.head}"
    if recompute and named:
        logging.warning(
            "This study was trained with %s; now with %s: what that path trained is trained "
            "again, and the stages that read it are computed again.", old, new,
        )  # fmt: skip
        return record
    if recompute:
        fix = (
            f"Resume on a machine where that path is available, or resume with {new} to "
            "train again, on this path, what the other one trained"
        )
    else:
        fix = (
            f"Resume with {old} where that path is available, or start a new --workdir "
            "(a single run's epochs all come from one path)"
        )
    raise GdJaxError(
        f"This run was trained with {old} (config.json), but here it would go on with "
        f"{new} ({path.why}); its results would mix two paths. {fix}; nothing was changed."
    )
