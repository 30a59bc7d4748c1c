"""What every entry point shares: flags generated from the config dataclasses, the
run-folder flags, the wrapper around ``main`` and the launch of a command.

A config field is a flag of the same name (see ``gd_jax.config.option``): its default
and help text are the field's, so a default is written once. An entry point builds
its configs with :func:`config_from_flags`, which passes on only the flags given on
the command line (or in a ``--flagfile``); every other value is the field's default.
Flags defined here belong to the entry point that asked for them, so its ``--help``
lists every flag it reads.
"""

import dataclasses
import functools
import logging as stdlib_logging
import math
import os
import signal
import sys
import types
from pathlib import Path
from typing import Any

from absl import app, flags, logging

from gd_jax import memory, watchdog
from gd_jax.config import TrainConfig
from gd_jax.errors import GdJaxError
from gd_jax.report import tensorboard
from gd_jax.sweep import mesh
from gd_jax.sweep.study import Where

FLAGS = flags.FLAGS
# Flags defined (or declared key) from here count as the calling entry point's own.
flags.disclaim_key_flags()


def _define(kind: str, name: str, default: Any, help: str, choices=None) -> None:
    """Defines ``--name`` for the calling entry point. Several entry points imported into
    one process (tests do) share one flag; each declares it a key flag of its own."""
    if name in FLAGS:
        flags.declare_key_flag(name)
    elif choices is not None:
        flags.DEFINE_enum(name, default, list(choices), help)
    else:
        getattr(flags, f"DEFINE_{kind}")(name, default, help)


def define_config_flags(config_type, *, skip: tuple[str, ...] = ()) -> None:
    """A flag for every field of the dataclass ``config_type`` (but ``skip``): its type
    from the field's, its default and help text from the field's metadata."""
    for field in dataclasses.fields(config_type):
        if field.name in skip:
            continue
        meta, default = field.metadata, field.default
        if meta["parse"] is not None:
            _define("string", field.name, meta["show"](default), meta["help"])
        elif meta["choices"] is not None:
            _define("enum", field.name, default, meta["help"], choices=meta["choices"])
        else:
            _define(_KINDS[_base_type(field.type)], field.name, default, meta["help"])


_KINDS = {bool: "bool", int: "integer", float: "float", str: "string"}


def _base_type(annotation):
    """``int`` for ``int`` and ``int | None``."""
    if isinstance(annotation, types.UnionType):
        (annotation,) = (t for t in annotation.__args__ if t is not type(None))
    return annotation


def config_from_flags(config_type, *, skip: tuple[str, ...] = ()):
    """The dataclass ``config_type`` built from the flags given (parsed with the field's
    ``parse`` where it has one); fields whose flag was not given keep their default."""
    values = {}
    for field in dataclasses.fields(config_type):
        flag = FLAGS[field.name] if field.name not in skip else None
        if flag is None or not flag.present:
            continue
        parse = field.metadata["parse"]
        values[field.name] = parse(flag.value) if parse is not None else flag.value
    return config_type(**values)


def define_workdir_flags(*, resume: bool = True) -> None:
    """``--workdir`` (required), ``--watchdog``, and ``--resume`` for the studies that can
    continue."""
    _define("string", "workdir", None, "The run folder (required).")
    flags.mark_flag_as_required("workdir")
    _define(
        "float",
        "watchdog",
        watchdog.DEFAULT_LIMIT_SECONDS,
        "Seconds without any step, chunk or stage finishing after which the run is "
        "stalled: it says where, marks summary.json 'stalled', keeps what it finished and "
        f"exits with status {watchdog.EXIT_STALLED}. Bounds one compiled program, not the "
        "run; 0 turns it off.",
    )
    if resume:
        _define(
            "bool", "resume", False, "Continue the run in --workdir; nothing finished is redone."
        )


def define_tensorboard_flag() -> None:
    """``--tensorboard``: TensorBoard event files beside the run's records."""
    _define(
        "bool",
        "tensorboard",
        tensorboard.ON,
        "Also write the per-epoch scalars as TensorBoard event files in "
        "<workdir>/tensorboard (tensorboard --logdir runs/); metrics.jsonl and the tables "
        "stay the record.",
    )


