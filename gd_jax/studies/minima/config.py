"""What the local-minima study trains and measures, beside the shared TrainConfig."""

import dataclasses
import math
from typing import TYPE_CHECKING, NamedTuple

from absl import logging

from gd_jax import memory
from gd_jax.config import TrainConfig, option, parse_int_list, show_ints
from gd_jax.errors import GdJaxError
from gd_jax.studies.minima import newton

if TYPE_CHECKING:
    from gd_jax import data


def parse_widths(text: str) -> tuple[int, ...]:
    """``"4,16,64"`` into widths; each replaces every hidden layer's size."""
    hint = (
        "e.g. --widths=4,16,64; each replaces the size of every hidden layer of --layers "
        "(16 gives the seed's 784-16-16-10)."
    )
    return parse_int_list(text, name="widths", hint=hint)


# What --vary lets the seeds change: init keys, data keys, or both.
VARY = ("both", "init", "order")


@dataclasses.dataclass(frozen=True)
class MinimaConfig:
    """The widths, seeds and measurements of the local-minima study."""

    widths: tuple[int, ...] = option(
        (4, 16, 64),
        "Hidden widths; each replaces every hidden layer's size.",
        parse=parse_widths,
        show=show_ints,
    )
    seeds: int = option(32, "Networks per width (seeds --seed, --seed+1, ...).")
    vary: str = option(
        "both",
        "What the seeds vary: both (initialisation and data order), init (one data order, "
        "that of --seed) or order (one initialisation, that of --seed).",
        choices=VARY,
    )
    grad_tol: float = option(2e-3, "Stop a network once ‖∇C‖ on the training set is below this.")
    eval_every: int = option(1, "Epochs between measurements (and gradient checks).")
    lanczos_iters: int = option(
        40, "Lanczos steps per estimate of λ_min and λ_max (λ_min needs many)."
    )
    negative_tol: float = option(1e-2, "A saddle has λ_min below −negative_tol · λ_max.")
    dense_max_params: int = option(
        4000,
        "Compute every eigenvalue of the dense float64 Hessian of a polished point with up to "
        "this many parameters (784-4-4-10 has 3,210), an independent check of its class.",
    )
    polish_steps: int = option(
        500,
        "L-BFGS steps (full batch, float64) that refine each SGD endpoint, before Newton-MR.",
    )
    polish_every: int = option(100, "L-BFGS steps between measurements of the polish.")
    newton_steps: int = option(
        20, "Newton-MR steps after L-BFGS: they find critical points of any index."
    )
    newton_iters: int = option(
        50, "Lanczos steps on the gradient per measurement (Newton step, decrement, null share)."
    )
    critical_grad: float = option(
        1e-4, "A critical point has ‖∇C‖·‖θ‖/C below this (the relative gradient)."
    )
    critical_step: float = option(
        1e-4, "A critical point has a Newton step ‖H⁺∇C‖ below this share of ‖θ‖."
    )
    critical_decrement: float = option(
        1e-8, "A critical point has a Newton decrement ½|∇Cᵀ H⁺ ∇C| below this share of C."
    )
    critical_curvature: float = option(
        1e-4,
        "A critical point is classed minimum or saddle only if ½·max|λ|·max(‖θ‖, 1)²/C (the "
        "cost change its stiffest direction allows over a step of ‖θ‖, as a share of C) is at "
        "least this; below it the Hessian is as negligible as the gradient (a saturated "
        "plateau) and the point's class cannot be read.",
    )
    null_tol: float = option(
        1e-6, "Hessian directions with |λ| below this share of λ_max count as its null space."
    )
    flat_share: float = option(
        0.5, "A point is gradient-flat where this share of ‖∇C‖² lies in the null space."
    )
    saturation_threshold: float = option(
        0.01, "A unit's response counts as saturated where its act'(z) is below this."
    )
    spectrum_probes: int = option(
        2, "Random starts of Lanczos per polished point, for the spectral density."
    )
    num_eigs: int = option(5, "Largest and smallest Hessian eigenvalues recorded per point.")
    path_points: int = option(25, "Points along each path.")
    max_pairs: int = option(28, "Pairs of endpoints compared per width.")
    curve_pairs: int = option(2, "Pairs per width joined by a trained Bézier curve (0: none).")
    curve_steps: int = option(300, "Adam steps that train each curve's bend.")
    curve_learning_rate: float = option(0.01, "Adam's learning rate for the curves.")
    alpha: float = option(
        0.05, "Significance level of the tests of spread, and 1 − the intervals' confidence."
    )
    escape_points: int = option(
        2, "The worst points of each width trained on and perturbed, to see if they escape."
    )
    escape_epochs: int = option(20, "Epochs of SGD in each escape attempt.")
    escape_noise: float = option(
        0.1, "The perturbation of an escape attempt: Gaussian, this share of each layer's norm."
    )

    def __post_init__(self):
        finite = math.isfinite
        finite_max = math.inf  # comparisons with it also reject NaN
        checks = [
            (self.widths and all(w > 0 for w in self.widths), f"--widths={self.widths}"),
            (
                len(set(self.widths)) == len(self.widths),
                f"--widths={show_ints(self.widths)} (each width once)",
            ),
            (self.seeds >= 2, f"--seeds={self.seeds} (at least 2, to compare endpoints)"),
            (self.grad_tol > 0 and finite(self.grad_tol), f"--grad_tol={self.grad_tol} (positive)"),
            (
                self.negative_tol >= 0 and finite(self.negative_tol),
                f"--negative_tol={self.negative_tol} (zero or more, finite)",
            ),
            (self.dense_max_params >= 0, f"--dense_max_params={self.dense_max_params} (≥ 0)"),
            (self.eval_every >= 1, f"--eval_every={self.eval_every} (at least 1)"),
            (self.lanczos_iters >= 2, f"--lanczos_iters={self.lanczos_iters} (at least 2)"),
            (self.path_points >= 3, f"--path_points={self.path_points} (at least 3)"),
            (self.max_pairs >= 1, f"--max_pairs={self.max_pairs} (at least 1)"),
            (self.polish_steps >= 0, f"--polish_steps={self.polish_steps} (0 or more)"),
            (self.polish_every >= 1, f"--polish_every={self.polish_every} (at least 1)"),
            (self.newton_steps >= 0, f"--newton_steps={self.newton_steps} (0 or more)"),
            (self.newton_iters >= 2, f"--newton_iters={self.newton_iters} (at least 2)"),
            (
                0 < self.critical_grad < finite_max,
                f"--critical_grad={self.critical_grad} (positive)",
            ),
            (
                0 < self.critical_step < finite_max,
                f"--critical_step={self.critical_step} (positive)",
            ),
            (
                0 < self.critical_decrement < finite_max,
                f"--critical_decrement={self.critical_decrement} (positive)",
            ),
            (
                0 <= self.critical_curvature < finite_max,
                f"--critical_curvature={self.critical_curvature} (zero or more, finite)",
            ),
            (0 < self.null_tol < 1, f"--null_tol={self.null_tol} (in (0, 1))"),
            (0 < self.flat_share <= 1, f"--flat_share={self.flat_share} (in (0, 1])"),
            (
                0 < self.saturation_threshold <= 0.25,
                f"--saturation_threshold={self.saturation_threshold} (in (0, 0.25])",
            ),
            (self.spectrum_probes >= 1, f"--spectrum_probes={self.spectrum_probes} (≥ 1)"),
            (self.num_eigs >= 1, f"--num_eigs={self.num_eigs} (at least 1)"),
            (self.curve_pairs >= 0, f"--curve_pairs={self.curve_pairs} (0 or more)"),
            (self.curve_steps >= 1, f"--curve_steps={self.curve_steps} (at least 1)"),
            (
                0 < self.curve_learning_rate < finite_max,
                f"--curve_learning_rate={self.curve_learning_rate} (positive)",
            ),
            (0 < self.alpha < 0.5, f"--alpha={self.alpha} (in (0, 0.5))"),
            (self.escape_points >= 0, f"--escape_points={self.escape_points} (0 or more)"),
            (self.escape_epochs >= 1, f"--escape_epochs={self.escape_epochs} (at least 1)"),
            (
                0 <= self.escape_noise < finite_max,
                f"--escape_noise={self.escape_noise} (0 or more, finite)",
            ),
        ]
        for ok, what in checks:
            if not ok:
                raise GdJaxError(f"{what} cannot be used; see --help for what it takes.")

    def criteria(self) -> newton.Criteria:
        """What makes a polished point critical (``newton.Criteria``)."""
        return newton.Criteria(
            self.critical_grad, self.critical_step, self.critical_decrement, self.null_tol,
            self.flat_share, self.critical_curvature,
        )  # fmt: skip

    def budget(self) -> newton.Budget:
        """The polish's steps (``newton.Budget``)."""
        return newton.Budget(
            self.polish_steps, self.newton_steps, self.polish_every, self.newton_iters
        )

    def flags(self, *, stage: tuple[str, ...] | None = None) -> dict:
        """The config as JSON-friendly flag values: all, or those that decide ``stage``
        (``TRAINING`` or ``POLISH``; a stage's key holds only what decides it, so that
        a new analysis does not redo the training and the polish)."""
        values = dataclasses.asdict(self)
        values["widths"] = list(self.widths)
        return values if stage is None else {k: values[k] for k in stage}


