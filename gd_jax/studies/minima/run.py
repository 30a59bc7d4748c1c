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

from gd_jax import costs, data, io, landscape, memory, run_folder, train
from gd_jax.config import ModelConfig, TrainConfig, check_seed_range
from gd_jax.errors import GdJaxError
from gd_jax.report import document
from gd_jax.report import tensorboard as tensorboard_writer
from gd_jax.studies.minima import figures, spectrum_figures, tables
from gd_jax.studies.minima import width as width_study
from gd_jax.studies.minima.analysis import MINIMUM, network
from gd_jax.studies.minima.config import MinimaConfig, check_cost
from gd_jax.studies.minima.report import report
from gd_jax.sweep import mesh, results


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
    memory_budget = memory.check_budget(memory_budget)
    check(config, study)
    mesh.network_mesh(devices)  # a bad device count fails before the folder is made
    with (
        run_folder.start_run(
            workdir,
            "local_minima",
            study_flags(config, study),
            resume=resume,
            load=lambda: _load(config, study, memory_budget, devices),
            mutable=(),
        ) as (folder, dataset),
        jax.default_matmul_precision(config.matmul_precision),
    ):
        return _study(
            folder, dataset, config, study, devices=devices, budget=memory_budget,
            tensorboard=tensorboard,
        )  # fmt: skip


def _load(config: TrainConfig, study: MinimaConfig, memory_budget: float, devices):
    """The data, once the study's networks are known to fit (what it costs is logged)."""
    dataset = data.load_for(config, widths=study.widths, memory_budget=memory_budget)
    check_cost(config, study, dataset, memory_budget=memory_budget,
               devices=mesh.network_mesh(devices).devices.size)  # fmt: skip
    return dataset


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

    rows, pairs, examples, ensembles, spectra = [], [], {}, [], {}
    for width in study.widths:
        model_config = config.model_config(
            dataset.train.x.shape[1], dataset.num_classes, width=width
        )
        chunk = memory.chunk_for(model_config.sizes, len(dataset.train.labels), budget)
        found = width_study.analysed(
            folder, model_config, config, study, train_xy, test_xy, bar,
            devices=devices, budget=budget, chunk=chunk,
        )  # fmt: skip
        rows += found["rows"]
        pairs += found["pairs"]
        examples[width] = found["example"]
        ensembles += found["ensemble"]
        spectra[width] = found["spectra"]

    widest = config.model_config(
        dataset.train.x.shape[1], dataset.num_classes, width=max(study.widths)
    )
    chunk = memory.chunk_for(widest.sizes, len(dataset.train.labels), budget)
    plane = cached_surface(folder, widest, config.seed, rows, train_xy, chunk=chunk)
    spread = tables.spread_rows(rows, resamples=study.bootstrap, bar=bar)
    io.write_csv(folder / "results.csv", rows)
    io.write_csv(folder / "pairs.csv", pairs)
    io.write_csv(folder / "spread.csv", spread)
    io.write_csv(folder / "ensemble.csv", ensembles)
    summary = tables.summarize(
        config, study, rows=rows, pairs=pairs, spread=spread, ensembles=ensembles,
        spectra=spectra, bar=bar,
    )  # fmt: skip
    io.write_json(folder / io.SUMMARY, summary)
    if tensorboard:
        tensorboard_writer.write_runs(folder, curves_of(folder, study.widths))
    shown = figures_of(
        rows=rows, pairs=pairs, examples=examples, ensembles=ensembles, spread=spread,
        plane=plane, summary=summary,
    )  # fmt: skip
    document.write(folder, shown, lambda captions: report(config, study, summary, spread, captions))
    return summary


XY = tuple[jax.Array, jax.Array]  # (inputs, labels) of a split, on the device


def cached_surface(
    folder: run_folder.RunFolder,
    model_config: ModelConfig,
    seed: int,
    rows: list[dict],
    train_xy: XY,
    *,
    chunk: int,
) -> dict | None:
    """The training cost on a random plane through one polished point of the widest
    network: its best certified minimum, else its lowest-cost point (Li et al. 2018)."""
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
    polished = io.load_arrays(folder / "widths" / f"polished_{width}.npz")
    index = int(np.flatnonzero(polished["seed"] == chosen["seed"])[0])
    params = network(width_study.params_of(polished), index)
    evaluate = train.make_evaluate(model_config)
    found = landscape.surface(evaluate, params, *train_xy, key=jax.random.key(seed), chunk=chunk)
    plane = {k: v.tolist() for k, v in found.items()}
    plane.update(width=width, seed=chosen["seed"], classification=chosen["classification"])
    io.write_json(path, plane)
    return plane


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
    summary: dict,
) -> list[document.Shown]:
    """The study's figures, as ``(file name, caption, figure)``."""
    shown = [
        ("quality.png", "Quality of the polished points, per width",
         figures.quality_figure(rows)),
        ("spread.png", "Spread of quality against width", figures.spread_figure(spread)),
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
