"""The local-minima study, run into its folder.

For each hidden width, ``seeds`` networks are trained as one program (the sweep
engine) until ‖∇C‖ < ``grad_tol`` or the epochs run out. Each endpoint is then
searched to a critical point in float64 with a scale-free stop, checked by
continuing (``polish.py``), measured and classified; the spread of quality is
tabled per width; pairs of endpoints are joined by straight lines, before and after
aligning their hidden units (permutations and sign flips), to see whether they are
different minima or one minimum seen through the network's symmetries.

Each width's training, polish and analysis is a stage (``stages.py``), saved as it
finishes (``widths/width_W.npz``, ``widths/polished_W.npz``,
``widths/analysis_W.json``): a killed study rerun with ``resume`` redoes only what is
missing.
"""

from typing import NamedTuple

import numpy as np

from gd_jax import costs, data, io, memory, stage
from gd_jax.config import TrainConfig, check_seed_range
from gd_jax.errors import GdJaxError
from gd_jax.fast import paths
from gd_jax.report import document
from gd_jax.report import tensorboard as tensorboard_writer
from gd_jax.studies.minima import figures, spectrum_figures, spread_figures, stages, tables
from gd_jax.studies.minima.config import POLISH, TRAINING, MinimaConfig, check_cost
from gd_jax.studies.minima.context import Width
from gd_jax.studies.minima.polish import Polished
from gd_jax.studies.minima.records import Ensemble, Escape, Pair, Point
from gd_jax.studies.minima.report import report
from gd_jax.sweep import mesh
from gd_jax.sweep import study as sweep_study
from gd_jax.sweep.study import Where


def study_flags(config: TrainConfig, study: MinimaConfig, *, stage=None) -> dict:
    """The flags that define the study (``config.json``), or those that decide
    ``stage`` (``config.TRAINING``, ``config.POLISH``)."""
    flags = config.flags()
    flags.update(study.flags(stage=stage))
    return flags


def run(config: TrainConfig, study: MinimaConfig, where: Where) -> dict:
    """Runs the local-minima study into ``where.workdir`` and returns its summary.

    Args:
      config: the model, data and training; ``study.widths`` replace the size of
        every hidden layer of ``config.layers``.
      study: the widths, seeds and measurements.
      where: the run folder, and the devices and memory the study may take (the
        activations of the networks, or points of a path or a surface, worked on at
        once).

    Raises:
      GdJaxError: bad input; the folder is left as it was.
    """
    check(config, study)

    def model_configs(dataset):
        shape = (dataset.train.x.shape[1], dataset.num_classes)
        n = len(dataset.train.labels)
        return [config.model_config(*shape, width=w, train_examples=n) for w in study.widths]

    def load(budget):  # the data, once the study's networks are known to fit
        dataset = data.load_for(config, widths=study.widths, memory_budget=budget)
        check_cost(config, study, dataset, memory_budget=budget,
                   devices=mesh.network_mesh(where.devices).devices.size)  # fmt: skip
        return dataset

    started = sweep_study.start(
        "local_minima", config, study_flags(config, study), where,
        model_configs=model_configs, shared_order=study.vary == "init", load=load,
    )  # fmt: skip
    with started as (folder, dataset, path, budget):
        return _study(folder, dataset, config, study, where=where, path=path, budget=budget)


def check(config: TrainConfig, study: MinimaConfig) -> None:
    """The checks that need both configs.

    Raises:
      GdJaxError: widths for a network with no hidden layer, or seeds past what a
        PRNG key holds.
    """
    if not config.layers:
        raise GdJaxError(
            f"--widths={','.join(map(str, study.widths))} replace the size of every hidden "
            "layer, but --layers=none has none: every width would be the same network. "
            "Give --layers a hidden layer (e.g. --layers=16,16).",
            field="layers",
        )
    check_seed_range(config.seed, study.seeds)


def _study(folder, dataset, config, study, *, where: Where, path, budget):
    """The study as its stages, width by width, then its tables, figures and report."""
    train_xy, test_xy = data.on_device(dataset.train), data.on_device(dataset.test)
    baseline = costs.constant_cost(config.cost, dataset.train.labels, dataset.num_classes)
    bar = costs.learned_bar(baseline)
    seeds = config.seed + np.arange(study.seeds)
    # The stages are keyed on the path they resolve to, not on the flags that chose it.
    decide = lambda names: paths.without_path(study_flags(config, study, stage=names))
    flags = decide(None)

    def context_of(width):
        model_config = config.model_config(
            dataset.train.x.shape[1], dataset.num_classes, width=width,
            train_examples=len(dataset.train.labels),
        )  # fmt: skip
        chunk = memory.chunk_for(model_config.sizes, len(dataset.train.labels), budget,
                                 krylov=study.lanczos_iters)  # fmt: skip
        return Width(model_config, config, study, train_xy, test_xy, bar, where.devices,
                     budget, chunk, path)  # fmt: skip

    found, polished, escapes = {}, {}, []
    if where.tensorboard:
        tensorboard_writer.clear(folder)  # each width's curves are written as it is trained
    for width in study.widths:
        # Each stage is keyed on the flags that decide it: a change to the analysis
        # redoes neither the training nor the polish.
        # Training is keyed without --epochs: a study resumed with more trains on.
        training = {k: v for k, v in decide(TRAINING).items() if k != "epochs"}
        inputs = stages.OfWidth(training, width, seeds, path.record(), context=context_of(width))
        done = stage.run(folder, stages.trained(width), inputs)
        if where.tensorboard:  # the width's SGD curves, as soon as it is trained
            _write_curves(folder, config, width, done)
        inputs = inputs.after(stages.trained(width), done, trained=done, flags=decide(POLISH))
        done = stage.run(folder, stages.polished(width), inputs)
        inputs = inputs.after(stages.polished(width), done, polished=done, flags=flags)
        found[width] = stage.run(folder, stages.analysed(width), inputs)
        inputs = inputs.after(stages.analysed(width), found[width], analysed=found[width])
        escapes += stage.run(folder, stages.escaped(width), inputs)
        polished[width] = inputs.polished
    widest = max(study.widths)
    rows = found[widest].rows
    surface = stages.surface_inputs(flags, context_of(widest), rows, polished[widest])
    plane = None if surface is None else stage.run(folder, stages.SURFACE, surface)

    summary, tabled = write_tables(
        folder, config, study, found, bar=bar, polished=polished, escapes=escapes,
        path=path.record(),
    )  # fmt: skip
    shown = figures_of(tabled, plane=plane, summary=summary)
    report_of = lambda captions: report(config, study, summary, tabled.spread, captions)
    document.write(folder, shown, report_of)
    return summary