def define_platform_flag() -> None:
    """``--platform``: the backend a run insists on (default: whatever JAX finds)."""
    _define(
        "enum",
        "platform",
        None,
        "Stop unless JAX runs on this backend (cpu, gpu or tpu); default: whatever JAX "
        "finds. A failed CUDA plugin otherwise falls back to the CPU with only a warning.",
        choices=("cpu", "gpu", "tpu"),
    )


def define_device_flags() -> None:
    """The flags that spread a study over devices and joined processes."""
    define_platform_flag()
    _define("integer", "devices", None, "Devices to shard the networks over (default: all).")
    _define(
        "float",
        "memory_budget",
        memory.MEMORY_BUDGET_GIB,
        "GiB (per device) the activations of the networks worked on at once may take: "
        "sweeps, traces, evaluations, paths and surfaces work in chunks that fit, so "
        "more networks take more time, not more memory.",
    )
    _define(
        "string",
        "coordinator_address",
        None,
        "host:port of process 0, to join several processes (hosts) into one study with "
        "jax.distributed; give every process the same value.",
    )
    _define(
        "integer",
        "num_processes",
        None,
        "Processes joined into one study. Default: as many as a Slurm step (srun) or "
        "Open MPI (mpirun) launched, detected by JAX, else 1; 1 keeps a process alone.",
    )
    _define("integer", "process_id", 0, "This process's rank, 0 to --num_processes − 1.")
    _define(
        "list",
        "local_device_ids",
        None,
        "Devices of this host the process takes, e.g. 0 for one GPU per process (default: "
        "one GPU per process under Slurm or Open MPI, every device otherwise).",
    )


