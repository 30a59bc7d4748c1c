"""The learning-rate study's tables on constructed inputs with known answers: the
per-η table, the per-seed stability table, the summary, the range test's smoothing."""

import numpy as np
import pytest

from gd_jax import io
from gd_jax.studies.lr import range_test, tables
from gd_jax.studies.lr.trace import TraceResult
from gd_jax.sweep.engine import Networks


def row(eta, seed, accuracy, cost, *, trained=True, diverged=False):
    return tables.NetworkResult(
        learning_rate=eta, seed=seed, final_test_accuracy=accuracy, final_train_cost=cost,
        trained=trained, diverged=diverged, final_train_accuracy=None, final_test_cost=None,
        best_test_accuracy=None, final_grad_norm=None, diverged_epoch=None,
        epoch_path="delayed", head="xla",
    )  # fmt: skip


ROWS = [
    row(0.1, 0, 0.50, 0.30),
    row(0.1, 1, 0.70, 0.10),
    row(1.0, 0, 0.90, 0.05),
    row(1.0, 1, 0.80, 0.07),
    row(10.0, 0, 0.0, 0.45, trained=False),  # a real 0% accuracy, not a missing one
    row(10.0, 1, None, None, trained=False, diverged=True),
]


def test_the_per_eta_table():
    table = tables.per_eta_rows(ROWS)
    assert [r.learning_rate for r in table] == [0.1, 1.0, 10.0]
    low, mid, high = table
    assert (low.seeds, low.trained, low.diverged) == (2, 2, 0)
    assert low.final_test_accuracy_mean == pytest.approx(0.6)
    assert low.final_test_accuracy_std == pytest.approx(0.1)  # population sd of 0.5, 0.7
    assert low.final_train_cost_mean == pytest.approx(0.2)
    assert mid.final_test_accuracy_mean == pytest.approx(0.85)
    assert (high.trained, high.diverged) == (0, 1)
    # The diverged seed has no numbers; the other one's 0% and 0.45 are counted.
    assert high.final_test_accuracy_mean == 0.0 and high.final_train_cost_mean == 0.45


def test_the_stability_table_without_a_trace():
    stability = tables.stability_rows(ROWS, None, baseline=0.45)
    assert [s.seed for s in stability] == [0, 1]
    for s in stability:
        assert s.largest_trained_eta == 1.0 and s.best_eta == 1.0
        assert s.first_failed_eta == 10.0
    assert stability[0].best_final_test_accuracy == 0.9
    assert stability[1].best_final_test_accuracy == 0.8
    assert stability[0].lambda_max_init is None
    assert "lambda_max_init" not in io.table(stability)[0]  # no such column without a trace


def test_a_seed_with_no_trained_network_has_no_best():
    rows = [row(1.0, 0, 0.1, 0.44, trained=False), row(3.0, 0, 0.1, 0.45, trained=False)]
    (s,) = tables.stability_rows(rows, None, baseline=0.45)
    assert s.best_eta is None and s.best_final_test_accuracy is None


def trace_of(lambda_max_init, final_cost, diverged_step):
    """A trace of 2 η (0.1, 1.0) × 2 seeds (0, 1), learning-rate major."""
    networks = Networks(np.array([0.1, 0.1, 1.0, 1.0]), np.array([0, 1, 0, 1]))
    cost = np.stack([np.full(4, 0.45), final_cost])
    nan = np.full((2, 4), np.nan)
    return TraceResult(
        networks=networks,
        sample_steps=np.array([0, 10]),
        cost=cost, measured=nan, first_order=nan, second_order=nan, grad_norm_sq=nan,
        g_h_g=nan, lambda_max=np.stack([lambda_max_init, lambda_max_init]), lambda_min=nan,
        step_cost=np.full((10, 4), 0.4), diverged_step=np.asarray(diverged_step), seconds=1.0,
    )  # fmt: skip


def test_the_stability_table_with_a_trace():
    trace = trace_of(
        lambda_max_init=np.array([4.0, 8.0, 4.0, 8.0]),
        final_cost=np.array([0.2, 0.3, 0.1, 0.44]),  # seed 1 at η = 1: not below 0.405
        diverged_step=[-1, -1, -1, -1],
    )
    seed0, seed1 = tables.stability_rows(ROWS, trace, baseline=0.45)
    assert seed0.lambda_max_init == 4.0 and seed0.two_over_lambda_max == 0.5
    assert seed1.two_over_lambda_max == 0.25
    assert seed0.full_batch_largest_trained_eta == 1.0
    assert seed0.full_batch_first_failed_eta is None  # best is the largest η: none above
    assert seed1.full_batch_largest_trained_eta == 0.1
    assert seed1.full_batch_first_failed_eta == 1.0


def test_the_summary_picks_the_best_mean_accuracy_among_trained_rates():
    stability = tables.stability_rows(ROWS, None, baseline=0.45)

    class Sweep:
        seconds_per_epoch, compile_seconds = 0.5, 2.0

    summary = tables.summarize(
        ROWS, stability=stability, first_order=[], range_found=None, trace=None,
        baseline=0.45, sweep=Sweep(),
    )  # fmt: skip
    assert summary["best_learning_rate"] == 1.0
    assert summary["best_mean_final_test_accuracy"] == pytest.approx(0.85)
    assert summary["trained_networks"] == 4 and summary["diverged_networks"] == 1
    assert "two_over_lambda_max_init" not in summary and "range_test" not in summary


def test_the_range_tests_default_smoothing_is_a_bias_corrected_average():
    etas = np.geomspace(1e-4, 100, 5)
    costs = [1.0, 1.0, 0.5, 0.5, 3.0]
    found = range_test.analysis(range_test.RangeTest(etas, np.asarray(costs)))
    # By hand, β = 0.98: m_t = β m_{t-1} + (1 − β) c_t, smoothed = m_t / (1 − β^{t+1}).
    average, expected = 0.0, []
    for t, c in enumerate(costs):
        average = 0.98 * average + 0.02 * c
        expected.append(average / (1 - 0.98 ** (t + 1)))
    np.testing.assert_allclose(found.smoothed, expected, rtol=1e-12)
    assert found.smoothed[0] == 1.0 and found.smoothed[1] == pytest.approx(1.0)
    assert not found.stopped and found.stop_index == 5  # 3.0 is not 4× the minimum
    assert found.min_eta == pytest.approx(etas[3])


def test_a_range_test_step_that_overflowed_stops_the_test():
    etas = np.geomspace(1e-3, 10, 4)
    costs = np.array([1.0, 0.9, float("inf"), 1.0])
    found = range_test.analysis(range_test.RangeTest(etas, costs), beta=0.0)
    assert found.stopped and found.stop_index == 2 and found.stop_eta == etas[1]
