"""What a GPU and big sweeps need, checked on the CPU: full float32 unless asked
otherwise (and recorded), data passed to programs as arguments (never compiled in),
and a run that asks for a GPU stops when it has none."""

import functools
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import cli, mlp

from gd_jax import landscape, memory, train
from gd_jax.cli import train as train_cli
from gd_jax.fast import paths, pieces
from gd_jax.studies.lr.trace import make_trace
from gd_jax.studies.minima.analysis import make_measure
from gd_jax.studies.minima.config import MinimaConfig
from gd_jax.sweep import engine, mesh

STUDIES = """
import sys
from absl import flags
from gd_jax.cli import local_minima, lr_sweep, train
flags.FLAGS(["studies", "--workdir=x"])
from gd_jax.config import TrainConfig
from gd_jax.studies.lr.config import LrConfig
from gd_jax.studies.minima.config import MinimaConfig
from gd_jax.studies.lr import run as lr
from gd_jax.studies.minima import run as minima
from gd_jax.studies.run import run as single
from gd_jax.sweep.study import Where
out = sys.argv[1]
config = TrainConfig(dataset="digits", layers=(8,), epochs=1)
single.train_run(config, out + "/train")
lr.run(config, LrConfig(learning_rates=(0.5, 3.0), seeds=1, full_batch_steps=4,
       track_sharpness_every=2, range_steps=8, lanczos_iters=4), Where(out + "/lr"))
minima.run(config, MinimaConfig(widths=(3,), seeds=2, lanczos_iters=4, max_pairs=1,
           path_points=3, polish_steps=40, curve_steps=20, escape_points=0),
           Where(out + "/minima"))
"""
# JAX's dump of every program it lowers (StableHLO, ``jax_dump_ir_to``): written on
# every lowering, whether XLA then compiles the program or reads it back from the
# persistent compilation cache, so the scan sees every program of the run while the
# run itself takes its compiled programs from the test run's cache.
CONSTANT = re.compile(r"stablehlo\.constant dense<([\"\[])[^>]*> : tensor<([^>]*)>")
ITEM_BYTES = {"f64": 8, "i64": 8, "ui64": 8, "f32": 4, "i32": 4, "ui32": 4, "f16": 2,
              "bf16": 2, "i16": 2, "i8": 1, "ui8": 1, "i1": 1}  # fmt: skip


def dump_env(dump: Path) -> dict:
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_DUMP_IR_TO": str(dump)}


def large_constants(dump: Path, limit_bytes: int = 4096) -> list[str]:
    """Constants of more than ``limit_bytes`` that hold data (not one value repeated)
    in the programs JAX lowered."""
    found = []
    for path in sorted(dump.glob("*.mlir")):
        for match in CONSTANT.finditer(path.read_text()):
            *dims, dtype = match[2].split("x")
            size = ITEM_BYTES.get(dtype, 4)
            for dim in dims:
                size *= int(dim)
            if size > limit_bytes:
                found.append(f"{path.name}: {match[2]}")
    return found


LIBRARY_CALL = re.compile(r"stablehlo\.custom_call @(\w+)")


def library_calls(dump: Path) -> set[str]:
    """The library kernels (custom calls) the programs JAX lowered call."""
    found = set()
    for path in dump.glob("*.mlir"):
        found.update(LIBRARY_CALL.findall(path.read_text()))
    return found


