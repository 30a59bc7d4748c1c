"""How much the quality of a width's endpoints spreads, and whether the spread differs
between widths: the statistics a claim of "roughly equal quality" needs.

Per width (:func:`spread`): the standard deviation with its χ² interval (exact for
normal data) and Bonett's (2006) interval (robust to the tails), the MAD and the IQR,
and the range as a plain number: an interval for a range or an extreme from a handful
of seeds cannot exceed the sample's own, so none is given.

The floor (:func:`noise_floor`): every network is scored on the same test examples,
so the spread that the choice of test set alone produces is that of each network's
correct-or-not (or cost) per example about the mean of all networks on that example,
over √n. It is smaller than the binomial √(p(1−p)/n) of a network scored on a test set
of its own, which is given beside it.

Across widths (:func:`across`): Brown–Forsythe (Levene about medians) and
Fligner–Killeen for equal spread, and a trend: the absolute deviations from each
width's median regressed on log₂ width (its slope is the change per doubling, with a
t interval and p-value); both use every point, so they hold with two widths.

:func:`verdict` turns them into one sentence that states only what the tests show.
"""

import itertools
import math

import numpy as np
from scipy import stats

# Bonett's interval needs a trimmed mean with 1/(2√(n−4)) trimmed from each end.
BONETT_MIN = 5
# A point whose robust z, 0.6745·(x − median)/MAD, exceeds this is an outlier
# (Iglewicz and Hoaglin 1993).
OUTLIER_Z = 3.5
# The verdict names at most this many outliers.
SHOWN_OUTLIERS = 5


