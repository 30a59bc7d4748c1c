"""What the learning-rate study sweeps and measures, beside the shared TrainConfig."""

import dataclasses
import itertools
import math
import re

import numpy as np

from gd_jax.config import option
from gd_jax.errors import GdJaxError
from gd_jax.report.format import distinct_digits


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
                values = rounded_distinct(np.geomspace(low, high, count))
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


# Significant digits a log range is rounded to, at least: 0.02154, not 0.021544346900318846.
LOGSPACE_DIGITS = 4
# Values a message lists before it says how many more there are.
SHOWN = 5


def rounded_distinct(values, digits: int = LOGSPACE_DIGITS) -> tuple[float, ...]:
    """``values`` rounded to the fewest significant digits, ``digits`` or more, that keep
    distinct values distinct (``distinct_digits``; exact if no fewer do): a fine
    log range such as ``logspace:1:2:2000`` needs 5, where 4 would merge neighbours."""
    return tuple(float(v) for v in distinct_digits(values, digits))


def _spell(value: float) -> str:
    """``3`` for 3.0 and ``0.1`` for 0.1, as ``%g`` does, but every digit where ``%g``'s
    six would round the value."""
    short = f"{value:g}"
    return short if float(short) == value else repr(value)


def show_floats(values: tuple[float, ...]) -> str:
    """Learning rates as ``--learning_rates`` spells a list of them (exactly)."""
    return ",".join(_spell(v) for v in values)


def show_some(values, limit: int = SHOWN) -> str:
    """The first ``limit`` values as :func:`show_floats` spells them, then how many more:
    a message stays a paragraph for a grid of thousands."""
    values = tuple(values)
    more = f" and {len(values) - limit:,} more" if len(values) > limit else ""
    return show_floats(values[:limit]) + more


def repeated(values) -> list[float]:
    """The values that occur more than once, in order, found by sorting (O(n log n))."""
    ordered = sorted(values)
    twice = {a for a, b in itertools.pairwise(ordered) if a == b}
    return sorted(twice)


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
    eval_every: int = option(
        5,
        "Score every split every K epochs (and after the last): a forward pass over the "
        "training, validation and test sets costs about a third of a batch-10 epoch. The "
        "average training cost of every epoch is recorded whatever K.",
    )
    full_batch_steps: int = option(500, "Steps of the full-batch trace (0: no trace).")
    track_sharpness_every: int = option(25, "Measure λ_max every K full-batch steps (0: never).")
    sharpness_examples: int = option(
        5000, "Training examples (the first N) the Hessian is taken on."
    )
    lanczos_iters: int = option(20, "Lanczos steps per estimate of λ_max.")
    first_order_check: bool = option(
        True, "Record measured ΔC against its predictions in the trace."
    )
    rounding_check: bool = option(
        True,
        "Train networks once more from initial weights nudged by 1e-7 (float32 "
        "rounding) and flag those whose final cost the nudge moves by more than 1e-4: "
        "results there depend on rounding (chunk size, device, library version, path).",
    )
    rounding_seeds: str = option(
        "all",
        "Which networks the rounding check trains again: all (every seed of every η) or "
        "first (the first seed of each η, half the cost; the report then says the other "
        "seeds were not checked).",
        choices=("all", "first"),
    )
    range_test: bool = option(True, "Run the learning-rate range test.")
    range_steps: int = option(500, "Steps of the range test.")
    range_min: float = option(1e-4, "First η of the range test.")
    range_max: float = option(100.0, "Last η of the range test.")

    def __post_init__(self):
        def fail(message, field=None):
            raise GdJaxError(message, field=field)

        etas = self.learning_rates
        if not etas or not all(eta > 0 and math.isfinite(eta) for eta in etas):
            bad = [eta for eta in etas if not (eta > 0 and math.isfinite(eta))]
            fail(
                f"--learning_rates holds {show_some(bad) or 'no value'}: every η must be a "
                "positive finite number.",
                "learning_rates",
            )
        twice = repeated(etas)
        once = "each η is one set of networks, so give each once."
        if len(twice) > SHOWN:
            fail(
                f"--learning_rates names {len(twice):,} values more than once "
                f"({show_some(twice)}); {once}",
                "learning_rates",
            )
        if twice:
            fail(f"--learning_rates names {show_floats(twice)} more than once; {once}",
                 "learning_rates")  # fmt: skip
        if self.seeds < 1:
            fail(f"--seeds={self.seeds} must be at least 1 (initialisations per η).")
        if self.chunk_size < 1:
            fail(f"--chunk_size={self.chunk_size} must be at least 1 network.")
        if self.eval_every < 1:
            fail(
                f"--eval_every={self.eval_every} must be at least 1: the epochs between two "
                "scorings of the networks (the last epoch is always scored).",
                "eval_every",
            )
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
