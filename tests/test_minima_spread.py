"""The statistics of spread and the verdict sentence, on endpoint sets whose answer is
known."""

import math

import numpy as np
import pytest
from scipy import stats

from gd_jax.studies.minima import spread


def test_sd_intervals_hold_the_estimate_and_not_at_an_end():
    v = np.random.default_rng(0).normal(0.9, 0.003, 32)
    s = spread.spread(v, alpha=0.05)
    assert s["n"] == 32 and s["sd"] == pytest.approx(np.std(v, ddof=1))
    for low, high in (("sd_low", "sd_high"), ("sd_bonett_low", "sd_bonett_high")):
        assert s[low] < s["sd"] < s[high]
    # The χ² interval of a normal sample's variance, by its textbook formula.
    df = 31
    assert s["sd_high"] ** 2 == pytest.approx(df * s["sd"] ** 2 / stats.chi2.ppf(0.025, df))
    assert s["range"] == pytest.approx(np.ptp(v)) and s["iqr"] == pytest.approx(stats.iqr(v))
    assert s["mad"] == pytest.approx(np.median(np.abs(v - np.median(v))))


def test_the_sd_intervals_cover_the_true_sd_at_their_confidence():
    # 95% intervals from 400 normal samples of 12: both cover σ about 95% of the time.
    rng = np.random.default_rng(1)
    hits = np.zeros(2)
    for _ in range(400):
        s = spread.spread(rng.normal(0, 2.0, 12), alpha=0.05)
        hits += [s["sd_low"] <= 2 <= s["sd_high"], s["sd_bonett_low"] <= 2 <= s["sd_bonett_high"]]
    assert np.all(np.abs(hits / 400 - 0.95) < 0.04), hits / 400


def test_bonett_widens_for_heavy_tails():
    rng = np.random.default_rng(2)
    normal, heavy = rng.normal(0, 1, 40), rng.standard_t(2.5, 40)
    width = lambda s: s["sd_bonett_high"] / s["sd_bonett_low"]
    chi2_width = lambda s: s["sd_high"] / s["sd_low"]
    sn, sh = spread.spread(normal), spread.spread(heavy)
    assert width(sh) > chi2_width(sh) and width(sh) > width(sn)


def test_few_values_give_what_they_can():
    assert spread.spread([])["sd"] is None and spread.spread([0.5])["range"] == 0
    two = spread.spread([0.5, 0.7, None])
    assert two["n"] == 2 and two["sd_low"] is not None and two["sd_bonett_low"] is None


def test_the_noise_floor_is_the_spread_of_networks_that_differ_only_by_chance():
    # 40 networks of one true accuracy: each example has a difficulty q_i, and every
    # network gets it right with probability q_i. Their accuracies on these 2,000
    # examples then spread by test sampling alone, and the floor says by how much.
    rng = np.random.default_rng(3)
    q = rng.beta(8, 1, 2000)
    correct = rng.random((40, 2000)) < q
    floor = spread.noise_floor(correct)
    observed = np.std(correct.mean(axis=1), ddof=1)
    assert floor["floor"] == pytest.approx(observed, rel=0.3)
    p = correct.mean()
    assert floor["binomial"] == pytest.approx(math.sqrt(p * (1 - p) / 2000), rel=0.02)
    # Networks that agree on most examples (the usual case) have a lower floor than the
    # binomial one of independent test sets.
    assert floor["floor"] < floor["binomial"]
    assert spread.beyond_floor(observed, 40, floor["floor"])["floor_p"] > 0.05
    # Independent networks (q the same everywhere): the floor is the binomial one.
    coins = rng.random((40, 2000)) < 0.9
    found = spread.noise_floor(coins)
    assert found["floor"] == pytest.approx(found["binomial"], rel=0.05)


def test_a_spread_well_above_the_floor_is_flagged():
    found = spread.beyond_floor(0.01, 32, 0.003)
    assert found["floor_p"] < 1e-6 and found["excess"] == pytest.approx(math.sqrt(1e-4 - 9e-6))
    assert spread.beyond_floor(0.003, 32, 0.003)["floor_p"] == pytest.approx(0.47, abs=0.05)


