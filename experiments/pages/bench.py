"""The benchmarks' blocks (docs/performance.md), from ``benchmarks/results``."""

from experiments.pages.common import commit_of
from gd_jax.report.format import format_value, markdown_table, percent


def bench_made_by(bench: dict, files: list[str]) -> str:
    """The line under a benchmark block: its files and what made them (the code, date,
    machine, versions), or that a file does not record its commit."""
    made = []
    for name in files:
        env = bench[name].get("environment")
        if not env:
            date = bench[name].get("date")
            made.append(f"{name}.json: made by code that did not record its commit"
                        + (f" ({date})" if date else ""))  # fmt: skip
            continue
        source, m = env.get("source") or {}, env.get("machine") or {}
        commit = commit_of(source, env.get("gd_jax_commit"))
        versions = env.get("versions") or {}
        libs = ", ".join(
            f"{k} {versions[k]}" for k in ("jax", "jaxlib", "numpy") if versions.get(k)
        )
        devices = ", ".join(dict.fromkeys(env.get("devices") or [])) or "?"
        made.append(f"commit {commit}, {str(env.get('date', ''))[:10]}, {m.get('cpu', '?')} "
                    f"({m.get('cores', '?')} cores), {devices}; {libs}")  # fmt: skip
    listed = ", ".join(f"`benchmarks/results/{n}.json`" for n in files)
    return f"*From {listed}: {'; '.join(dict.fromkeys(made))}.*"


def _path_of(row: dict) -> str:
    taken = row.get("taken")
    if not taken:
        return row.get("path", "?")
    head = taken.get("head")
    return taken["epoch_path"] + (f", {head} head" if head and head != "xla" else "")


def _case(c: dict) -> str:
    """``"784-30-10, batch 10"`` or ``"784-30-10, full batch"``."""
    return f"{c['network']}, " + (f"batch {c['batch_size']}" if c["batch_size"] else "full batch")


def bench_speed(bench: dict) -> str:
    """`make bench`: every case's time per epoch, the peers, the targets."""
    r = bench["results"]
    peak = r["matmul_peak"]["gflops"]
    rows = []
    for c in r["epoch"]:
        rows.append([_case(c), _path_of(c), f"{c['seconds_per_epoch']:.3g}",
                     f"{c['examples_per_second']:,.0f}", f"{c['compile_seconds']:.2g}",
                     percent(c.get("fraction_of_peak"))])  # fmt: skip
    for s in r["sweep"]:
        rows.append([f"{s['networks']} networks of {s['network']}, batch 10, one shared order",
                     _path_of(s),
                     f"{s['seconds_per_epoch']:.3g} ({s['seconds_per_network_epoch']:.3g} "
                     "per network)", "", f"{s['compile_seconds']:.2g}",
                     percent(s.get("fraction_of_peak"))])  # fmt: skip
    cases = markdown_table(["case", "path", "s / epoch", "examples / s", "compile s",
                            f"share of the matmul peak ({peak:.0f} GFLOP/s)"], rows)  # fmt: skip
    against = _against_plain(r["epoch"])
    if against:
        cases += (f"\n\nIn this run a fast path's epoch took {'; '.join(against)} the plain "
                  "path's (below 1×: the fast path was faster).")  # fmt: skip
    peers = []
    names = {"numpy": "vectorised NumPy (forward, the four backpropagation equations, update)",
             "torch": "PyTorch `nn.Sequential` + `optim.SGD`, CPU"}  # fmt: skip
    for key, label in names.items():
        found = r["peers"].get(key) or []
        if found:
            peers.append([label, " / ".join(f"{p['seconds_per_epoch']:.3g}" for p in found),
                          *(f"{p['speedup']:.2f}×" for p in found)])  # fmt: skip
    peer_table = markdown_table(
        ["peer, same maths and data, batch 10", "its s / epoch (784-30-10 / 784-16-16-10)",
         "gd-jax speed-up, 784-30-10", "784-16-16-10"], peers,
    )  # fmt: skip
    targets = markdown_table(
        ["target", "bar", "measured", "met"],
        [[name.replace("_", " "), format_value(t["target"]), format_value(t["measured"]),
          "—" if t["met"] is None else ("yes" if t["met"] else "no")]
         for name, t in r["targets"].items()],
    )  # fmt: skip
    return (f"{cases}\n\n{peer_table}\n\nThe bars set for the project, against this run:\n\n"
            f"{targets}\n\n{bench_made_by(bench, ['results'])}")  # fmt: skip


def _against_plain(cases: list[dict]) -> list[str]:
    """Per case timed on a fast path and on the plain one: ``"0.86× (784-30-10, batch 10,
    delayed)"``, the fast path's time per epoch over the plain path's."""
    plain = {(c["network"], c["batch_size"]): c for c in cases if _path_of(c) == "plain"}
    said = []
    for c in cases:
        base = plain.get((c["network"], c["batch_size"]))
        if base is None or c is base:
            continue
        ratio = c["seconds_per_epoch"] / base["seconds_per_epoch"]
        said.append(f"{ratio:.2f}× ({_case(c)}, {_path_of(c)})")
    return said


