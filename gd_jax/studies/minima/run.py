"""The local-minima study, run into its folder.

For each hidden width, ``seeds`` networks are trained as one program (the sweep
engine) until ‖∇C‖ < ``grad_tol`` or the epochs run out. Each endpoint is then
certified from its gradient and Hessian and classified; the spread of quality is
tabled per width; pairs of endpoints are joined by straight lines, before and after
aligning their hidden units (permutations and sign flips), to see whether they are
different minima or one minimum seen through the network's symmetries.

Each width's training is saved as it finishes (``widths/width_W.npz``) and so is its
analysis (``widths/analysis_W.json``): a killed study rerun with ``resume`` redoes
only what is missing.
"""

import jax
import numpy as np
from absl import logging

from gd_jax import costs, data, io, landscape, memory, run_folder, train
from gd_jax.config import ModelConfig, TrainConfig, check_seed_range
from gd_jax.errors import GdJaxError
from gd_jax.report import document
from gd_jax.report import tensorboard as tensorboard_writer
from gd_jax.report.format import nan_quiet
from gd_jax.studies.minima import figures, tables
from gd_jax.studies.minima.analysis import MINIMUM, analyse, network
from gd_jax.studies.minima.config import MinimaConfig
from gd_jax.studies.minima.report import report
from gd_jax.sweep import engine, mesh, results, trainer


def study_flags(config: TrainConfig, study: MinimaConfig) -> dict:
    """The flags that define the study (``config.json``)."""
    flags = config.flags()
    flags.update(study.flags())
    return flags


def run(
    config: TrainConfig,
    study: MinimaConfig,
    workdir: str,
    *,
    resume: bool = False,
    devices: int | None = None,
    memory_budget: float = memory.MEMORY_BUDGET_GIB,
    tensorboard: bool = tensorboard_writer.ON,
) -> dict:
    """Runs the local-minima study into ``workdir`` and returns its summary.

    Args:
      config: the model, data and training; ``study.widths`` replace the size of
        every hidden layer of ``config.layers``.
      study: the widths, seeds and measurements.
      workdir: the run folder.
      resume: continue a killed study; finished widths are kept.
      devices: the devices each width's networks are sharded over (all if None).
      memory_budget: GiB the activations of the networks (or points of a path or a
        surface) worked on at once may take.
      tensorboard: also write each network's curves as TensorBoard event files
        (``workdir/tensorboard/w=…,seed=…``).

    Raises:
      GdJaxError: bad input; the folder is left as it was.
    """
    check(config, study)
    mesh.network_mesh(devices)  # a bad device count fails before the folder is made
    with (
        run_folder.start_run(
            workdir,
            "local_minima",
            study_flags(config, study),
            resume=resume,
            load=lambda: data.load_for(config),
            mutable=(),
        ) as (folder, dataset),
        jax.default_matmul_precision(config.matmul_precision),
    ):
        return _study(
            folder, dataset, config, study, devices=devices, budget=memory_budget,
            tensorboard=tensorboard,
        )  # fmt: skip


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


def _study(folder, dataset, config, study, *, devices, budget, tensorboard):
    train_xy, test_xy = data.on_device(dataset.train), data.on_device(dataset.test)
    baseline = costs.constant_cost(config.cost, dataset.train.labels, dataset.num_classes)
    bar = costs.learned_bar(baseline)

    rows, pairs, examples, ensembles = [], [], {}, []
    for width in study.widths:
        model_config = config.model_config(
            dataset.train.x.shape[1], dataset.num_classes, width=width
        )
        evaluate = train.make_evaluate(model_config)
        cached = folder / "widths" / f"analysis_{width}.json"
        found = io.read_cache(cached, _analysis_reader(study))
        if found is not None:
            logging.info("Width %d: analysis already on disk, kept.", width)
        else:
            result = trained_width(
                folder, model_config, config, study, train_xy, test_xy, devices=devices,
                budget=budget,
            )  # fmt: skip
            chunk = memory.chunk_for(model_config.sizes, len(dataset.train.labels), budget)
            found = analyse(
                model_config, study, result, train_xy, test_xy, evaluate, bar,
                seed=config.seed, chunk=chunk,
            )  # fmt: skip
            io.write_json(cached, found)
        rows += found["rows"]
        pairs += found["pairs"]
        examples[width] = found["example"]
        ensembles += found["ensemble"]

    widest = config.model_config(
        dataset.train.x.shape[1], dataset.num_classes, width=max(study.widths)
    )
    chunk = memory.chunk_for(widest.sizes, len(dataset.train.labels), budget)
    plane = cached_surface(folder, widest, config.seed, rows, train_xy, chunk=chunk)
    spread = tables.spread_rows(rows)
    io.write_csv(folder / "results.csv", rows)
    io.write_csv(folder / "pairs.csv", pairs)
    io.write_csv(folder / "spread.csv", spread)
    io.write_csv(folder / "ensemble.csv", ensembles)
    summary = tables.summarize(
        config, rows=rows, pairs=pairs, spread=spread, ensembles=ensembles, bar=bar
    )
    io.write_json(folder / io.SUMMARY, summary)
    if tensorboard:
        tensorboard_writer.write_runs(folder, curves_of(folder, study.widths))
    shown = figures_of(
        rows=rows, pairs=pairs, examples=examples, ensembles=ensembles, spread=spread, plane=plane
    )
    document.write(folder, shown, lambda captions: report(config, summary, spread, captions))
    return summary


