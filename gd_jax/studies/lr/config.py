"""What the learning-rate study sweeps and measures, beside the shared TrainConfig."""

import dataclasses
import math
import re

import numpy as np

from gd_jax.config import option
from gd_jax.errors import GdJaxError


def parse_learning_rates(text: str) -> tuple[float, ...]:
    """``"0.1,0.3,1,3"`` or ``"logspace:0.01:30:13"`` (13 values, log-spaced, ends included)."""
    text = text.strip()
    match = re.fullmatch(r"logspace:([^:]+):([^:]+):(\d+)", text)
    try:
        if match:
            low, high, count = float(match[1]), float(match[2]), int(match[3])
            if not (0 < low < high < math.inf and count >= 2):
                raise ValueError
            with np.errstate(over="ignore"):  # ends near the float limit: caught below
                values = tuple(float(f"{v:.4g}") for v in np.geomspace(low, high, count))
            if not all(math.isfinite(v) for v in values):
                raise ValueError
            return values
        values = tuple(float(v) for v in text.split(","))
        if not values or not all(math.isfinite(v) and v > 0 for v in values):
            raise ValueError
        return values
    except ValueError:
        raise GdJaxError(
            f"--learning_rates={text!r} is not a list of positive learning rates. Give "
            "values separated by commas (--learning_rates=0.1,0.3,1,3) or a log range "
            "low:high:count (--learning_rates=logspace:0.01:30:13).",
            field="learning_rates",
        ) from None


def show_floats(values: tuple[float, ...]) -> str:
    """Learning rates as ``--learning_rates`` spells a list of them."""
    return ",".join(f"{v:g}" for v in values)


@dataclasses.dataclass(frozen=True)
class LrConfig:
    """The η grid, the seeds and the measurements of the learning-rate study."""

    learning_rates: tuple[float, ...] = option(
        parse_learning_rates("logspace:0.01:100:13"),
        "η values: a list (0.1,0.3,1,3) or a log range low:high:count (logspace:0.01:30:13).",
        parse=parse_learning_rates,
        show=show_floats,
    )
    seeds: int = option(3, "Initialisations per η (seeds --seed, --seed+1, ...).")
    shared_order: bool = option(True, "All networks see the same mini-batches (those of --seed).")
    chunk_size: int = option(64, "Networks per compiled program; each chunk is saved.")
    full_batch_steps: int = option(500, "Steps of the full-batch trace (0: no trace).")
    track_sharpness_every: int = option(25, "Measure λ_max every K full-batch steps (0: never).")
    sharpness_examples: int = option(
        5000, "Training examples (the first N) the Hessian is taken on."
    )
    lanczos_iters: int = option(20, "Lanczos steps per estimate of λ_max.")
    first_order_check: bool = option(
        True, "Record measured ΔC against its predictions in the trace."
    )
    range_test: bool = option(True, "Run the learning-rate range test.")
    range_steps: int = option(500, "Steps of the range test.")
    range_min: float = option(1e-4, "First η of the range test.")
    range_max: float = option(100.0, "Last η of the range test.")

    def __post_init__(self):
        def fail(message):
            raise GdJaxError(message)

        etas = self.learning_rates
        if not etas or not all(eta > 0 and math.isfinite(eta) for eta in etas):
            fail(f"--learning_rates={show_floats(etas)} must all be positive finite numbers.")
        if len(set(etas)) < len(etas):
            twice = sorted({eta for eta in etas if etas.count(eta) > 1})
            fail(
                f"--learning_rates={show_floats(etas)} names {show_floats(tuple(twice))} more "
                "than once; each η is one set of networks, so give each once."
            )
        if self.seeds < 1:
            fail(f"--seeds={self.seeds} must be at least 1 (initialisations per η).")
        if self.chunk_size < 1:
            fail(f"--chunk_size={self.chunk_size} must be at least 1 network.")
        if self.sharpness_examples < 1:
            fail(
                f"--sharpness_examples={self.sharpness_examples} must be at least 1: the "
                "Hessian is taken on the first N training examples."
            )
        if self.lanczos_iters < 2:
            fail(f"--lanczos_iters={self.lanczos_iters} must be at least 2 Lanczos steps.")
        if self.track_sharpness_every < 0 or self.full_batch_steps < 0:
            fail("--track_sharpness_every and --full_batch_steps must be zero or more.")
        if self.tracing and not 0 < self.sample_every <= self.full_batch_steps:
            fail(
                f"--track_sharpness_every={self.track_sharpness_every} must lie between 1 "
                f"and --full_batch_steps={self.full_batch_steps}."
            )
        ends = (self.range_min, self.range_max)
        if self.range_test and not (
            0 < self.range_min < self.range_max
            and all(math.isfinite(v) for v in ends)
            and self.range_steps > 1
        ):
            fail(
                f"--range_min={self.range_min} and --range_max={self.range_max} must be "
                f"finite with 0 < min < max, and --range_steps={self.range_steps} must "
                "exceed 1."
            )

    @property
    def tracing(self) -> bool:
        """Whether the full-batch trace runs at all."""
        return self.full_batch_steps > 0 and (
            self.track_sharpness_every > 0 or self.first_order_check
        )

    @property
    def sample_every(self) -> int:
        """Steps between two samples of the trace."""
        return self.track_sharpness_every or max(1, self.full_batch_steps // 20)

    def flags(self) -> dict:
        """The config as JSON-friendly flag values."""
        values = dataclasses.asdict(self)
        values["learning_rates"] = list(self.learning_rates)
        return values