def bench_job(bench: dict) -> str:
    """The whole job: 1,024 networks, 30 epochs, trained and scored."""
    j = bench["job"]
    peak = max(j["matmul_peak_gflops"])
    rows = [
        ["networks", f"{j['networks']:,} × {j['network']} ({j['data']}, {j['examples']:,} "
                     f"examples, batch 10)"],
        ["path", f"{j.get('epoch_path', '?')}, {j.get('head', '?')} head"],
        ["training, s per epoch", f"{j['train_seconds_per_epoch']:.3g}"],
        ["scoring, s per epoch (every " + str(j["eval_every"]) + " epochs, averaged)",
         f"{j['eval_seconds_per_epoch']:.3g}: {percent(j['eval_share_of_epoch'])} of an epoch"],
        [f"{j['epochs']} epochs, everything included", f"{j['total_seconds'] / 60:.1f} min"],
        [f"share of the matmul peak ({peak:.0f} GFLOP/s), training / the whole job: the "
         "arithmetic of the textbook's steps", f"{percent(j['credited_share_of_peak_training'])} / "
         f"{percent(j['credited_share_of_peak_job'])}"],
        ["the same, counting 6 × weights × examples × networks (it credits the first "
         "layer's input gradient, which is never computed, so it can pass 100%)",
         f"{percent(j['six_p_n_share_of_peak_training'])} / "
         f"{percent(j['six_p_n_share_of_peak_job'])}"],
        ["median final test accuracy", percent(j["median_final_test_accuracy"])],
    ]  # fmt: skip
    return f"{markdown_table(['', ''], rows)}\n\n{bench_made_by(bench, ['job'])}"


def _gib(value: float) -> str:
    return f"{value:,.0f} GiB" if value >= 100 else f"{value:.3g} GiB"


def bench_memory(bench: dict) -> str:
    """A whole learning-rate study's peak resident memory per size, and XLA's plans."""
    parts = []
    if "study_memory" in bench:
        m = bench["study_memory"]
        rows = [[f"{s['networks']:,}", f"{s['peak_gib']:.3g} GiB", f"{s['seconds']:.0f}"]
                for s in m["studies"]]  # fmt: skip
        parts.append(f"A whole learning-rate study (`{m['command']}`, each size in a child "
                     f"process, a memory budget of {format_value(m['budget_gib'])} GiB):\n\n"
                     + markdown_table(["networks", "peak resident memory", "seconds"], rows)
                     + f"\n\n{bench_made_by(bench, ['study_memory'])}")  # fmt: skip
    if "scale" in bench:
        s = bench["scale"]
        rows = []
        for p in s["plan"]:
            for part, label in (
                ("trace", "the full-batch trace"),
                ("evaluation", "one evaluation"),
            ):
                chunked, whole = p[f"{part}_chunked"], p[f"{part}_all_at_once"]
                rows.append([f"{p['networks']:,} × {p['network']}: {label}",
                             f"{_gib(chunked['total'])} (chunks of {chunked['chunk']})",
                             _gib(whole["total"])])  # fmt: skip
        run = s.get("run")
        text = ("XLA's own plan of each program (`memory_analysis()`), within a budget of "
                f"{format_value(s['memory_budget_gib'])} GiB:\n\n"
                + markdown_table(["program", "in chunks", "all at once"], rows))  # fmt: skip
        if run:
            phases = ", ".join(f"{k} {v['peak_gib']:.3g}" for k, v in run["phases"].items())
            text += (f"\n\nMeasured: {run['networks']:,} × {run['network']} on "
                     f"{run['examples']:,} examples, trained in chunks of {run['chunk_size']} and "
                     f"traced: peak resident memory {run['peak_gib']:.3g} GiB (after each phase, "
                     f"GiB: {phases}).")  # fmt: skip
        parts.append(f"{text}\n\n{bench_made_by(bench, ['scale'])}")
    return "\n\n".join(parts)


def bench_polish(bench: dict) -> str:
    """The minima study's float64 polish per width, and its SGD epoch per seeds."""
    p = bench["polish"]
    seeds = {(c["width"], c["seeds"]): c["seconds_per_epoch"] for c in bench["seeds"]["cases"]}
    counts = sorted({n for _, n in seeds})
    rows = [[r["width"], f"{r['params']:,}", f"{r['polish_seconds_per_point']:.3g}",
             f"{r['jax_lbfgs_seconds_per_step']:.3g} / {r['scipy_lbfgs_seconds_per_step']:.3g}",
             f"{r['jax_lbfgs_cost']:.4g} / {r['scipy_lbfgs_cost']:.4g}",
             f"{r['measurement_seconds']:.3g}", f"{r['newton_mr_step_seconds']:.3g}",
             " / ".join(f"{seeds[(r['width'], n)]:.3g}" if (r["width"], n) in seeds else "—"
                        for n in counts)]
            for r in p["results"]]  # fmt: skip
    steps = p["results"][0]["lbfgs_steps"]
    table = markdown_table(
        ["width", "parameters", "polish, s per point", "L-BFGS, s per step: JAX x64 / scipy",
         f"cost after {steps} steps: JAX / scipy", "one measurement (Lanczos on ∇C), s",
         "one Newton-MR step, s", f"SGD epoch, s: {' / '.join(map(str, counts))} networks"], rows,
    )  # fmt: skip
    return (f"{p['data']}, {p['examples']:,} examples:\n\n{table}\n\n"
            f"{bench_made_by(bench, ['polish', 'seeds'])}")  # fmt: skip


BENCH_BLOCKS = {
    "bench-speed": (bench_speed, ("results",)),
    "bench-job": (bench_job, ("job",)),
    "bench-memory": (bench_memory, ("study_memory", "scale")),
    "bench-polish": (bench_polish, ("polish", "seeds")),
}


def render_bench(bench: dict) -> dict[str, str]:
    """The benchmark blocks whose files ``bench`` holds (``load(benchmarks/results)``)."""
    return {name: make(bench) for name, (make, needs) in BENCH_BLOCKS.items()
            if all(n in bench for n in needs)}  # fmt: skip
