"""The headline numbers of a run, from its per-epoch metrics."""

import numpy as np


def summarize(history: list[dict], status: str, *, num_params: int, sizes) -> dict:
    """The run's headline numbers (``summary.json``) from its per-epoch metrics.

    Args:
      history: the per-epoch metric dicts, epoch 0 (the initial state) first.
      status: ``completed``, ``diverged`` or ``interrupted``.
      num_params: the network's weights and biases.
      sizes: its layer widths.
    """
    trained = [m for m in history if m["epoch"] > 0]
    last = history[-1] if history else {}
    tested = [m for m in history if m.get("test_accuracy") is not None]
    best = max(tested, key=lambda m: m["test_accuracy"], default=None)
    diverged = [m["epoch"] for m in history if m["diverged"]]
    compile_seconds = [m["compile_seconds"] for m in trained if "compile_seconds" in m]
    seconds = [m["seconds"] for m in trained if not m["diverged"]]
    return {
        "status": status,
        "sizes": list(sizes),
        "num_params": num_params,
        "epochs_completed": max((m["epoch"] for m in history if not m["diverged"]), default=0),
        "final_train_cost": last.get("train_cost"),
        "final_train_accuracy": last.get("train_accuracy"),
        "final_validation_accuracy": last.get("validation_accuracy"),
        "final_test_cost": last.get("test_cost"),
        "final_test_accuracy": last.get("test_accuracy"),
        "best_test_accuracy": best["test_accuracy"] if best else None,
        "best_test_epoch": best["epoch"] if best else None,
        "final_grad_norm": last.get("grad_norm"),
        "diverged": bool(diverged),
        "diverged_epoch": diverged[0] if diverged else None,
        "seconds_per_epoch": float(np.mean(seconds)) if seconds else None,
        "compile_seconds": compile_seconds[0] if compile_seconds else None,
        "steps": last.get("step"),
    }
