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

from gd_jax import io, landscape, stage, watchdog
from gd_jax.progress import Epochs
from gd_jax.report.format import nan_quiet
from gd_jax.studies.minima import analysis, pairs, polish, quality, records, spread
from gd_jax.studies.minima.context import Width
from gd_jax.studies.minima.polish import Polished
from gd_jax.sweep import engine, results, trainer


@dataclasses.dataclass(frozen=True)
class OfWidth:
    """A stage of one width: the study's flags, the width, its seeds, the path that
    trains it, and what the earlier stages of the width found decide it. The last enter
    the key as digests (``read``, ``stage.digest``): a stage whose upstream was
    computed again to other numbers is computed again too."""

    flags: dict
    width: int
    seeds: np.ndarray
    path: dict  # Path.record() of the SGD training
    read: dict = dataclasses.field(default_factory=dict)  # stage name -> digest
    context: Width | None = dataclasses.field(default=None, compare=False)
    # What earlier stages of the width found (None for the first).
    trained: results.SweepResult | None = dataclasses.field(default=None, compare=False)
    polished: Polished | None = dataclasses.field(default=None, compare=False)
    analysed: "WidthAnalysis | None" = dataclasses.field(default=None, compare=False)

    def after(self, stage_: stage.Stage, found, **fields) -> "OfWidth":
        """These inputs with what ``stage_`` found (under ``fields``) and its digest."""
        read = {**self.read, stage_.name: stage.digest(stage_, found)}
        return dataclasses.replace(self, read=read, **fields)


