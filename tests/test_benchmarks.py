"""The benchmarks' bookkeeping: XLA's per-op trace events summed into a table, the
whole-job benchmark's record of a tiny job, and the native head's equality check."""

import json
import subprocess
import sys

import pytest

from benchmarks import profile
from gd_jax.fast import native

HLO = """
ENTRY %main {
  %gather_fusion = f32[10,784]{1,0} fusion(%x, %idx), kind=kLoop, calls=%fused
  ROOT %ynn_fusion.2 = f32[10,30]{1,0} fusion(%a, %w), kind=kCustom, \
backend_config={"fusion_config":{"kind":"__ynn_fusion"}}
  %dot.10 = f32[784,30]{1,0} dot(%a, %d), lhs_contracting_dims={0}
}
"""


def event(name, dur, tid=1, ph="X"):
    return {"name": name, "dur": dur, "tid": tid, "ph": ph}


def test_op_table_sums_each_op_over_threads_and_leaves_out_the_runtime():
    trace = {
        "traceEvents": [
            event("dot.10", 20.0, tid=1),
            event("dot.10", 30.0, tid=2),  # the same op on the other core
            event("gather_fusion", 8.0),
            event("ynn_fusion.2", 12.0),
            event("ynn_fusion.2", 99.0, ph="i"),  # an instant, not a duration
            event("ThunkExecutor::Execute", 500.0),  # the runtime
            event("while.3", 400.0),  # a loop, which holds the ops above
            event("$api.py:2479 block_until_ready", 600.0),  # Python
            event("end: ynn_fusion.2", 1.0),
        ]
    }
    rows = profile.op_table(trace, steps=2, hlo=HLO)
    assert [r["op"] for r in rows] == ["dot.10", "ynn_fusion.2", "gather_fusion"]
    dot = rows[0]
    assert dot["calls"] == 2 and dot["ms"] == 0.05
    assert dot["us_per_call"] == 25.0 and dot["us_per_step"] == 25.0
    assert dot["what"] == "f32[784,30]{1,0} dot"
    assert rows[1]["what"] == "f32[10,30]{1,0} fusion (__ynn_fusion)"
    assert rows[2]["what"] == "f32[10,784]{1,0} fusion (kLoop)"


def test_the_whole_job_benchmark_times_training_and_scoring_apart(tmp_path):
    out = tmp_path / "job.json"
    command = [sys.executable, "-m", "benchmarks.job", "--networks=4", "--seeds=2",
               "--epochs=3", "--eval_every=2", "--examples=200", "--validation=50",
               f"--fashion_dir={tmp_path / 'none'}", f"--out={out}"]  # fmt: skip
    subprocess.run(command, check=True, timeout=300, capture_output=True)
    found = json.loads(out.read_text())
    assert found["data"] == "random" and found["networks"] == 4
    # What made it, for the page's line under its table.
    assert {"source", "date", "machine", "versions", "devices"} <= set(found["environment"])
    assert found["epoch_path"] in ("delayed", "plain") and found["head"] in ("xla", "native")
    # Scored before training, after epoch 2 and after the last (3).
    assert [e["epoch"] for e in found["epochs_timed"]] == [2, 3] and found["scorings"] == 3
    assert found["train_seconds_per_epoch"] > 0 and found["eval_seconds_per_epoch"] > 0
    assert 0 < found["credited_share_of_peak_job"] < found["six_p_n_share_of_peak_job"] < 1
    assert found["six_p_n_tflop_per_epoch"] == 6 * 13_002 * 200 * 4 / 1e12


def test_the_native_head_equality_check_compares_both_heads_on_the_same_networks(tmp_path):
    if native._library()[0] is None:
        pytest.skip("no C++ compiler here: no native head to compare")
    out = tmp_path / "equality.json"
    command = [sys.executable, "-m", "benchmarks.native_equality", "--networks=64",
               "--sample_rates=3", "--sample_seeds=1", "--epochs=1", "--examples=100",
               f"--fashion_dir={tmp_path / 'none'}", f"--out={out}"]  # fmt: skip
    subprocess.run(command, check=True, timeout=300, capture_output=True)
    found = json.loads(out.read_text())
    # η 0.01 and 100: after one block of 16 steps, rounding-sized at the small η (at
    # η = 100 training amplifies it, to about 1e-3 on these random inputs).
    assert set(found["one_block"]) == {"0-0.1", "10-100"}
    assert 0 <= found["one_block"]["0-0.1"] < 1e-6
    assert 0 <= found["one_block"]["10-100"] < 0.1
    epochs = found["whole_epochs"]
    assert epochs["same diverged steps"] is True
    assert {"native median", "nudged up largest", "nudged down over 1e-3"} <= set(
        epochs["train_cost 0-0.1"]
    )


def test_the_memory_plan_of_a_study_compiles_its_programs_chunked_and_not():
    # XLA's plan of the trace and of one evaluation, as benchmarks.scale makes it for the
    # performance page, on a network small enough to compile in seconds (in a process of
    # its own: the script's flags would clash with other modules' in this one).
    code = ("import json; from benchmarks import scale; print(json.dumps(scale.plan("
            "(784, 4, 10), networks=6, examples=300, chunk_size=3, budget=1e-4)))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=True)  # fmt: skip
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["trace_all_at_once"]["chunk"] == 6 and found["trace_chunked"]["chunk"] < 6
    for part in ("trace", "evaluation"):
        chunked, whole = found[f"{part}_chunked"], found[f"{part}_all_at_once"]
        assert 0 < chunked["scratch"] <= whole["scratch"] and chunked["total"] > 0