def test_outliers_by_robust_z():
    v = [0.90, 0.901, 0.899, 0.902, 0.898, 0.90, 0.60]
    found = spread.outliers(v, labels=range(7))
    assert [o[0] for o in found] == [6] and found[0][2] < -3.5


# Known answers for the verdict: three synthetic endpoint sets of 32 seeds per width.
WIDTHS = (4, 16, 64)


def _sets(sds, outlier=None, seed=0):
    rng = np.random.default_rng(seed)
    groups = {w: list(rng.normal(0.9, sd, 32)) for w, sd in zip(WIDTHS, sds, strict=True)}
    if outlier is not None:
        groups[outlier][5] = 0.6
    return groups


def _verdict(groups, floor=0.002):
    per_width = []
    for w, v in groups.items():
        s = spread.spread(v) | {"width": w, "floor": floor}
        s |= spread.beyond_floor(s["sd"], s["n"], floor)
        s["outliers"] = spread.outliers(v, labels=range(len(v)))
        per_width.append(s)
    tests = spread.across(groups)
    return tests, spread.verdict(per_width, tests, alpha=0.05, points="test accuracy")


def test_the_verdict_on_equal_spreads_claims_no_difference():
    tests, sentence = _verdict(_sets((0.003, 0.003, 0.003)))
    assert tests["brown_forsythe_p"] > 0.05 and tests["trend_p"] > 0.05
    assert "does not differ between widths beyond chance" in sentence
    assert "shrinks" not in sentence and "grows" not in sentence
    assert f"Brown–Forsythe p = {tests['brown_forsythe_p']:.2f}" in sentence
    # Every width's sd is named, in order, with its interval.
    assert sentence.index("(w=4") < sentence.index("(w=16") < sentence.index("(w=64")
    assert "width 4, 16, 64 within it" not in sentence  # 0.3 points is above a 0.2 floor
    assert "above it" in sentence


def test_the_verdict_on_clearly_shrinking_spreads_says_so():
    tests, sentence = _verdict(_sets((0.02, 0.008, 0.002)))
    assert tests["brown_forsythe_p"] < 0.001 and tests["trend_slope"] < 0
    assert "shrinks with width" in sentence and "Fligner–Killeen p < 0.001" in sentence
    assert "width 64 within it" in sentence  # 0.2 points is the floor itself
    tests, sentence = _verdict(_sets((0.002, 0.008, 0.02)))
    assert "grows with width" in sentence


def test_a_trend_that_does_not_hold_at_every_step_says_so():
    # Widths 4 → 16 shrink the spread eightfold, 16 → 64 widen it again: the trend over
    # all points is downward, but the sentence must not read as a steady fall.
    tests, sentence = _verdict(_sets((0.03, 0.004, 0.012)))
    assert tests["trend_slope"] < 0 and tests["trend_p"] < 0.05
    assert "shrinks with width overall but not at every step" in sentence
    first, second = tests["steps"]
    assert first["ratio"] < 0.2 and first["p"] < 0.001 and second["ratio"] > 2
    assert "w=16 → 64: sd ×" in sentence


def test_one_outlier_is_named_and_does_not_make_a_trend():
    tests, sentence = _verdict(_sets((0.003, 0.003, 0.003), outlier=16))
    # The sd of width 16 is inflated tenfold, but the robust tests see no difference.
    assert tests["brown_forsythe_p"] > 0.05 and tests["fligner_p"] > 0.05
    assert "does not differ" in sentence
    assert "w=16 seed 5 at 60.00" in sentence


def test_many_outliers_are_named_most_extreme_first_and_counted():
    groups = _sets((0.003, 0.003, 0.003))
    for i in range(8):
        groups[64][i] = 0.8 - 0.01 * i  # seed 7 the lowest
    _, sentence = _verdict(groups)
    assert sentence.index("w=64 seed 7 at 73.00") < sentence.index("w=64 seed 6 at 74.00")
    assert sentence.endswith("and 3 more.") and "seed 2 at" not in sentence


def test_the_verdict_with_one_width_compares_nothing():
    tests, sentence = _verdict({16: list(np.linspace(0.89, 0.91, 8))})
    assert tests["brown_forsythe_p"] is None
    assert "can be measured but not compared" in sentence
