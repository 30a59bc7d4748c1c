"""The local-minima study's analyses on constructed networks with known answers: the
dense-Hessian rule, paths from initialisation, ensembles and disagreement."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import blank, mlp

from gd_jax.studies.minima import analysis, classes, pairs
from gd_jax.studies.minima.records import Point

FACTS = classes.Verdict(critical=True, stable=True, descending=False, flat=False,
                        resolved=True, slope=0.0)  # fmt: skip


def test_the_class_of_a_point_is_read_from_the_extremes_it_is_given():
    kind = lambda facts, lambdas=(-1e-4, 1.0): classes.kind(facts, lambdas, negative_tol=1e-2)
    assert kind(FACTS) == classes.MINIMUM  # λ_min above −1% of λ_max: no clear descent
    assert kind(FACTS, (-0.1, 1.0)) == classes.SADDLE
    assert kind(FACTS, (-0.1, -1.0)) == classes.SADDLE  # |λ_max|: a maximum is no minimum
    # The rule only refines critical points: one that did not stay when continued, or
    # was never critical, is what its trajectory says, whatever the spectrum.
    assert kind(FACTS._replace(stable=False), (-0.5, 1.0)) == classes.UNCONVERGED
    assert kind(FACTS._replace(critical=False, descending=True)) == classes.DESCENDING
    assert kind(FACTS._replace(critical=False, flat=True)) == classes.GRADIENT_FLAT
    # Descending is read before gradient-flat: a saturating slope is both.
    both = FACTS._replace(critical=False, descending=True, flat=True)
    assert kind(both) == classes.DESCENDING


@pytest.mark.parametrize(
    "costs, monotone, rise",
    [([3.0, 2.0, 1.0], True, 0.0),
     ([3.0, 2.0, 2.5, 1.0], False, 0.5),
     ([1.0, 1.0 + 5e-7, 0.5], True, 5e-7),  # a rise below 10⁻⁶ of the start is rounding
     ([1.0, 1.0 + 2e-6, 0.5], False, 2e-6)],
)  # fmt: skip
def test_the_path_from_initialisation(costs, monotone, rise):
    found_monotone, found_rise = analysis.path_rise(np.array(costs))
    assert found_monotone is monotone and found_rise == pytest.approx(rise)


def constant_network(label: int, classes: int = 3, inputs: int = 2, strength: float = 5.0):
    """A network with no hidden layer whose output is the same for every input: high
    for ``label``; its weights are zero, so only the bias speaks."""
    bias = jnp.full((classes,), -strength).at[label].set(strength)
    return [(jnp.zeros((inputs, classes)), bias)]


MODEL = mlp((2, 3))


def test_disagreement_counts_the_examples_two_networks_label_differently():
    x = jnp.ones((6, 2))
    a, b = constant_network(0), constant_network(2)
    assert pairs.disagreement(MODEL, a, b, x) == 1.0
    assert pairs.disagreement(MODEL, a, constant_network(0, strength=1.0), x) == 0.0


def test_an_ensemble_averages_outputs_before_it_votes():
    # Every label is 1. One network is sure of 0; two lean to 1, barely (σ(±0.2)).
    labels = jnp.ones(4, jnp.int32)
    nets = [constant_network(0), constant_network(1, strength=0.2),
            constant_network(1, strength=0.2)]  # fmt: skip
    params = [tuple(jnp.stack(leaves) for leaves in zip(*(n[0] for n in nets), strict=True))]
    rows = pairs.ensemble_rows(MODEL, 7, params, 3, (jnp.ones((4, 2)), labels))
    assert [r.k for r in rows] == [1, 2, 3] and {r.width for r in rows} == {7}
    # Alone: 0%, 100%, 100% right.
    assert [r.mean_single_accuracy for r in rows] == [pytest.approx(2 / 3)] * 3
    # A vote would say 1 for k = 3; the averaged outputs say 0 (0.63 against 0.37).
    assert [r.ensemble_accuracy for r in rows] == [0.0, 0.0, 0.0]


def test_two_minima_are_one_when_matching_brings_them_within_the_continuations_tolerance():
    point = lambda cost, kind=classes.MINIMUM: blank(
        Point, classification=kind, param_norm=10.0, final_train_cost=cost, penalty=0.1
    )
    a = point(0.2)
    assert pairs.minimised(a) == pytest.approx(0.3)  # the cost minimised carries the penalty
    assert pairs.relation(a, point(0.2), matched_distance=0.09) == pairs.SAME  # < 1% of 10
    assert pairs.relation(a, point(0.2), matched_distance=0.5) == pairs.EQUAL
    assert pairs.relation(a, point(0.2 + 0.002), matched_distance=0.5) == pairs.EQUAL  # 0.7%
    assert pairs.relation(a, point(0.21), matched_distance=0.5) == pairs.UNEQUAL  # 3.3%
    assert pairs.relation(a, point(0.2, classes.SADDLE), matched_distance=0.0) is None