@pytest.fixture(scope="module")
def study_programs(tmp_path_factory) -> Path:
    """The programs of all three studies, run end to end on digits."""
    out = tmp_path_factory.mktemp("studies")
    dump = out / "dump"
    done = subprocess.run(
        [sys.executable, "-c", STUDIES, str(out)], env=dump_env(dump), capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return dump


def test_no_program_of_any_study_holds_the_data_as_a_constant(study_programs):
    programs = list(study_programs.glob("*.mlir"))
    assert len(programs) > 20  # every jitted step of the three studies was seen
    # The digits training set alone is 1,347 × 64 floats (345 KB).
    assert large_constants(study_programs) == []


def test_no_program_of_any_study_calls_a_lapack_kernel(study_programs):
    # jaxlib's batched LAPACK kernels (eigh's syevd among them) split their batch over
    # XLA's thread pool and wait for it; two of them side by side in one program starve
    # a small pool for ever (curvature.ritz_values). The studies' programs use none.
    assert not {c for c in library_calls(study_programs) if "lapack" in c.lower()}


def test_the_scanner_sees_a_lapack_kernel(tmp_path):
    snippet = "import jax, jax.numpy as jnp\nprint(jax.jit(jnp.linalg.eigvalsh)(jnp.eye(3)))\n"
    subprocess.run([sys.executable, "-c", snippet], env=dump_env(tmp_path), check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    assert any("syevd" in c for c in library_calls(tmp_path))


def test_the_scanner_sees_a_dataset_compiled_into_a_program(tmp_path):
    snippet = (
        "import jax, jax.numpy as jnp\n"
        "x = jax.random.normal(jax.random.key(0), (300, 64))\n"
        "print(jax.jit(lambda w: (x @ w).sum())(jnp.ones(64)))\n"
    )
    subprocess.run([sys.executable, "-c", snippet], env=dump_env(tmp_path), check=True,
                   capture_output=True, timeout=120)  # fmt: skip
    assert any("300x64xf32" in c for c in large_constants(tmp_path))


def test_full_float32_is_the_default_and_recorded(tmp_path):
    assert cli(train_cli, "--dataset=digits", "--epochs=1", f"--workdir={tmp_path / 'a'}") == 0
    flags = json.loads((tmp_path / "a" / "config.json").read_text())["flags"]
    assert flags["matmul_precision"] == "highest"
    args = ("--dataset=digits", "--epochs=1", "--matmul_precision=default")
    assert cli(train_cli, *args, f"--workdir={tmp_path / 'b'}") == 0
    flags = json.loads((tmp_path / "b" / "config.json").read_text())["flags"]
    assert flags["matmul_precision"] == "default"


@pytest.mark.parametrize("platform", ["gpu", "tpu"])
def test_a_run_that_asks_for_an_accelerator_it_lacks_stops(tmp_path, platform):
    done = subprocess.run(
        [sys.executable, "-m", "experiments.train", "--dataset=digits", "--epochs=1",
         f"--platform={platform}", f"--workdir={tmp_path}"],
        capture_output=True, text=True, timeout=120,
        env={k: v for k, v in os.environ.items() if k != "JAX_PLATFORMS"},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"platform={platform} was asked for, but JAX runs on cpu" in done.stderr
    assert "(set by --platform)" in done.stderr and "Traceback" not in done.stderr
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


# --- memory: flat in the number of networks beyond a chunk ---------------------------

SIZES = (64, 32, 32, 10)
EXAMPLES = 4000


def temp_bytes(fn, *args) -> int:
    """XLA's own count of a program's scratch memory (its peak beyond inputs/outputs)."""
    return jax.jit(fn).lower(*args).compile().memory_analysis().temp_size_in_bytes


def stacked_params(n: int):
    return [
        (jax.ShapeDtypeStruct((n, a, b), jnp.float32), jax.ShapeDtypeStruct((n, b), jnp.float32))
        for a, b in itertools.pairwise(SIZES)
    ]


def functions(model_config) -> paths.Functions:
    """The loss and scores a default study computes with on a CPU (the fast pieces)."""
    return paths.Functions(pieces.make_loss(model_config), pieces.make_evaluate(model_config))


DATA = (
    jax.ShapeDtypeStruct((EXAMPLES, SIZES[0]), jnp.float32),
    jax.ShapeDtypeStruct((EXAMPLES,), jnp.int32),
)


@functools.cache  # one compilation per size, shared by the tests below
def trace_memory(n: int, chunk: int) -> int:
    run = make_trace(pieces.make_loss(mlp(SIZES)), steps=2, every=1, track_sharpness=True,
                     lanczos_iters=3, lanczos_seed=0, chunk=chunk)  # fmt: skip
    eta = jax.ShapeDtypeStruct((n,), jnp.float32)
    return temp_bytes(run, stacked_params(n), eta, *DATA, *DATA)


@functools.cache  # one compilation per size, shared by the tests below
def measure_memory(n: int, chunk: int) -> int:
    measure = engine.make_measure(functions(mlp(SIZES)), ("test",), EXAMPLES, chunk)
    return temp_bytes(measure, stacked_params(n), DATA, (DATA,))


@functools.cache  # one compilation per size, shared by the tests below
def extremes_memory(n: int, chunk: int) -> int:
    measure = make_measure(mlp(SIZES), MinimaConfig(lanczos_iters=3, spectrum_probes=1), chunk)
    return temp_bytes(measure, stacked_params(n), jax.random.key(0), DATA, DATA)


@functools.cache  # one compilation per size, shared by the tests below
def surface_memory(num: int, chunk: int) -> int:
    evaluate = train.make_evaluate(mlp(SIZES))
    one = stacked_params(1)
    params = [tuple(jax.ShapeDtypeStruct(a.shape[1:], a.dtype) for a in layer) for layer in one]
    grid = jax.ShapeDtypeStruct((num,), jnp.float32)
    fn = lambda p, d1, d2, x, labels, a, b: landscape._surface_scores(
        evaluate, p, (d1, d2), (x, labels), (a, b), chunk
    )
    return temp_bytes(fn, params, params, params, *DATA, grid, grid)


@pytest.mark.parametrize(
    "memory_of", [trace_memory, measure_memory, extremes_memory, surface_memory],
    ids=["trace", "evaluation", "lanczos", "surface"],
)  # fmt: skip
def test_peak_memory_is_flat_in_the_networks_beyond_a_chunk(memory_of):
    chunk = 2
    small, large = memory_of(8, chunk), memory_of(16, chunk)
    # One chunk's activations: 2 × 4,000 examples × 74 units × 4 bytes ≈ 2.4 MB.
    assert large <= small * 1.05 + 2**20, (small, large)
    # Without chunks, twice the networks would take about twice the memory.
    whole_small, whole_large = memory_of(8, 8), memory_of(16, 16)
    assert whole_large > 1.6 * whole_small and whole_large > 2 * large


def test_networks_in_no_multiple_of_the_chunk_take_one_chunks_memory():
    # A shorter last chunk would be a program of its own beside the loop over the
    # others, its scratch planned beside the loop's (15 in chunks of 8 took 1.7 times 16).
    assert measure_memory(15, 8) <= measure_memory(16, 8) * 1.05 + 2**20


@pytest.mark.parametrize(
    "memory_of, copies",
    [(trace_memory, memory.TRACE_COPIES), (measure_memory, memory.COPIES),
     (extremes_memory, memory.COPIES)],
    ids=["trace", "evaluation", "lanczos"],
)  # fmt: skip
def test_the_estimate_a_chunk_is_sized_by_covers_what_xla_plans_for_it(memory_of, copies):
    # XLA's planned scratch per network (a chunk of 8 against one of 4, so what every
    # program holds once cancels) never exceeds the estimate the chunks are sized by.
    per_network = (memory_of(8, 8) - memory_of(4, 4)) / 4
    krylov = 3  # the Lanczos steps of trace_memory and extremes_memory
    estimate = memory.network_bytes(SIZES, EXAMPLES, copies, krylov=krylov)
    assert 0 < per_network <= estimate, (per_network, estimate)


PEAK = """
import sys
import jax, jax.numpy as jnp, numpy as np
from conftest import mlp
from gd_jax import landscape, model, train
from gd_jax.studies.lr.trace import make_trace
from gd_jax.fast import pieces
from gd_jax.fast.paths import Functions
from gd_jax.sweep import engine

SIZES, EXAMPLES = (64, 32, 32, 10), 10_000
n, chunk, kinds = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3].split(",")
config = mlp(SIZES)
rng = np.random.default_rng(0)
x = jnp.asarray(rng.random((EXAMPLES, SIZES[0]), dtype=np.float32))
labels = jnp.asarray(rng.integers(0, 10, EXAMPLES), dtype=jnp.int32)
nets = jax.vmap(lambda k: model.init_params(k, SIZES))(jax.random.split(jax.random.key(0), n))
run = {
    "trace": lambda: jax.jit(make_trace(pieces.make_loss(config), steps=2, every=1,
        track_sharpness=False, lanczos_iters=3, lanczos_seed=0, chunk=chunk))(
        nets, jnp.full((n,), 0.1), x, labels, x[:100], labels[:100]),
    "evaluation": lambda: jax.jit(engine.make_measure(
        Functions(pieces.make_loss(config), pieces.make_evaluate(config)), ("test",), EXAMPLES,
        chunk))(nets, (x, labels), ((x, labels),)),
    "surface": lambda: landscape.surface(  # an n x n grid of points
        train.make_evaluate(config), model.init_params(jax.random.key(0), SIZES), x, labels,
        key=jax.random.key(1), num=n, chunk=chunk),
}
for kind in kinds:
    jax.block_until_ready(run[kind]())
# VmHWM, not getrusage: ru_maxrss carries over the parent's peak through fork and exec.
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM:")]
print(int(hwm[0].split()[1]) / 1024)
"""


def _peak_child(args):
    return subprocess.Popen(
        [sys.executable, "-c", PEAK, *args],
        cwd=Path(__file__).parent,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_peak_resident_memory_of_a_child_process_is_flat_in_the_networks():
    # Each measurement is a fresh process (an allocator keeps what it once took), all
    # three at once; the same programs run in the same order in the two chunked ones.
    runs = {"8 networks": ("8", "2", "trace,evaluation,surface"),
            "32 networks": ("32", "2", "trace,evaluation,surface"),
            "32 unchunked": ("32", "32", "trace")}  # fmt: skip
    children = {name: _peak_child(args) for name, args in runs.items()}
    peak = {}
    for name, child in children.items():
        out, err = child.communicate(timeout=300)
        assert child.returncode == 0, err[-2000:]
        peak[name] = float(out.split()[-1])  # MiB
    # 4x the networks (and 16x the surface's points) in chunks of 2: the same peak.
    assert peak["32 networks"] < peak["8 networks"] + 64, peak
    # The measurement sees activations: one unchunked trace of 32 networks takes
    # 32 x 10,000 examples x 74 units x 4 bytes = 95 MB a copy, several copies over.
    assert peak["32 unchunked"] > peak["32 networks"] + 300, peak


def test_a_chunk_fits_its_budget():
    sizes = (784, 256, 256, 10)
    chunk = memory.chunk_for(sizes, 60_000, budget_gib=4.0)
    per_network = memory.COPIES * 4 * (60_000 * 522 + 269_322)
    assert chunk == 4 * 2**30 // per_network == 3
    assert memory.chunk_for(sizes, 60_000, budget_gib=0.001) == 1  # never less than one
    per_network = memory.COPIES * 4 * (10_000 * 42 + 13_002)
    assert memory.chunk_for((784, 16, 16, 10), 10_000) == 2 * 2**30 // per_network
    # The full-batch trace of 784-16-16-10 on 10,000 examples with 20 Lanczos steps:
    # 16 copies of its activations and parameters, and 80 parameter vectors besides.
    per_network = 4 * (16 * (10_000 * 42 + 13_002) + 4 * 20 * 13_002)
    trace = memory.chunk_for((784, 16, 16, 10), 10_000, copies=memory.TRACE_COPIES, krylov=20)
    assert trace == 2 * 2**30 // per_network == 67


def test_data_already_on_the_mesh_is_not_copied_again():
    on_mesh = mesh.replicate(jnp.arange(10.0), mesh.network_mesh(None))
    assert mesh.replicate(on_mesh, mesh.network_mesh(None)) is on_mesh
    from_host = mesh.replicate(np.arange(3), mesh.network_mesh(None))
    assert isinstance(from_host, jax.Array) and from_host.tolist() == [0, 1, 2]
