"""The local-minima study's stages: what each computes, from what, into which file.

Per width W:

* ``widths/width_W.npz``: every seed trained by SGD as one program (:func:`train_width`);
* ``widths/polished_W.npz``: the endpoints searched to critical points in float64,
  their verdicts and trajectories (:func:`polish_width`);
* ``widths/analysis_W.json``: the points certified and classified, the paths from
  initialisation, the pairs and the ensembles (:func:`analyse_width`).

Then, once: ``surface.json``, the cost on a random plane through one polished point
of the widest network (:func:`surface`).

Each stage's inputs name what decides its output (the study's flags, the width, the
seeds); what the computation reads but is not identified by travels with
``compare=False`` (``gd_jax.stage``).
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from gd_jax import io, landscape, stage, train, watchdog
from gd_jax.report.format import nan_quiet
from gd_jax.studies.minima import analysis, pairs, polish, records
from gd_jax.studies.minima.context import Width
from gd_jax.studies.minima.polish import Polished
from gd_jax.sweep import engine, results, trainer


@dataclasses.dataclass(frozen=True)
class OfWidth:
    """A stage of one width: the study's flags, the width and its seeds decide it."""

    flags: dict
    width: int
    seeds: np.ndarray
    context: Width = dataclasses.field(compare=False)
    # What earlier stages of the width found (None for the first).
    trained: results.SweepResult | None = dataclasses.field(default=None, compare=False)
    polished: Polished | None = dataclasses.field(default=None, compare=False)


def train_width(inputs: OfWidth) -> results.SweepResult:
    """All seeds of one width, trained by SGD as one program."""
    context, seeds = inputs.context, inputs.seeds
    config, study = context.config, context.study
    networks = varied(seeds, config.learning_rate, vary=study.vary, base=config.seed)

    def progress(epoch, scores, seconds, measure_seconds):
        del measure_seconds
        converged = np.sum(scores["grad_norm"] < study.grad_tol)
        with nan_quiet():
            median = np.nanmedian(scores["train_cost"])
        logging.info(
            "width %d epoch %d/%d: %d networks, %d with ‖∇C‖ < %g, median cost %.4g, %.3f s/epoch",
            inputs.width, epoch, config.epochs, len(seeds), converged, study.grad_tol,
            median, seconds,
        )  # fmt: skip

    options = trainer.FitOptions(
        shared_order=study.vary == "init",
        eval_every=study.eval_every,
        grad_tol=study.grad_tol,
        devices=context.devices,
        memory_budget=context.budget,
    )
    return trainer.fit(
        networks, context.model_config, config, context.train_xy, {"test": context.test_xy},
        options, on_epoch=progress,
    )  # fmt: skip


def varied(seeds, learning_rate: float, *, vary: str, base: int) -> engine.Networks:
    """The networks of ``seeds``, all at ``learning_rate``: with their own
    initialisation and data order (``vary="both"``), their own initialisation and the
    data order of seed ``base`` (``"init"``: the trainer's shared order), or the
    initialisation of ``base`` and their own data order (``"order"``)."""
    seeds = np.asarray(seeds)
    init_seed = np.full(len(seeds), base) if vary == "order" else None
    return engine.Networks(np.full(len(seeds), learning_rate), seeds, init_seed=init_seed)


def params_of(stored: dict) -> list:
    """Stacked layers ``[(w, b), ...]`` from arrays named ``params/I/w`` and ``params/I/b``."""
    layers = sum(1 for k in stored if k.startswith("params/") and k.endswith("/w"))
    return [(jnp.asarray(stored[f"params/{i}/w"]), jnp.asarray(stored[f"params/{i}/b"]))
            for i in range(layers)]  # fmt: skip


def polish_width(inputs: OfWidth) -> Polished:
    """The width's SGD endpoints searched to critical points in float64 on the whole
    training set, and the critical ones continued (``polish``)."""
    context, study, width = inputs.context, inputs.context.study, inputs.width
    found = polish.polish_networks(
        context.model_config, inputs.trained.params, context.train_xy, study,
        key=jax.random.key(context.config.seed),
    )  # fmt: skip
    v = found.verdicts
    logging.info(
        "Width %d: polished in %d–%d steps; %d of %d critical by the scale-free stop, %d "
        "of them stable when continued; %d descending.",
        width, found.steps.min(), found.steps.max(), v["critical"].sum(), len(found.steps),
        v["stable"].sum(), v["descending"].sum(),
    )  # fmt: skip
    return found


def _polished_arrays(found: Polished) -> dict:
    arrays = {"steps": found.steps, "grad_norm": found.grad_norm}
    for i, (w, b) in enumerate(found.params):
        arrays[f"params/{i}/w"], arrays[f"params/{i}/b"] = w, b
    arrays.update({f"verdicts/{k}": v for k, v in found.verdicts.items()})
    arrays.update({f"trajectory/{k}": v for k, v in found.trajectory.items()})
    return arrays


def _polished_of(stored: dict) -> Polished:
    layers = sum(1 for k in stored if k.startswith("params/") and k.endswith("/w"))
    # Kept as numpy arrays: float64, as they were found (jnp would make them float32).
    params = [(np.asarray(stored[f"params/{i}/w"]), np.asarray(stored[f"params/{i}/b"]))
              for i in range(layers)]  # fmt: skip
    verdicts = {k: stored[f"verdicts/{k}"] for k in polish.VERDICTS}
    trajectory = {k: stored[f"trajectory/{k}"] for k in ("phase", *polish.TRAJECTORY)}
    return Polished(params, stored["steps"], stored["grad_norm"], verdicts, trajectory)