def spread(values, *, alpha: float = 0.05) -> dict:
    """The spread of ``values`` (None left out): n, mean, median, sd with its χ² and
    Bonett intervals at confidence 1 − ``alpha``, MAD (raw, not scaled to σ), IQR,
    min, max and range."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], float)
    keys = ("mean", "median", "sd", "sd_low", "sd_high", "sd_bonett_low", "sd_bonett_high",
            "mad", "iqr", "min", "max", "range")  # fmt: skip
    found = {"n": int(v.size), **dict.fromkeys(keys)}
    if not v.size:
        return found
    found.update(mean=float(v.mean()), median=float(np.median(v)), min=float(v.min()),
                 max=float(v.max()), range=float(np.ptp(v)),
                 mad=float(stats.median_abs_deviation(v)), iqr=float(stats.iqr(v)))  # fmt: skip
    if v.size < 2:
        return found
    n, sd = v.size, float(v.std(ddof=1))
    found["sd"] = sd
    df = n - 1
    found["sd_low"] = sd * math.sqrt(df / stats.chi2.ppf(1 - alpha / 2, df))
    found["sd_high"] = sd * math.sqrt(df / stats.chi2.ppf(alpha / 2, df))
    if n >= BONETT_MIN and sd > 0:
        found["sd_bonett_low"], found["sd_bonett_high"] = bonett(v, alpha=alpha)
    return found


def bonett(v: np.ndarray, *, alpha: float) -> tuple[float, float]:
    """Bonett's (2006) interval for the standard deviation of ``v`` (n ≥ 5): a
    kurtosis estimated about a trimmed mean widens it where the tails are heavy."""
    n = v.size
    z = stats.norm.ppf(1 - alpha / 2)
    trimmed = stats.trim_mean(v, 1 / (2 * math.sqrt(n - 4)))
    kurtosis = n * np.sum((v - trimmed) ** 4) / np.sum((v - v.mean()) ** 2) ** 2
    c = n / (n - z)
    se = c * math.sqrt(max(kurtosis - (n - 3) / n, 0.0) / (n - 1))
    variance = c * v.var(ddof=1)
    return (math.sqrt(variance * math.exp(-z * se)), math.sqrt(variance * math.exp(z * se)))


def noise_floor(per_example) -> dict:
    """The spread test-set sampling alone gives networks scored on one test set.

    Args:
      per_example: [networks, examples], each network's score per test example
        (1/0 for correct, or its cost there).

    Returns:
      ``floor``: the standard deviation across networks that the choice of test
      examples produces, √(mean over networks of the variance over examples of the
      network's score minus the mean of all networks' there, over n); ``binomial``: the
      standard error of one network's mean score on a test set of its own,
      √(var/n) with the variance over examples (for 0/1 scores, p(1−p)).
    """
    s = np.asarray(per_example, float)
    if s.ndim != 2 or s.shape[0] < 2 or s.shape[1] < 2:
        return {"floor": None, "binomial": None, "examples": int(s.shape[-1]) if s.ndim else 0}
    n = s.shape[1]
    centred = s - s.mean(axis=0, keepdims=True)
    # Over networks, the unbiased share: k networks centred on their own mean lose 1/k.
    k = s.shape[0]
    paired = float(np.mean(np.var(centred, axis=1, ddof=1))) * k / (k - 1)
    return {"floor": math.sqrt(paired / n),
            "binomial": math.sqrt(float(np.mean(np.var(s, axis=1, ddof=1))) / n),
            "examples": n}  # fmt: skip


def beyond_floor(sd: float | None, n: int, floor: float | None) -> dict:
    """Whether a spread ``sd`` of ``n`` points exceeds the ``floor``: the one-sided χ²
    test of σ = floor against σ > floor, and the spread in excess, √(sd² − floor²)."""
    if sd is None or floor is None or n < 2 or floor <= 0:
        return {"floor_p": None, "excess": None}
    statistic = (n - 1) * sd**2 / floor**2
    return {"floor_p": float(stats.chi2.sf(statistic, n - 1)),
            "excess": math.sqrt(max(sd**2 - floor**2, 0.0))}  # fmt: skip


def across(groups: dict[int, list[float]], *, alpha: float = 0.05) -> dict:
    """Tests of equal spread across widths (``groups``: width → values), each width
    with at least 3 values; None where fewer than two widths have that many."""
    groups = {w: np.asarray([x for x in v if x is not None], float) for w, v in groups.items()}
    groups = {w: v for w, v in sorted(groups.items()) if v.size >= 3}
    empty = dict.fromkeys(("brown_forsythe", "brown_forsythe_p", "fligner", "fligner_p",
                           "trend_slope", "trend_low", "trend_high", "trend_p",
                           "steps"))  # fmt: skip
    if len(groups) < 2:
        return {"widths": list(groups), **empty}
    samples = list(groups.values())
    if all(np.ptp(v) == 0 for v in samples):
        return {"widths": list(groups), **empty}
    bf = stats.levene(*samples, center="median")
    fk = stats.fligner(*samples, center="median")
    x = np.concatenate([np.full(v.size, math.log2(w)) for w, v in groups.items()])
    y = np.concatenate([np.abs(v - np.median(v)) for v in samples])
    fit = stats.linregress(x, y)
    half = stats.t.ppf(1 - alpha / 2, x.size - 2) * fit.stderr
    widths = list(groups)
    steps = []
    for a, b in itertools.pairwise(widths):
        sd_a, sd_b = np.std(groups[a], ddof=1), np.std(groups[b], ddof=1)
        pair = stats.levene(groups[a], groups[b], center="median")
        steps.append({"from": a, "to": b, "ratio": float(sd_b / sd_a) if sd_a else None,
                      "p": float(pair.pvalue)})  # fmt: skip
    return {"widths": widths, "steps": steps,
            "brown_forsythe": float(bf.statistic), "brown_forsythe_p": float(bf.pvalue),
            "fligner": float(fk.statistic), "fligner_p": float(fk.pvalue),
            "trend_slope": float(fit.slope), "trend_low": float(fit.slope - half),
            "trend_high": float(fit.slope + half), "trend_p": float(fit.pvalue)}  # fmt: skip


def outliers(values, labels) -> list[tuple]:
    """``(label, value, robust z)`` of each value whose robust z exceeds OUTLIER_Z."""
    v = np.asarray(values, float)
    mad = stats.median_abs_deviation(v) if v.size else 0.0
    if v.size < 3 or mad == 0:
        return []
    z = 0.6745 * (v - np.median(v)) / mad
    return [(label, float(x), float(zi)) for label, x, zi in zip(labels, v, z, strict=True)
            if abs(zi) > OUTLIER_Z]  # fmt: skip


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}" if p < 0.01 else f"p = {p:.2f}"


def verdict(per_width: list[dict], tests: dict, *, alpha: float, points: str, unit=100.0,
            unit_name="points") -> str:  # fmt: skip
    """One sentence on whether the spread of ``points`` differs between widths.

    Args:
      per_width: per width, ``width`` and the :func:`spread` fields with ``floor``,
        ``floor_p``, ``excess`` (:func:`beyond_floor`) and ``outliers``
        (:func:`outliers`, labelled by seed).
      tests: :func:`across` of the same values.
      alpha: the tests' significance level.
      points: what the values are, e.g. "the SGD endpoints' test accuracy".
      unit, unit_name: values are shown × ``unit`` in ``unit_name``.

    It names the tests with their p-values, the standard deviation of every width in
    order (with its χ² interval), the trend per doubling and the noise floor, and
    claims a difference or a trend only where a test shows it at ``alpha``.
    """
    show = lambda x: f"{unit * x:.2f}"
    judged = [w for w in per_width if w["n"] >= 2 and w["sd"] is not None]
    if not judged:
        return f"Too few points to measure the spread of {points}."
    sds = " → ".join(
        f"{show(w['sd'])} [{show(w['sd_low'])}–{show(w['sd_high'])}] (w={w['width']}, n={w['n']})"
        for w in judged
    )
    if tests.get("brown_forsythe_p") is None:
        head = (f"The spread of {points} can be measured but not compared: fewer than two "
                f"widths have 3 points or more (sd {sds} {unit_name})")  # fmt: skip
    else:
        bf, fk, tp = tests["brown_forsythe_p"], tests["fligner_p"], tests["trend_p"]
        trend = (f"trend {unit * tests['trend_slope']:+.2f} {unit_name} of absolute deviation "
                 f"per doubling of width [{show(tests['trend_low'])}, "
                 f"{show(tests['trend_high'])}], {_p(tp)}")  # fmt: skip
        named = f"Brown–Forsythe {_p(bf)}, Fligner–Killeen {_p(fk)}; {trend}"
        if bf >= alpha and tp >= alpha:
            head = (f"The spread of {points} does not differ between widths beyond chance "
                    f"({named}; sd {sds} {unit_name})")  # fmt: skip
        elif tp < alpha:
            down = tests["trend_slope"] < 0
            way = "shrinks" if down else "grows"
            steps = tests.get("steps") or []
            against = [st for st in steps if st["ratio"] is not None
                       and (st["ratio"] > 1 if down else st["ratio"] < 1)]  # fmt: skip
            if against:
                way += " with width overall but not at every step"
            else:
                way += " with width"
            agree = "" if bf < alpha else ", though Brown–Forsythe alone does not reach it"
            head = f"The spread of {points} {way} ({named}{agree}; sd {sds} {unit_name})"
        else:
            head = (f"The spread of {points} differs between widths but not as a trend in "
                    f"width ({named}; sd {sds} {unit_name})")  # fmt: skip
        steps = tests.get("steps") or []
        if len(steps) > 1:
            head += "; step by step (Brown–Forsythe): " + "; ".join(
                f"w={st['from']} → {st['to']}: sd ×{st['ratio']:.2g}, {_p(st['p'])}"
                for st in steps if st["ratio"] is not None
            )  # fmt: skip
    floors = [w for w in judged if w.get("floor") is not None]
    tail = ""
    if floors:
        within = [w["width"] for w in floors if w["floor_p"] >= alpha]
        above = [w for w in floors if w["floor_p"] < alpha]
        low, high = min(w["floor"] for w in floors), max(w["floor"] for w in floors)
        floor = show(low) if show(low) == show(high) else f"{show(low)}–{show(high)}"
        parts = []
        if within:
            parts.append(f"width {', '.join(map(str, within))} within it")
        if above:
            parts.append("; ".join(
                f"width {w['width']} {show(w['excess'])} {unit_name} above it ({_p(w['floor_p'])})"
                for w in above))  # fmt: skip
        tail = (f". Test-set sampling alone gives a spread of {floor} {unit_name} "
                f"(the noise floor): {'; '.join(parts)}")  # fmt: skip
    odd = [(w["width"], o) for w in judged for o in w.get("outliers") or []]
    if odd:
        # The most extreme first, at most SHOWN_OUTLIERS of them (the report lists all).
        odd.sort(key=lambda o: -abs(o[1][2]))
        tail += ". Outliers (robust z beyond 3.5): " + ", ".join(
            f"w={width} seed {seed} at {show(value)} (z = {z:+.1f})"
            for width, (seed, value, z) in odd[:SHOWN_OUTLIERS]
        )
        if len(odd) > SHOWN_OUTLIERS:
            tail += f" and {len(odd) - SHOWN_OUTLIERS} more"
    return head + tail + "."