XY = tuple[jax.Array, jax.Array]  # (inputs, labels) of a split, on the device


def _analysis_reader(study: MinimaConfig):
    """Reads a stored analysis of one width, checked to be whole."""

    def read(path):
        found = io.read_json(path)
        if len(found["rows"]) != study.seeds or not isinstance(found["example"], dict):
            raise ValueError(f"it holds {len(found['rows'])} of the {study.seeds} networks")
        for key in ("pairs", "ensemble"):
            if not isinstance(found[key], list):
                raise ValueError(f"its {key} are not a list")
        return found

    return read


def cached_surface(
    folder: run_folder.RunFolder,
    model_config: ModelConfig,
    seed: int,
    rows: list[dict],
    train_xy: XY,
    *,
    chunk: int,
) -> dict | None:
    """The training cost on a random plane through one endpoint of the widest network:
    its best certified minimum, else its lowest-cost endpoint (Li et al. 2018)."""
    path = folder / "surface.json"

    def read(path):
        plane = io.read_json(path)
        if np.shape(plane["cost"]) != (len(plane["s"]), len(plane["t"])):
            raise ValueError("its grid of costs does not match its axes")
        return plane

    stored = io.read_cache(path, read)
    if stored is not None:
        return stored
    width = model_config.sizes[1]
    mine = [r for r in rows if r["width"] == width and r["final_train_cost"] is not None]
    if not mine:
        return None
    minima_found = [r for r in mine if r["classification"] == MINIMUM]
    chosen = min(minima_found or mine, key=lambda r: r["final_train_cost"])
    stored = results.load(folder / "widths" / f"width_{width}.npz")
    index = int(np.flatnonzero(stored.networks.seed == chosen["seed"])[0])
    params = network(stored.params, index)
    evaluate = train.make_evaluate(model_config)
    found = landscape.surface(evaluate, params, *train_xy, key=jax.random.key(seed), chunk=chunk)
    plane = {k: v.tolist() for k, v in found.items()}
    plane.update(width=width, seed=chosen["seed"], classification=chosen["classification"])
    io.write_json(path, plane)
    return plane


def trained_width(
    folder: run_folder.RunFolder,
    model_config: ModelConfig,
    config: TrainConfig,
    study: MinimaConfig,
    train_xy: XY,
    test_xy: XY,
    *,
    devices: int | None,
    budget: float,
) -> results.SweepResult:
    """All seeds of one width, trained as one program; saved, or read back if saved."""
    width = model_config.sizes[1]
    path = folder / "widths" / f"width_{width}.npz"
    seeds = config.seed + np.arange(study.seeds)

    def read(path):
        stored = results.load(path)
        if (
            not np.array_equal(stored.networks.seed, seeds)
            or stored.params[0][0].shape[-1] != width
        ):
            raise ValueError("it holds other networks than this width's")
        return stored

    stored = io.read_cache(path, read)
    if stored is not None:
        logging.info("Width %d: training already on disk, kept.", width)
        return stored
    networks = engine.Networks(np.full(len(seeds), config.learning_rate), seeds)

    def progress(epoch, scores, seconds):
        converged = np.sum(scores["grad_norm"] < study.grad_tol)
        with nan_quiet():
            median = np.nanmedian(scores["train_cost"])
        logging.info(
            "width %d epoch %d/%d: %d networks, %d with ‖∇C‖ < %g, median cost %.4g, %.3f s/epoch",
            width, epoch, config.epochs, len(seeds), converged, study.grad_tol,
            median, seconds,
        )  # fmt: skip

    result = trainer.fit(
        networks,
        model_config,
        config,
        train_xy,
        {"test": test_xy},
        shared_order=False,
        eval_every=study.eval_every,
        grad_tol=study.grad_tol,
        devices=devices,
        memory_budget=budget,
        on_epoch=progress,
    )
    results.save(path, result)
    return result


def curves_of(folder: run_folder.RunFolder, widths) -> list:
    """Every trained network's curves, as TensorBoard runs named ``w=W,seed=S``."""
    runs = []
    for width in widths:
        stored = io.read_cache(folder / "widths" / f"width_{width}.npz", results.load)
        if stored is not None:
            names = [f"w={width},seed={seed}" for seed in stored.networks.seed]
            runs += tensorboard_writer.sweep_runs(names, stored.epochs, stored.metrics)
    return runs


def figures_of(
    *,
    rows: list[dict],
    pairs: list[dict],
    examples: dict[int, dict],
    ensembles: list[dict],
    spread: list[dict],
    plane: dict | None,
) -> list[document.Shown]:
    """The study's figures, as ``(file name, caption, figure)``."""
    shown = [
        ("quality.png", "Quality of the endpoints, per width", figures.quality_figure(rows)),
        ("spread.png", "Spread of quality against width", figures.spread_figure(spread)),
        ("barriers.png", "Barriers and distances, before and after alignment",
         figures.barrier_figure(pairs)),
        ("paths.png", "Straight paths: between endpoints, and from initialisation",
         figures.paths_figure(examples)),
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
