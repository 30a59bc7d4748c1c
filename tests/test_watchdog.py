"""A run finishes or fails: the watchdog ends a run in which nothing finishes."""

import json
import os
import signal
import subprocess
import sys
import threading
import time

from gd_jax import io, watchdog


def test_the_watchdog_fires_once_when_nothing_finishes():
    fired = []
    done = threading.Event()

    def on_stall(label, idle):
        fired.append((label, idle))
        done.set()

    with watchdog.Watchdog(0.2, on_stall):
        watchdog.beat("step 1")
        assert done.wait(5.0)
    assert len(fired) == 1 and fired[0][0] == "step 1" and fired[0][1] > 0.2


def test_the_watchdog_stays_quiet_while_work_finishes():
    fired = []
    with watchdog.Watchdog(0.3, lambda *a: fired.append(a)):
        for i in range(20):  # 1 s in all, a beat every 0.05 s
            watchdog.beat(f"step {i}")
            time.sleep(0.05)
    assert fired == []
    assert watchdog.last()[0] == "step 19"


SUSPENDED = """
import time
from gd_jax import watchdog
fired = []
with watchdog.Watchdog(1.0, lambda label, idle: fired.append(idle)):
    print("ready", flush=True)
    for i in range(30):  # 3 s of work, a beat every 0.1 s
        watchdog.beat(f"step {i}")
        time.sleep(0.1)
print(f"fired after {fired[0]:.1f} s" if fired else "quiet", flush=True)
"""


def test_time_suspended_is_not_a_stall_and_a_stall_awake_still_is():
    # Stopped (as by Ctrl-Z or a suspended job) for 3 s, three times the limit, between
    # two beats: the watchdog leaves the suspension out.
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    with subprocess.Popen([sys.executable, "-c", SUSPENDED], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as child:  # fmt: skip
        assert child.stdout.readline().strip() == "ready"
        time.sleep(0.3)
        child.send_signal(signal.SIGSTOP)
        time.sleep(3.0)
        child.send_signal(signal.SIGCONT)
        out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err[-2000:]
    assert out.strip() == "quiet"
    # A stall that is not a suspension is still one: no beat for 2 s while awake.
    fired = []
    with watchdog.Watchdog(1.0, lambda label, idle: fired.append(idle)):
        watchdog.beat("one step")
        time.sleep(2.0)
    assert len(fired) == 1 and 1.0 < fired[0] < 2.0


def test_a_stalled_study_says_where_marks_its_folder_and_exits(tmp_path):
    # A trace of 100,000 full-batch steps sampled once (about 13 s here) is one compiled
    # program that runs for far longer than the 1-second limit without finishing
    # anything. (With nothing to sample the trace is skipped: the stall would then be
    # only XLA compiling the sweep, which the run's compilation cache may spare.)
    workdir = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "experiments.lr_sweep", "--dataset=digits", "--layers=8",
         "--learning_rates=0.5", "--seeds=1", "--epochs=1", "--full_batch_steps=100000",
         "--track_sharpness_every=100000", "--nofirst_order_check", "--norange_test",
         "--norounding_check", "--train_size=200", "--watchdog=1", f"--workdir={workdir}"],
        capture_output=True, text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert done.returncode == watchdog.EXIT_STALLED, done.stderr[-3000:]
    assert "error: the run stalled: nothing finished for" in done.stderr
    summary = json.loads((workdir / io.SUMMARY).read_text())
    assert summary["status"] == "stalled" and summary["stalled_at"]
    assert "Thread" in done.stderr  # every thread's stack, to see where it waits


def test_bad_watchdog_values_are_refused(tmp_path):
    for value in ("nan", "-1", "inf"):
        done = subprocess.run(
            [sys.executable, "-m", "experiments.train", "--dataset=digits", "--epochs=1",
             f"--watchdog={value}", f"--workdir={tmp_path / value}"],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "JAX_PLATFORMS": "cpu"},
        )  # fmt: skip
        assert done.returncode == 2, done.stderr[-2000:]
        assert f"--watchdog={value}" in done.stderr
        assert not (tmp_path / value).exists()