def train_width(inputs: OfWidth, after: results.SweepResult | None = None) -> results.SweepResult:
    """All seeds of one width, trained by SGD as one program (on from ``after``, the
    width trained for fewer epochs, where given)."""
    context, seeds = inputs.context, inputs.seeds
    config, study = context.config, context.study
    networks = varied(seeds, config.learning_rate, vary=study.vary, base=config.seed)

    trained = 0 if after is None else int(np.max(after.epochs))
    shown = Epochs(f"width {inputs.width}", config.epochs, start=trained)

    def on_epoch(epoch, scores, seconds, measure_seconds):
        del measure_seconds
        converged = np.sum(scores["grad_norm"] < study.grad_tol)
        with nan_quiet():
            median = np.nanmedian(scores["train_cost"])
        shown.report(epoch, f"{len(seeds)} networks, {converged} with ‖∇C‖ < {study.grad_tol:g}, "
                            f"median cost {median:.4g}, {seconds:.3f} s/epoch")  # fmt: skip

    options = trainer.FitOptions(
        shared_order=study.vary == "init",
        eval_every=study.eval_every,
        grad_tol=study.grad_tol,
        devices=context.devices,
        memory_budget=context.budget,
        path=context.path,
    )
    return trainer.fit(
        networks, context.model_config, config, context.train_xy, {"test": context.test_xy},
        options, on_epoch=on_epoch, start=after,
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


def polish_width(inputs: OfWidth, progress: stage.Progress | None = None) -> Polished:
    """The width's SGD endpoints searched to critical points in float64 on the whole
    training set, and the critical ones continued (``polish``), each network kept in
    ``progress`` as it is done."""
    context, study, width = inputs.context, inputs.context.study, inputs.width
    found = polish.polish_networks(
        context.model_config, inputs.trained.params, context.train_xy, study,
        key=jax.random.key(context.config.seed), progress=progress,
    )  # fmt: skip
    v = found.verdicts
    certified = v["critical"] & v["stable"]
    logging.info(
        "Width %d: polished in %d–%d steps; %d of %d critical by the scale-free stop, %d "
        "of them stable when continued; %d of the others descending.",
        width, found.steps.min(), found.steps.max(), v["critical"].sum(), len(found.steps),
        certified.sum(), (v["descending"] & ~certified).sum(),
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
    # Per population (quality.POPULATIONS): the noise floor of test sampling of its
    # test accuracy and test cost (spread.noise_floor).
    noise: dict


def analyse_width(inputs: OfWidth) -> WidthAnalysis:
    """The width's points certified and classified, the pairs of points, the example
    paths, the ensembles and the polished points' spectra."""
    context, width = inputs.context, inputs.width
    sgd, polished = inputs.trained, inputs.polished
    evaluate = analysis.make_path_evaluate(context.model_config)
    watchdog.beat(f"width {width}: certifying the points begun")
    rows, spectra = analysis.certify(context, sgd, polished)
    # Paths, pairs and ensembles are float32 work, like the training.
    params = jax.tree.map(lambda leaf: jnp.asarray(leaf, jnp.float32), polished.params)
    watchdog.beat(f"width {width}: scores per test example begun")
    score = lambda p: quality.score(
        context.model_config, p, context.train_xy[0], context.test_xy,
        threshold=context.study.saturation_threshold, chunk=context.chunk,
    )  # fmt: skip
    at_sgd, at_end = score(sgd.params), score(params)
    rows = [
        dataclasses.replace(
            row,
            sgd_dead_classes=quality.dead_classes(at_sgd["counts"][i]),
            dead_classes=quality.dead_classes(at_end["counts"][i]),
            sgd_dead_units=float(at_sgd["dead_units"][i]),
            dead_units=float(at_end["dead_units"][i]),
        )
        for i, row in enumerate(rows)
    ]
    noise = quality.noise(rows, at_sgd, at_end, bar=context.bar)
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
    return WidthAnalysis(rows, found_pairs, example, ensemble, spectra, noise)


def escape_width(inputs: OfWidth) -> list[records.Escape]:
    """The ``--escape_points`` poorest SGD endpoints of the width (by test accuracy),
    trained on for ``--escape_epochs`` from where they stopped, and from there
    perturbed by ``--escape_noise``: does either reach the others' quality?"""
    context, study, width = inputs.context, inputs.context.study, inputs.width
    sgd, rows = inputs.trained, inputs.analysed.rows
    count = min(study.escape_points, len(rows) - 1)
    if count <= 0:
        return []
    accuracy = np.asarray([-np.inf if r.sgd_test_accuracy is None else r.sgd_test_accuracy
                           for r in rows])  # fmt: skip
    worst = np.argsort(accuracy, kind="stable")[:count]
    others = np.delete(accuracy, worst)
    others = others[np.isfinite(others)]
    median, q1 = float(np.median(others)), float(np.percentile(others, 25))
    mad = float(np.median(np.abs(others - median)))
    start = jax.tree.map(lambda leaf: np.asarray(leaf)[worst], sgd.params)
    seeds = np.asarray(sgd.networks.seed)[worst]
    moved = quality.perturbed(start, seeds, study.escape_noise)
    both = jax.tree.map(lambda a, b: np.concatenate([a, b]), start, moved)
    config = dataclasses.replace(context.config, epochs=study.escape_epochs)
    networks = engine.Networks(np.full(2 * count, config.learning_rate), np.tile(seeds, 2))
    # Each network draws its own batches: the plain path (with the study's pieces).
    options = trainer.FitOptions(shared_order=False, eval_every=study.escape_epochs,
                                 devices=context.devices, memory_budget=context.budget,
                                 path=context.path)  # fmt: skip
    watchdog.beat(f"width {width}: escape attempts begun")
    shown = Epochs(f"width {width}: escape attempts", config.epochs)
    on_epoch = lambda epoch, *_: shown.report(epoch, f"{2 * count} networks")
    found = trainer.fit(networks, context.model_config, config, context.train_xy,
                        {"test": context.test_xy}, options, start=both,
                        on_epoch=on_epoch)  # fmt: skip
    after = found.metrics["test_accuracy"][-1]
    counts = quality.score(
        context.model_config, found.params, context.train_xy[0][:1], context.test_xy,
        threshold=study.saturation_threshold, chunk=context.chunk,
    )["counts"]  # fmt: skip
    escapes = []
    for j, i in enumerate(worst):
        row = rows[i]
        learned = row.sgd_train_cost is not None and row.sgd_train_cost < context.bar
        poor = not learned or accuracy[i] < median - spread.OUTLIER_Z * mad / 0.6745
        value = lambda a: None if not np.isfinite(a) else float(a)
        on, perturbed = value(after[j]), value(after[count + j])
        escapes.append(records.Escape(
            width=width, seed=int(row.seed), test_accuracy=float(accuracy[i]),
            others_median=median, others_q1=q1, poor=bool(poor),
            trained_on_accuracy=on, perturbed_accuracy=perturbed,
            dead_classes=row.sgd_dead_classes or "",
            trained_on_dead_classes=quality.dead_classes(counts[j]),
            perturbed_dead_classes=quality.dead_classes(counts[count + j]),
            outcome=quality.outcome(not poor, on, perturbed, q1),
        ))  # fmt: skip
    return escapes


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
        noise=stored["noise"],
    )


TRAINED = "widths/width_{}"
SWEEP_CODEC = stage.arrays(results.to_arrays, results.from_arrays)


def trained(width: int) -> stage.Stage[OfWidth, results.SweepResult]:
    """A width's SGD training: its key leaves out ``--epochs`` (``run.py``), so a study
    resumed with more trains on from where it was."""
    return stage.Stage(
        TRAINED.format(width), train_width, SWEEP_CODEC,
        short=lambda inputs, found: results.stops_short(found, inputs.context.config.epochs),
        go_on=train_width,
    )  # fmt: skip


def polished(width: int) -> stage.Stage[OfWidth, Polished]:
    codec = stage.arrays(_polished_arrays, _polished_of)
    return stage.Stage(f"widths/polished_{width}", polish_width, codec, by_item=True)


def analysed(width: int) -> stage.Stage[OfWidth, WidthAnalysis]:
    codec = stage.as_json(_analysis_json, _analysis_of)
    return stage.Stage(f"widths/analysis_{width}", analyse_width, codec)


def escaped(width: int) -> stage.Stage[OfWidth, list[records.Escape]]:
    codec = stage.as_json(
        lambda found: io.finite(io.table(found)), lambda rows: records.of(records.Escape, rows)
    )
    return stage.Stage(f"widths/escape_{width}", escape_width, codec)


@dataclasses.dataclass(frozen=True)
class Surface:
    """The plane through one polished point: of the widest network, its best certified
    minimum, else its lowest-cost point."""

    flags: dict
    width: int
    seed: int
    classification: str
    context: Width = dataclasses.field(compare=False)
    params: list = dataclasses.field(default_factory=list)  # the point's layers


def surface(inputs: Surface) -> dict:
    """The training cost on a random plane through the point (Li et al. 2018)."""
    context = inputs.context
    evaluate = analysis.make_path_evaluate(context.model_config)
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
