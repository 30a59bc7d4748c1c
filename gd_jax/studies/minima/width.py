"""One width of the local-minima study: its networks trained, polished and analysed,
each stage saved as it finishes so a killed study resumes where it stopped."""

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from gd_jax import io, run_folder, train, watchdog
from gd_jax.config import ModelConfig, TrainConfig
from gd_jax.report.format import nan_quiet
from gd_jax.studies.minima import analysis, pairs
from gd_jax.studies.minima.config import MinimaConfig
from gd_jax.studies.minima.polish import make_polish
from gd_jax.sweep import engine, results, trainer

XY = tuple[jax.Array, jax.Array]  # (inputs, labels) of a split, on the device


def analysed(
    folder: run_folder.RunFolder,
    model_config: ModelConfig,
    config: TrainConfig,
    study: MinimaConfig,
    train_xy: XY,
    test_xy: XY,
    bar: float,
    *,
    devices: int | None,
    budget: float,
    chunk: int,
) -> dict:
    """The analysis of one width (``widths/analysis_W.json``), computed if not saved:
    rows, pairs, the example paths, ensembles and the polished points' spectra."""
    width = model_config.sizes[1]
    cached = folder / "widths" / f"analysis_{width}.json"
    found = io.read_cache(cached, _analysis_reader(study))
    if found is not None:
        logging.info("Width %d: analysis already on disk, kept.", width)
        return found
    sgd = trained_width(folder, model_config, config, study, train_xy, test_xy,
                        devices=devices, budget=budget)  # fmt: skip
    polished = polished_width(folder, model_config, study, sgd, train_xy, chunk=chunk)
    evaluate = train.make_evaluate(model_config)
    watchdog.beat(f"width {width}: certifying the points begun")
    rows, spectra = analysis.certify(
        model_config, study, sgd, polished, train_xy, test_xy, bar, seed=config.seed, chunk=chunk
    )
    watchdog.beat(f"width {width}: paths from initialisation begun")
    paths = analysis.init_paths(model_config, study, sgd, polished["params"], train_xy, evaluate,
                                chunk=chunk)  # fmt: skip
    for row, path in zip(rows, paths, strict=True):
        row["init_path_monotone"], row["init_path_max_rise"] = path["monotone"], path["max_rise"]
    watchdog.beat(f"width {width}: pairs of points begun")
    found_pairs, example = pairs.compare_pairs(
        model_config, study, polished["params"], rows, train_xy, test_xy, evaluate,
        seed=config.seed, chunk=chunk,
    )  # fmt: skip
    example["init_paths"] = [path["costs"] for path in paths]
    found = {
        "rows": rows,
        "pairs": found_pairs,
        "example": example,
        "ensemble": pairs.ensemble_rows(
            model_config, width, polished["params"], len(rows), test_xy
        ),
        "spectra": spectra,
    }
    io.write_json(cached, found)
    return found


def _analysis_reader(study: MinimaConfig):
    """Reads a stored analysis of one width, checked to be whole."""

    def read(path):
        found = io.read_json(path)
        if len(found["rows"]) != study.seeds or not isinstance(found["example"], dict):
            raise ValueError(f"it holds {len(found['rows'])} of the {study.seeds} networks")
        for key in ("pairs", "ensemble", "spectra"):
            if not isinstance(found[key], list):
                raise ValueError(f"its {key} are not a list")
        return found

    return read


def params_of(stored: dict) -> list:
    """The stacked parameters saved by :func:`polished_width`."""
    layers = sum(1 for k in stored if k.startswith("params/") and k.endswith("/w"))
    return [(jnp.asarray(stored[f"params/{i}/w"]), jnp.asarray(stored[f"params/{i}/b"]))
            for i in range(layers)]  # fmt: skip


def polished_width(folder, model_config, study, sgd: results.SweepResult, train_xy, *, chunk):
    """The width's SGD endpoints refined by L-BFGS (``widths/polished_W.npz``):
    ``{"params", "steps", "grad_norm"}``, computed if not saved."""
    width = model_config.sizes[1]
    path = folder / "widths" / f"polished_{width}.npz"

    def read(path):
        stored = io.load_arrays(path)
        if not np.array_equal(stored["seed"], sgd.networks.seed):
            raise ValueError("it holds other networks than this width's")
        return {"params": params_of(stored), "steps": stored["steps"],
                "grad_norm": stored["grad_norm"]}  # fmt: skip

    stored = io.read_cache(path, read)
    if stored is not None:
        logging.info("Width %d: polished points already on disk, kept.", width)
        return stored
    watchdog.beat(f"width {width}: polish begun")
    polish = make_polish(model_config, chunk=min(chunk, study.polish_batch))
    params, steps, grad_norm = polish(
        jax.tree.map(jnp.asarray, sgd.params), *train_xy, study.polish_steps, study.polish_tol
    )
    steps, grad_norm = np.asarray(steps), np.asarray(grad_norm)
    logging.info(
        "Width %d: polished in %d–%d L-BFGS steps; %d of %d with ‖∇C‖ < %g.",
        width, steps.min(), steps.max(), np.sum(grad_norm < study.polish_tol), len(steps),
        study.polish_tol,
    )  # fmt: skip
    arrays = {"seed": sgd.networks.seed, "steps": steps, "grad_norm": grad_norm}
    for i, (w, b) in enumerate(params):
        arrays[f"params/{i}/w"], arrays[f"params/{i}/b"] = w, b
    io.save_arrays(path, **arrays)
    return {"params": params, "steps": steps, "grad_norm": grad_norm}


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

    def progress(epoch, scores, seconds, measure_seconds):
        del measure_seconds
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