class WidthAnalysis(NamedTuple):
    """What one width's polished points are (``widths/analysis_W.json``)."""

    rows: list[records.Point]  # each network's points, certified and classified
    pairs: list[records.Pair]
    example: dict  # the first pair's paths and every path from initialisation, for figures
    ensemble: list[records.Ensemble]
    spectra: list[dict]  # per network: the Hessian quadrature (nodes, weights)


def analyse_width(inputs: OfWidth) -> WidthAnalysis:
    """The width's points certified and classified, the pairs of points, the example
    paths, the ensembles and the polished points' spectra."""
    context, width = inputs.context, inputs.width
    sgd, polished = inputs.trained, inputs.polished
    evaluate = train.make_evaluate(context.model_config)
    watchdog.beat(f"width {width}: certifying the points begun")
    rows, spectra = analysis.certify(context, sgd, polished)
    # Paths, pairs and ensembles are float32 work, like the training.
    params = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float32), polished.params)
    watchdog.beat(f"width {width}: paths from initialisation begun")
    paths = analysis.init_paths(context, sgd, params, evaluate)
    rows = [
        dataclasses.replace(
            row, init_path_monotone=path["monotone"], init_path_max_rise=path["max_rise"]
        )
        for row, path in zip(rows, paths, strict=True)
    ]
    watchdog.beat(f"width {width}: pairs of points begun")
    found_pairs, example = pairs.compare_pairs(context, params, rows, evaluate)
    example["init_paths"] = [path["costs"] for path in paths]
    ensemble = pairs.ensemble_rows(context.model_config, width, params, len(rows), context.test_xy)
    return WidthAnalysis(rows, found_pairs, example, ensemble, spectra)


def _analysis_json(found: WidthAnalysis) -> dict:
    tabled = {"rows": io.table(found.rows), "pairs": io.table(found.pairs),
              "ensemble": io.table(found.ensemble)}  # fmt: skip
    # A network whose polished point overflows float32 has infinite costs on its paths.
    return io.finite({**found._asdict(), **tabled})


def _analysis_of(stored: dict) -> WidthAnalysis:
    if not isinstance(stored["example"], dict) or not isinstance(stored["spectra"], list):
        raise ValueError("its example is not a record or its spectra not a list")
    return WidthAnalysis(
        rows=records.of(records.Point, stored["rows"]),
        pairs=records.of(records.Pair, stored["pairs"]),
        example=stored["example"],
        ensemble=records.of(records.Ensemble, stored["ensemble"]),
        spectra=stored["spectra"],
    )


TRAINED = "widths/width_{}"
SWEEP_CODEC = stage.arrays(results.to_arrays, results.from_arrays)


def trained(width: int) -> stage.Stage[OfWidth, results.SweepResult]:
    return stage.Stage(TRAINED.format(width), train_width, SWEEP_CODEC)


def polished(width: int) -> stage.Stage[OfWidth, Polished]:
    codec = stage.arrays(_polished_arrays, _polished_of)
    return stage.Stage(f"widths/polished_{width}", polish_width, codec)


def analysed(width: int) -> stage.Stage[OfWidth, WidthAnalysis]:
    codec = stage.as_json(_analysis_json, _analysis_of)
    return stage.Stage(f"widths/analysis_{width}", analyse_width, codec)


@dataclasses.dataclass(frozen=True)
class Surface:
    """The plane through one polished point: of the widest network, its best certified
    minimum, else its lowest-cost point."""

    flags: dict
    width: int
    seed: int
    classification: str
    context: Width = dataclasses.field(compare=False)
    params: object = dataclasses.field(compare=False)  # the point's layers


def surface(inputs: Surface) -> dict:
    """The training cost on a random plane through the point (Li et al. 2018)."""
    context = inputs.context
    evaluate = train.make_evaluate(context.model_config)
    key = jax.random.key(context.config.seed)
    found = landscape.surface(evaluate, inputs.params, *context.train_xy, key=key,
                              chunk=context.chunk)  # fmt: skip
    plane = {k: v.tolist() for k, v in found.items()}
    plane.update(width=inputs.width, seed=inputs.seed, classification=inputs.classification)
    return plane


def _checked_plane(plane: dict) -> dict:
    if np.shape(plane["cost"]) != (len(plane["s"]), len(plane["t"])):
        raise ValueError("its grid of costs does not match its axes")
    return plane


SURFACE = stage.Stage("surface", surface, stage.as_json(decode=_checked_plane))


def surface_inputs(flags: dict, context: Width, rows: list[records.Point], polished: Polished):
    """The :class:`Surface` of the widest width's best point, or None if it has none."""
    width = context.width
    mine = [r for r in rows if r.width == width and r.final_train_cost is not None]
    if not mine:
        return None
    minima_found = [r for r in mine if r.classification == analysis.MINIMUM]
    chosen = min(minima_found or mine, key=lambda r: r.final_train_cost)
    index = [r.seed for r in rows if r.width == width].index(chosen.seed)
    params = [(jnp.asarray(w[index], jnp.float32), jnp.asarray(b[index], jnp.float32))
              for w, b in polished.params]  # fmt: skip
    return Surface(flags, width, chosen.seed, chosen.classification, context, params)
