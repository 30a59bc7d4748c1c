"""The local-minima study's records: one per network's endpoint, per pair of
endpoints, per ensemble size. ``io.write_records`` makes them CSV (their fields the
columns, in this order) and the width's analysis stage stores them as JSON."""

import dataclasses

record = dataclasses.dataclass(frozen=True, kw_only=True)


@record
class Point:
    """One network of one width: its SGD endpoint (``sgd_…``) and its polished point,
    each measured in float64, what the polish and its continuation found, and its
    class (``results.csv``)."""

    width: int
    seed: int
    num_params: int
    sgd_train_cost: float | None
    sgd_train_accuracy: float | None
    sgd_test_cost: float | None
    sgd_test_accuracy: float | None
    final_train_cost: float | None
    final_train_accuracy: float | None
    final_test_cost: float | None
    final_test_accuracy: float | None
    sgd_grad_norm: float | None
    sgd_lambda_max: float | None
    sgd_lambda_min: float | None
    sgd_saturation: float | None
    sgd_param_norm: float | None
    # The weight decay's penalty (λ/2n) Σ w² (0 without it): the cost minimised is the
    # training cost (the data's, ``…_train_cost``) plus this.
    sgd_penalty: float | None
    grad_norm: float | None
    lambda_max: float | None
    lambda_min: float | None
    saturation: float | None
    param_norm: float | None
    penalty: float | None
    negative_mass: float
    converged_epoch: int  # when SGD met the gradient tolerance; -1 if never
    epoch_path: str  # what trained it by SGD (gd_jax.fast.paths)
    head: str
    lbfgs_steps: int  # of the float64 polish
    newton_steps: int
    distance_moved: float  # ‖polished − SGD endpoint‖
    # The scale-free stop where the polish ended (``newton.Local``).
    rel_grad: float | None  # ‖∇C‖·‖θ‖ / C
    newton_step: float | None  # ‖H⁺∇C‖ / ‖θ‖
    newton_decrement: float | None  # ½ ∇Cᵀ H⁺ ∇C / C
    null_share: float | None  # share of ‖∇C‖² in the Hessian's near-null space
    critical: bool  # the stop held
    # The continuation with ten times the budget (None where not critical).
    continued_moved: float | None  # ‖θ_end − θ‖ / ‖θ‖
    continued_cost_change: float | None  # (C_end − C) / C
    continued_steps: int
    descent_slope: float | None  # Δ log C / Δ log ‖θ‖, the polish's second half
    learned: bool  # the training cost is below 90% of a constant output's
    classification: str  # classes.CLASSES, from the Lanczos extremes
    top_eigenvalues: str  # the largest Ritz values, space-separated
    bottom_eigenvalues: str
    # The straight path from the initialisation to the polished point.
    init_path_monotone: bool | None = None
    init_path_max_rise: float | None = None
    # On the test set: the classes never predicted (space-separated); on the training
    # set: the share of hidden units dead (act'(z) below --saturation_threshold on every
    # example). Of the SGD endpoint and of the polished point.
    sgd_dead_classes: str | None = None
    dead_classes: str | None = None
    sgd_dead_units: float | None = None
    dead_units: float | None = None
    # Of the polished point's dense Hessian, every eigenvalue computed (where it has at
    # most --dense_max_params rows): those below −negative_tol · max|λ|, the extremes,
    # and the class they give: an independent check of ``classification``.
    negative_eigenvalues: int | None = None
    dense_lambda_min: float | None = None
    dense_lambda_max: float | None = None
    dense_classification: str | None = None


@record
class Pair:
    """Two polished points of one width joined by straight paths and curves, as they
    are, after the one-pass alignment and after weight matching (``pairs.csv``)."""

    width: int
    seed_a: int
    seed_b: int
    class_a: str
    class_b: str
    naive_barrier: float | None
    one_pass_barrier: float | None
    matched_barrier: float | None
    curve_barrier: float | None  # for the first --curve_pairs pairs only
    matched_curve_barrier: float | None
    distance: float
    one_pass_distance: float
    matched_distance: float
    matching_sweeps: int
    naive_test_accuracy_drop: float
    disagreement: float  # share of test examples the two label differently
    # The two costs minimised (C₀ + penalty), and, for two certified minima, what the
    # pair is (``pairs.RELATIONS``): one minimum up to the hidden units' symmetries, or
    # two minima of equal or unequal cost.
    cost_a: float | None = None
    cost_b: float | None = None
    relation: str | None = None


@record
class Ensemble:
    """The first ``k`` networks of a width averaged, against one (``ensemble.csv``)."""

    width: int
    k: int
    ensemble_accuracy: float
    mean_single_accuracy: float


def of(kind, rows: list[dict]) -> list:
    """Records of ``kind`` from the rows of a table (``io.table``), e.g. read back from
    a stage's JSON.

    Raises:
      TypeError: a row lacks a field of ``kind`` or has one it does not.
    """
    return [kind(**row) for row in rows]


@record
class Escape:
    """One of a width's poorest SGD endpoints, trained on and perturbed."""

    width: int
    seed: int
    test_accuracy: float  # the SGD endpoint's
    others_median: float  # of the width's other SGD endpoints
    others_q1: float
    poor: bool  # more than OUTLIER_Z robust sds below the others, or not learned
    trained_on_accuracy: float | None
    perturbed_accuracy: float | None
    dead_classes: str
    trained_on_dead_classes: str
    perturbed_dead_classes: str
    outcome: str  # quality.ESCAPES, or "not poor"
