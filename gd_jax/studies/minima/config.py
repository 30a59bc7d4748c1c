"""What the local-minima study trains and measures, beside the shared TrainConfig."""

import dataclasses
import math

from gd_jax.config import option, parse_int_list, show_ints
from gd_jax.errors import GdJaxError


def parse_widths(text: str) -> tuple[int, ...]:
    """``"4,16,64"`` into widths; each replaces every hidden layer's size."""
    hint = (
        "e.g. --widths=4,16,64; each replaces the size of every hidden layer of --layers "
        "(16 gives the seed's 784-16-16-10)."
    )
    return parse_int_list(text, name="widths", hint=hint)


@dataclasses.dataclass(frozen=True)
class MinimaConfig:
    """The widths, seeds and measurements of the local-minima study."""

    widths: tuple[int, ...] = option(
        (4, 16, 64),
        "Hidden widths; each replaces every hidden layer's size.",
        parse=parse_widths,
        show=show_ints,
    )
    seeds: int = option(8, "Initialisations per width (seeds --seed, --seed+1, ...).")
    grad_tol: float = option(2e-3, "Stop a network once ‖∇C‖ on the training set is below this.")
    eval_every: int = option(1, "Epochs between measurements (and gradient checks).")
    lanczos_iters: int = option(
        40, "Lanczos steps per estimate of λ_min and λ_max (λ_min needs many)."
    )
    negative_tol: float = option(1e-2, "A saddle has λ_min below −negative_tol · λ_max.")
    dense_max_params: int = option(
        3000, "Count negative eigenvalues of the dense Hessian up to this size."
    )
    polish_steps: int = option(
        500, "L-BFGS steps (full batch) that refine each SGD endpoint to a critical point."
    )
    polish_tol: float = option(
        1e-3, "A polished point is critical once ‖∇C‖ on the training set is below this."
    )
    polish_batch: int = option(
        1,
        "Networks polished together (vmapped). A vmapped L-BFGS step lasts as long as "
        "its slowest network's line search, and every network runs until the last is "
        "done: one at a time was 1.3× (width 64) to 12× (width 128) faster on a CPU.",
    )
    saturation_threshold: float = option(
        0.01, "A unit's response counts as saturated where its act'(z) is below this."
    )
    flat_ratio: float = option(
        0.1,
        "A polished point is saturated, not a minimum, if polishing cut its λ_max below "
        "this fraction while more of its units saturated.",
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
    bootstrap: int = option(2000, "Bootstrap resamples of the seeds for the intervals.")
    equal_tol: float = option(
        0.02,
        "Minima are of roughly equal quality where their test accuracies span at most "
        "this (0.02: 2 points).",
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
            (self.polish_batch >= 1, f"--polish_batch={self.polish_batch} (at least 1)"),
            (self.polish_steps >= 0, f"--polish_steps={self.polish_steps} (0 or more)"),
            (0 < self.polish_tol < finite_max, f"--polish_tol={self.polish_tol} (positive)"),
            (
                0 < self.saturation_threshold <= 0.25,
                f"--saturation_threshold={self.saturation_threshold} (in (0, 0.25])",
            ),
            (0 < self.flat_ratio <= 1, f"--flat_ratio={self.flat_ratio} (in (0, 1])"),
            (self.spectrum_probes >= 1, f"--spectrum_probes={self.spectrum_probes} (≥ 1)"),
            (self.num_eigs >= 1, f"--num_eigs={self.num_eigs} (at least 1)"),
            (self.curve_pairs >= 0, f"--curve_pairs={self.curve_pairs} (0 or more)"),
            (self.curve_steps >= 1, f"--curve_steps={self.curve_steps} (at least 1)"),
            (
                0 < self.curve_learning_rate < finite_max,
                f"--curve_learning_rate={self.curve_learning_rate} (positive)",
            ),
            (self.bootstrap >= 1, f"--bootstrap={self.bootstrap} (at least 1)"),
            (0 <= self.equal_tol <= 1, f"--equal_tol={self.equal_tol} (in [0, 1])"),
        ]
        for ok, what in checks:
            if not ok:
                raise GdJaxError(f"{what} cannot be used; see --help for what it takes.")

    def flags(self) -> dict:
        """The config as JSON-friendly flag values."""
        values = dataclasses.asdict(self)
        values["widths"] = list(self.widths)
        return values