def entry_point(*, join: bool = True, resume: bool = True):
    """Wraps an experiment's ``main``: no extra arguments, JAX kept quiet, the
    processes joined (``join``), the watchdog armed (``--watchdog``), bad input printed
    as one paragraph with exit status 2, Ctrl-C as 130 (with a word on ``--resume``
    where the entry point takes it)."""

    def wrap(main):
        @functools.wraps(main)
        def wrapped(argv):
            if len(argv) > 1:
                raise app.UsageError(f"Unexpected arguments: {' '.join(argv[1:])}")
            quiet_jax()
            watchdog.stop_handled()
            _received["signal"] = None
            previous = {s: signal.signal(s, _interrupt) for s in STOP_SIGNALS}
            unraisable, sys.unraisablehook = sys.unraisablehook, _quiet_stop(sys.unraisablehook)
            try:
                limit = _watchdog_seconds(FLAGS.watchdog) if "watchdog" in FLAGS else 0.0
                if join:
                    mesh.join(
                        FLAGS.coordinator_address,
                        FLAGS.num_processes,
                        FLAGS.process_id,
                        _device_ids(FLAGS.local_device_ids),
                    )
                mesh.check_platform(FLAGS.platform)
                # Armed here, by the entry point only: it ends a stalled process, which
                # a library call (a notebook's kernel) must never do.
                with watchdog.watching(Path(FLAGS.workdir), limit):
                    return main(argv)
            except GdJaxError as e:
                message = str(e)
                if e.field and f"--{e.field}" not in message:
                    message += f" (set by --{e.field})"
                print(f"error: {message}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                watchdog.stop_handled()
                return interrupted(resume=resume)
            finally:
                for s, handler in previous.items():
                    signal.signal(s, handler)
                sys.unraisablehook = unraisable

        return wrapped

    return wrap


def interrupted(*, resume: bool = True) -> int:
    """Says that the run stopped on a signal and what is kept; returns the exit status
    (128 + the signal's number, as a shell reports a process the signal ended)."""
    advice = "run the same command again to continue" if resume else "rerun to write it again"
    received = _received["signal"] or signal.SIGINT  # a KeyboardInterrupt of Python's own
    name = signal.Signals(received).name
    print(f"interrupted by {name}; what was finished is kept in {FLAGS.workdir}: {advice}.",
          file=sys.stderr)  # fmt: skip
    return 128 + received


def _device_ids(text: list[str] | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(t) for t in text]
    except ValueError:
        raise GdJaxError(
            f"--local_device_ids={','.join(text)} must be device numbers, e.g. 0 or 0,1."
        ) from None


# Ctrl-C, and what Slurm (and most schedulers) send before they kill a job.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_received: dict = {"signal": None}  # the signal that asked the run to stop


def _interrupt(signum, frame):
    """SIGINT or SIGTERM: the first asks the run to stop at its next beat (a file
    written, an epoch or a stage finished or begun: ``watchdog.beat``), where the
    ``KeyboardInterrupt`` unwinds through Python alone. Raised here, it could land inside
    XLA's compiler or a native call, which may then crash the process. Every file of a
    run is written atomically and every finished stage is on disk, so nothing is lost
    waiting. A second signal ends the process at once, as the signal itself would."""
    del frame
    if watchdog.stop_requested() and _received["signal"] is not None:
        print(f"{signal.Signals(signum).name} again: stopping now.", file=sys.stderr, flush=True)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    _received["signal"] = signum
    watchdog.request_stop()


def _quiet_stop(hook):
    """``sys.unraisablehook`` that drops the stop a callback swallowed (Python would
    print it as a traceback): it is recorded, and the run's next write raises it again."""

    def quiet(unraisable):
        if not issubclass(unraisable.exc_type, KeyboardInterrupt):
            hook(unraisable)

    return quiet


def _watchdog_seconds(value: float) -> float:
    if not (math.isfinite(value) and value >= 0):
        raise GdJaxError(
            f"--watchdog={value:g} must be a finite number of seconds, at least 0 (0 turns "
            f"the watchdog off; the default is {watchdog.DEFAULT_LIMIT_SECONDS:g}).",
            field="watchdog",
        )
    return value


def quiet_jax() -> None:
    """JAX logs at INFO that it found no TPU on every CPU-only start; that is not news."""
    stdlib_logging.getLogger("jax._src.xla_bridge").setLevel(stdlib_logging.WARNING)


def define_study_flags(study_type, *, skip: tuple[str, ...] = ()) -> None:
    """The flags of a study of many networks: ``TrainConfig``'s (but ``skip``), the
    study's config's, the run folder's, the devices' and TensorBoard's."""
    define_config_flags(TrainConfig, skip=skip)
    define_config_flags(study_type)
    define_workdir_flags()
    define_device_flags()
    define_tensorboard_flag()


def study_main(study_type, run, headline, *, skip: tuple[str, ...] = ()):
    """The ``main`` of a study's entry point (its flags from :func:`define_study_flags`).

    Args:
      study_type: the study's config dataclass.
      run: ``run(config, study, where) -> summary``, the study's library call.
      headline: ``headline(summary) -> str``, logged at the end with the report's path.
      skip: ``TrainConfig`` fields the study does not take.
    """

    @entry_point()
    def main(argv):
        del argv
        config = config_from_flags(TrainConfig, skip=skip)
        study = config_from_flags(study_type)
        where = Where(
            FLAGS.workdir,
            resume=FLAGS.resume,
            devices=FLAGS.devices,
            memory_budget=FLAGS.memory_budget,
            tensorboard=FLAGS.tensorboard,
        )
        summary = run(config, study, where)
        logging.info("%s Report: %s/report.md", headline(summary), FLAGS.workdir)
        return 0

    return main


def launch(main, module: str) -> None:
    """Runs ``main`` as a command (``absl.app.run``) whose ``--help`` is the command
    module ``module``'s: its docstring and its flags, whether it was started as a
    console command (``gd-jax-train``) or as ``python -m experiments.train`` from a
    checkout (absl shows those of the script it was started from)."""
    script = sys.argv[0]
    sys.modules["__main__"].__doc__ = sys.modules[module].__doc__
    for flag in FLAGS.get_key_flags_for_module(module):
        FLAGS.register_key_flag_for_module(script, flag)
    app.run(main)
