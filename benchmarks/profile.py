"""Where an epoch's time goes: XLA's own per-op (thunk) times for one epoch.

Runs one warm epoch of a single run (784-30-10 by default) under ``jax.profiler``, with
XLA:CPU's per-thunk trace events switched on, and prints each op's share: total
milliseconds, calls, microseconds per call and per step, and the op's shape and kind
from the compiled HLO. The trace events add a few microseconds to every op, so read
the table for proportions, and ``make bench`` for times.

    python -m benchmarks.profile [--path=plain|library] [--batch_size=10] [--sizes=784,30,10]
        [--networks=64]

Writes ``benchmarks/results/profile_<path>_<batch>[_<networks>].json``; the perfetto trace stays in
``--trace_dir`` for https://ui.perfetto.dev.
"""

import collections
import gzip
import json
import os
import re
import tempfile
from pathlib import Path

import jax
from absl import app, flags

from benchmarks import timing
from gd_jax import train

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command's flags, defined only when it runs, so that importing ``op_table``
    (the tests do) adds no flags beside other modules' ``--batch_size``."""
    flags.DEFINE_enum("path", "library", ["library", "plain"], "Which epoch (timing.time_case).")
    flags.DEFINE_integer("batch_size", 10, "Examples per step; 0 for one full-batch step.")
    flags.DEFINE_list("sizes", ["784", "30", "10"], "Layer widths.")
    flags.DEFINE_integer("networks", 1, "More than 1: a sweep of this many on one shared order.")
    flags.DEFINE_integer("examples", 50_000, "Training examples (the epoch's steps).")
    flags.DEFINE_integer("top", 25, "Ops to print.")
    flags.DEFINE_string("trace_dir", None, "Where the trace goes (default: a temporary folder).")


# Trace events that are not ops of the program: the runtime's own and Python's.
_NOT_OPS = re.compile(r"^\$|::|^Pjit|^ParseArguments|^end: |^while\.|^conditional\.|^call\.")


def op_table(trace: dict, steps: int, hlo: str) -> list[dict]:
    """Per op name: total time over all threads, calls, and the HLO line that made it."""
    total, calls = collections.Counter(), collections.Counter()
    for event in trace["traceEvents"]:
        name = event.get("name", "")
        if event.get("ph") == "X" and not _NOT_OPS.search(name):
            total[name] += event.get("dur", 0)  # microseconds
            calls[name] += 1
    shapes = {}
    for line in hlo.splitlines():
        found = re.match(r"\s*(?:ROOT )?%(\S+) = (\S+) (\S+?)\(", line)
        if found:
            name, shape, op = found.groups()
            kind = re.search(r'"kind":"(\w+)"', line) or re.search(r"kind=(\w+)", line)
            shapes[name] = f"{shape} {op}" + (f" ({kind.group(1)})" if kind else "")
    return [
        {
            "op": name,
            "what": shapes.get(name, ""),
            "ms": us / 1e3,
            "calls": calls[name],
            "us_per_call": us / calls[name],
            "us_per_step": us / steps,
        }
        for name, us in total.most_common()
    ]


def main(argv):
    del argv
    # XLA:CPU emits a trace event per op only with this flag, read when the backend
    # starts (the first computation below).
    flag = "--xla_cpu_enable_xprof_traceme=true"
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {flag}".strip()
    sizes = [int(s) for s in FLAGS.sizes]
    x, labels = timing.synthetic(FLAGS.examples, features=sizes[0], classes=sizes[-1])
    if FLAGS.networks > 1:
        epoch, state = timing.sweep_epoch(FLAGS.networks, sizes, FLAGS.batch_size, FLAGS.path)
    else:
        epoch, state = timing.single_epoch(sizes, FLAGS.batch_size, FLAGS.path)
    key = jax.random.key(1)
    compiled = jax.jit(epoch).lower(state, x, labels, key).compile()
    jax.block_until_ready(compiled(state, x, labels, key))  # warm
    trace_dir = Path(FLAGS.trace_dir or tempfile.mkdtemp(prefix="gd_jax_profile_"))
    with jax.profiler.trace(str(trace_dir), create_perfetto_trace=True):
        jax.block_until_ready(compiled(state, x, labels, key))
    trace_file = sorted(trace_dir.glob("**/perfetto_trace.json.gz"))[-1]
    with gzip.open(trace_file) as f:
        trace = json.load(f)
    steps = train.num_batches(x.shape[0], FLAGS.batch_size)
    rows = op_table(trace, steps, compiled.as_text())
    network = "-".join(map(str, sizes))
    if FLAGS.networks > 1:
        network = f"{FLAGS.networks} x {network}"
    batch = FLAGS.batch_size or "full"
    print(f"{network}, batch {batch}, {FLAGS.path} epoch: {steps} steps; trace in {trace_file}")
    print(f"{'op':<40}{'ms':>9}{'calls':>8}{'µs/call':>10}{'µs/step':>10}  what")
    for r in rows[: FLAGS.top]:
        print(
            f"{r['op'][:39]:<40}{r['ms']:>9.2f}{r['calls']:>8}{r['us_per_call']:>10.2f}"
            f"{r['us_per_step']:>10.2f}  {r['what'][:70]}"
        )
    print(f"{len(rows)} ops, {sum(r['ms'] for r in rows):.1f} ms in all (with trace overhead)")
    sweep_part = f"_{FLAGS.networks}" if FLAGS.networks > 1 else ""
    out = Path(__file__).parent / "results" / f"profile_{FLAGS.path}_{batch}{sweep_part}.json"
    result = {"network": network, "batch_size": FLAGS.batch_size, "path": FLAGS.path}
    out.write_text(json.dumps({**result, "steps": steps, "ops": rows}, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    define_flags()
    app.run(main)