class Tables(NamedTuple):
    """The study's tables, every width's joined: what its figures are drawn from."""

    rows: list[Point]
    pairs: list[Pair]
    examples: dict[int, dict]  # per width, its example paths
    ensembles: list[Ensemble]
    spread: list[dict]
    polish: list[dict]  # the polish's trajectories (``polish.csv``)


def polish_rows(width: int, seeds, polished: Polished) -> list[dict]:
    """A width's polish trajectories as rows: per network and measurement."""
    columns = polished.trajectory
    rows = []
    for j in range(len(columns["step"])):
        row = {"width": width, "seed": int(seeds[int(columns["network"][j])])}
        row.update({k: columns[k][j].item() for k in columns if k != "network"})
        rows.append(row)
    return rows


def write_tables(
    folder, config, study, found: dict[int, stages.WidthAnalysis], *, bar: float,
    polished: dict[int, Polished], escapes: list[Escape], path: dict,
) -> tuple[dict, Tables]:  # fmt: skip
    """The study's CSV tables and ``summary.json`` (with ``path``, what trained the
    networks); returns the summary and the tables."""
    widths = [found[width] for width in study.widths]
    rows = [r for w in widths for r in w.rows]
    pairs = [p for w in widths for p in w.pairs]
    ensembles = [e for w in widths for e in w.ensemble]
    spectra = {width: found[width].spectra for width in study.widths}
    noise = {width: found[width].noise for width in study.widths}
    spread = tables.spread_rows(rows, noise, bar=bar, alpha=study.alpha)
    io.write_records(folder / "results.csv", rows)
    io.write_records(folder / "pairs.csv", pairs)
    io.write_csv(folder / "spread.csv", spread)
    io.write_records(folder / "ensemble.csv", ensembles)
    io.write_records(folder / "escape.csv", escapes)
    seeds = config.seed + np.arange(study.seeds)
    trajectories = [r for w in study.widths for r in polish_rows(w, seeds, polished[w])]
    io.write_csv(folder / "polish.csv", trajectories)
    found_all = tables.Found(rows, pairs, spread, ensembles, spectra, escapes)
    summary = {**tables.summarize(config, study, found_all, bar=bar), **path}
    io.write_json(folder / io.SUMMARY, summary)
    examples = {width: found[width].example for width in study.widths}
    return summary, Tables(rows, pairs, examples, ensembles, spread, trajectories)


def figures_of(found: Tables, *, plane: dict | None, summary: dict) -> list[document.Shown]:
    """The study's figures, as ``(file name, caption, figure)``, from its tables."""
    rows, pairs, examples, ensembles, spread, trajectories = found
    shown = [
        ("quality.png", "Quality of the polished points, per width",
         figures.quality_figure(rows)),
        ("polish.png", "The float64 polish: cost and ‖θ‖ against its steps, per width",
         spectrum_figures.polish_figure(trajectories)),
        ("distribution.png", "Test accuracy and test cost of every endpoint, and their ECDFs",
         spread_figures.distribution_figure(rows, bar=summary["learned_cost_bar"])),
        ("spread.png", "Spread of quality against width, beside the noise floor",
         spread_figures.spread_figure(spread, summary["judged"])),
        ("spectrum.png", "Hessian spectrum at the polished points, per width",
         spectrum_figures.density_figure(summary["per_width"])),
        ("barriers.png", "Barriers and distances, before and after weight matching",
         figures.barrier_figure(pairs)),
        ("paths.png", "Straight paths: between polished points, and from initialisation",
         figures.paths_figure(examples)),
        ("curves.png", "Straight lines against trained curves between polished points",
         spectrum_figures.curves_figure(examples)),
        ("ensemble.png", "Ensembles against single networks", figures.ensemble_figure(ensembles)),
    ]  # fmt: skip
    if plane is not None:
        title = (
            f"w={plane['width']}, seed {plane['seed']} ({plane['classification']}): the "
            "training cost on a random plane through it"
        )
        figure = figures.surface_figure(plane, title=title)
        shown.append(("surface.png", "The cost around one endpoint (2-D slice)", figure))
    return shown


def _write_curves(folder, config: TrainConfig, width: int, sgd) -> None:
    """A width's SGD curves, each network a TensorBoard run with its hyperparameters."""
    seeds = [int(s) for s in sgd.networks.seed]
    names = [f"w={width},seed={seed}" for seed in seeds]
    hparams = [{"width": width, "seed": seed, "learning_rate": float(eta),
                "batch_size": config.batch_size, "weight_decay": config.weight_decay,
                "init": config.init, "epochs": config.epochs}
               for seed, eta in zip(seeds, sgd.networks.learning_rate, strict=True)]  # fmt: skip
    runs = tensorboard_writer.sweep_runs(names, sgd.epochs, sgd.metrics, hparams)
    tensorboard_writer.write_runs(folder, runs)