# The study's flags that decide a width's SGD training, and its float64 polish (beside
# every flag of the TrainConfig, the width and the seeds).
TRAINING = ("grad_tol", "eval_every", "vary")
POLISH = (
    *TRAINING, "lanczos_iters", "negative_tol", "polish_steps", "polish_every",
    "newton_steps", "newton_iters", "critical_grad", "critical_step", "critical_decrement",
    "critical_curvature", "null_tol", "flat_share", "saturation_threshold",
)  # fmt: skip


class StudyCost(NamedTuple):
    """What a local-minima study holds in memory, from its flags and the data's shape.

    Attributes:
      networks: networks trained in all, ``len(widths) × seeds``.
      params: parameters of one network, per width (in the order of ``widths``).
      widest: the largest width, whose networks take the most memory.
      stacked_gib: GiB per device the parameters of that width's networks take: a width's
        seeds are trained as one program, so they are all held at once.
      training_gib: GiB per device that training them together takes
        (``memory.network_bytes`` on a mini-batch, each network); this part is not
        worked on in chunks.
    """

    networks: int
    params: tuple[int, ...]
    widest: int
    stacked_gib: float
    training_gib: float


def study_cost(
    config: TrainConfig,
    study: MinimaConfig,
    *,
    num_inputs: int,
    num_classes: int,
    num_train: int,
    devices: int = 1,
) -> StudyCost:
    """The memory a study will take (see :class:`StudyCost`), before anything is built.

    Per device, a width of P parameters per network and S seeds spread over D devices
    holds ⌈S/D⌉·4·P bytes of parameters, and trains them on B examples at a time (B the
    mini-batch, or the training set for ``batch_size=0``) in ⌈S/D⌉ · network_bytes.

    Args:
      config: the model, data and training.
      study: the widths and seeds.
      num_inputs, num_classes, num_train: the data's input size, classes and training
        examples.
      devices: the devices the networks of a width are sharded over.
    """
    per_device = -(-study.seeds // devices)
    batch = config.batch_size or num_train
    models = [config.model_config(num_inputs, num_classes, width=w, train_examples=num_train)
              for w in study.widths]  # fmt: skip
    widest = models[study.widths.index(max(study.widths))]
    return StudyCost(
        networks=len(study.widths) * study.seeds,
        params=tuple(m.num_params for m in models),
        widest=max(study.widths),
        stacked_gib=per_device * memory.FLOAT_BYTES * widest.num_params / 2**30,
        training_gib=per_device * memory.network_bytes(widest.sizes, batch) / 2**30,
    )


def check_cost(
    config: TrainConfig,
    study: MinimaConfig,
    dataset: "data.Dataset",
    *,
    memory_budget: float = memory.MEMORY_BUDGET_GIB,
    devices: int = 1,
) -> StudyCost:
    """Logs what the study will cost before it starts, or refuses one that cannot fit.

    Args:
      config: the model, data and training.
      study: the widths and seeds.
      dataset: the loaded data (only its shape is read).
      memory_budget: ``--memory_budget``, GiB per device.
      devices: the devices the networks of a width are sharded over.

    Returns:
      The :class:`StudyCost`.

    Raises:
      GdJaxError: a bad ``memory_budget``, or a width whose networks' parameters alone
        exceed it (the least a width's training holds at once).
    """
    budget = memory.check_budget(memory_budget)
    cost = study_cost(
        config, study, num_inputs=dataset.train.x.shape[1], num_classes=dataset.num_classes,
        num_train=len(dataset.train.labels), devices=devices,
    )  # fmt: skip
    widths = show_ints(study.widths)
    if cost.stacked_gib > budget:
        fit = int(budget * 2**30 // (memory.FLOAT_BYTES * max(cost.params))) * devices
        raise GdJaxError(
            f"--seeds={study.seeds} with --widths={widths}: the seeds of a width are "
            f"trained together, and the parameters alone of the widest "
            f"({max(cost.params):,} each) take {cost.stacked_gib:,.1f} GiB per device, more "
            f"than the {budget:g} GiB of --memory_budget. Use at most --seeds={fit} "
            "here, narrower --widths, more --devices, or a larger --memory_budget if the "
            "device has the memory.",
            field="seeds",
        )
    logging.info(
        "Local-minima study: %s widths × %s seeds = %s networks of %s parameters; "
        "training a width takes about %.2f GiB per device (width %d).",
        len(study.widths), f"{study.seeds:,}", f"{cost.networks:,}",
        "/".join(f"{p:,}" for p in cost.params), cost.training_gib, cost.widest,
    )  # fmt: skip
    if cost.training_gib > budget:
        logging.warning(
            "Training the %s networks of width %d together may take %.1f GiB per device, "
            "more than --memory_budget=%g: a width's training is not worked on in chunks. "
            "Fewer --seeds or a smaller --batch_size take less.",
            f"{study.seeds:,}", cost.widest, cost.training_gib, budget,
        )  # fmt: skip
    return cost
