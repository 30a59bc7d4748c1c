"""The local-minima study: are the minima gradient descent finds of equal quality?

For each hidden width, ``seeds`` networks are trained as one program (the sweep
engine) until ‖∇C‖ < ``grad_tol`` or the epochs run out. Each endpoint is then
certified from its gradient and Hessian and classified; the spread of quality is
tabled per width; pairs of endpoints are joined by straight lines, before and after
aligning their hidden units (permutations and sign flips), to see whether they are
different minima or one minimum seen through the network's symmetries.

Each width's training is saved as it finishes (``widths/width_W.npz``) and so is its
analysis (``widths/analysis_W.json``): a killed study rerun with ``--resume`` redoes
only what is missing.
"""

import dataclasses
import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from gd_jax import (
    costs,
    curvature,
    io,
    landscape,
    lr_sweep,
    minima_plots,
    model,
    plots,
    sweep,
    train,
)
from gd_jax.config import TrainConfig, parse_int_list
from gd_jax.errors import GdJaxError
from gd_jax.experiment import on_device, run_flags, start_run, training_kwargs

MINIMUM, SADDLE, PLATEAU, UNCONVERGED = "minimum", "saddle", "plateau", "unconverged"


@dataclasses.dataclass(frozen=True)
class MinimaConfig:
    """What the study trains and measures beside the model and data of a TrainConfig."""

    widths: tuple[int, ...] = (4, 16, 64)
    seeds: int = 8
    grad_tol: float = 2e-3
    eval_every: int = 1
    lanczos_iters: int = 40
    negative_tol: float = 1e-2
    dense_max_params: int = 3000
    path_points: int = 25
    max_pairs: int = 28
    devices: int | None = None

    def __post_init__(self):
        checks = [
            (self.widths and all(w > 0 for w in self.widths), f"--widths={self.widths}"),
            (self.seeds >= 2, f"--seeds={self.seeds} (at least 2, to compare endpoints)"),
            (self.grad_tol > 0, f"--grad_tol={self.grad_tol} (positive)"),
            (self.eval_every >= 1, f"--eval_every={self.eval_every} (at least 1)"),
            (self.lanczos_iters >= 2, f"--lanczos_iters={self.lanczos_iters} (at least 2)"),
            (self.path_points >= 3, f"--path_points={self.path_points} (at least 3)"),
            (self.max_pairs >= 1, f"--max_pairs={self.max_pairs} (at least 1)"),
        ]
        for ok, what in checks:
            if not ok:
                raise GdJaxError(f"{what} cannot be used; see --help for what it takes.")


def parse_widths(text: str) -> tuple[int, ...]:
    """``"4,16,64"`` into widths; each replaces every hidden layer's size."""
    hint = (
        "e.g. --widths=4,16,64; each replaces the size of every hidden layer of --layers "
        "(16 gives the seed's 784-16-16-10)."
    )
    return parse_int_list(text, flag="widths", hint=hint)


def classify(grad_norm, lambda_min, lambda_max, cost, *, grad_tol, negative_tol, bar) -> str:
    """The kind of critical point an endpoint is, by the numbers that certify it.

    * ``unconverged``: ‖∇C‖ ≥ ``grad_tol``: not a critical point (yet).
    * ``plateau``: critical, but its cost is not below ``bar`` (90% of the best
      constant output's): saturated units, a flat region where nothing was learned.
    * ``saddle``: critical, with λ_min < −``negative_tol`` · λ_max: clearly negative
      curvature, a direction that still goes down.
    * ``minimum``: critical, learned, and no clearly negative curvature.
    """
    if not grad_norm < grad_tol:
        return UNCONVERGED
    if not cost < bar:
        return PLATEAU
    if lambda_min < -negative_tol * abs(lambda_max):
        return SADDLE
    return MINIMUM


def _network(params, i):
    return jax.tree.map(lambda leaf: jnp.asarray(leaf[i]), params)


def study_flags(config: TrainConfig, minima_config: MinimaConfig) -> dict:
    flags = run_flags(config)
    flags.update(dataclasses.asdict(minima_config))
    flags["widths"] = list(minima_config.widths)
    return flags


def run(config: TrainConfig, minima_config: MinimaConfig, workdir: str, *, resume=False):
    """Runs the local-minima study into ``workdir`` and returns its summary.

    Raises:
      GdJaxError: bad input; the folder is left as it was.
    """
    flags = study_flags(config, minima_config)
    folder, dataset = start_run(config, workdir, flags, resume=resume, mutable=("devices",))
    train_xy, test_xy = on_device(dataset.train), on_device(dataset.test)
    bar = 0.9 * lr_sweep.constant_cost(config.cost, dataset.train.labels, dataset.num_classes)
    evaluate = train.make_evaluate(config.cost, config.activation)

    rows, pairs, examples, ensembles = [], [], {}, []
    for width in minima_config.widths:
        sizes = (dataset.train.x.shape[1], *[width] * len(config.layers), dataset.num_classes)
        cached = folder / "widths" / f"analysis_{width}.json"
        if cached.exists():
            found = io.read_json(cached)
            logging.info("Width %d: analysis already on disk, kept.", width)
        else:
            result = trained_width(folder, config, minima_config, sizes, train_xy, test_xy)
            found = analyse(config, minima_config, sizes, result, train_xy, test_xy, evaluate, bar)
            io.write_json(cached, found)
        rows += found["rows"]
        pairs += found["pairs"]
        examples[width] = found["example"]
        ensembles += found["ensemble"]

    plane = cached_surface(folder, config, minima_config, rows, train_xy, evaluate)
    spread = spread_rows(rows)
    io.write_csv(folder / "results.csv", rows)
    io.write_csv(folder / "pairs.csv", pairs)
    io.write_csv(folder / "spread.csv", spread)
    io.write_csv(folder / "ensemble.csv", ensembles)
    summary = summarize(config, minima_config, rows, pairs, spread, ensembles, bar)
    io.write_json(folder / io.SUMMARY, summary)
    write_figures(folder, config, summary, rows, pairs, examples, ensembles, spread, plane)
    return summary


def cached_surface(folder, config, minima_config, rows, train_xy, evaluate):
    """The training cost on a random plane through one endpoint of the widest network:
    its best certified minimum, else its lowest-cost endpoint (Li et al. 2018)."""
    path = folder / "surface.json"
    if path.exists():
        return io.read_json(path)
    width = max(minima_config.widths)
    mine = [r for r in rows if r["width"] == width and r["final_train_cost"] is not None]
    if not mine:
        return None
    minima_found = [r for r in mine if r["classification"] == MINIMUM]
    chosen = min(minima_found or mine, key=lambda r: r["final_train_cost"])
    stored = io.load_arrays(folder / "widths" / f"width_{width}.npz")
    index = int(np.flatnonzero(stored["seed"] == chosen["seed"])[0])
    params = _network(sweep.result_from_arrays(stored).params, index)
    found = landscape.surface(evaluate, params, *train_xy, key=jax.random.key(config.seed))
    plane = {k: v.tolist() for k, v in found.items()}
    plane.update(width=width, seed=chosen["seed"], classification=chosen["classification"])
    io.write_json(path, plane)
    return plane


def trained_width(folder, config, minima_config, sizes, train_xy, test_xy) -> sweep.SweepResult:
    """All seeds of one width, trained as one program; saved, or read back if saved."""
    width = sizes[1]
    path = folder / "widths" / f"width_{width}.npz"
    if path.exists():
        logging.info("Width %d: training already on disk, kept.", width)
        return sweep.result_from_arrays(io.load_arrays(path))
    seeds = config.seed + np.arange(minima_config.seeds)
    networks = sweep.Networks(np.full(len(seeds), config.learning_rate), seeds)

    def progress(epoch, scores, seconds):
        converged = np.sum(scores["grad_norm"] < minima_config.grad_tol)
        logging.info(
            "width %d epoch %d/%d: %d networks, %d with ‖∇C‖ < %g, median cost %.4g, %.3f s/epoch",
            width, epoch, config.epochs, len(seeds), converged, minima_config.grad_tol,
            np.nanmedian(scores["train_cost"]), seconds,
        )  # fmt: skip

    result = sweep.fit(
        networks,
        train_xy,
        {"test": test_xy},
        sizes=sizes,
        **training_kwargs(config),
        shared_order=False,
        eval_every=minima_config.eval_every,
        grad_tol=minima_config.grad_tol,
        on_epoch=progress,
        devices=minima_config.devices,
    )
    io.save_arrays(path, **sweep.result_to_arrays(result))
    return result


def _number(value):
    value = float(value)
    return value if math.isfinite(value) else None


def analyse(config, minima_config, sizes, result, train_xy, test_xy, evaluate, bar) -> dict:
    """Certification, paths, alignment and ensembles for one width (JSON-ready)."""
    width, seeds = sizes[1], result.networks.seed
    loss = train.make_loss(config.cost, config.activation)
    num_params = model.num_params(sizes)
    last = {k: v[-1] for k, v in result.metrics.items()}
    params = jax.tree.map(jnp.asarray, result.params)

    # Both ends of the spectrum from one Krylov space per network, all networks at once.
    key = jax.random.key(config.seed)
    low, high = jax.jit(
        jax.vmap(
            lambda p: curvature.extreme_eigenvalues(
                loss, p, *train_xy, key=key, num_iters=minima_config.lanczos_iters
            )
        )
    )(params)
    low, high = np.asarray(low, float), np.asarray(high, float)
    dense = num_params <= minima_config.dense_max_params
    hessian = jax.jit(lambda p: curvature.dense_hessian(loss, p, *train_xy)) if dense else None

    init_keys, _ = sweep.keys(seeds)
    rows = []
    for i, seed in enumerate(seeds):
        p = _network(params, i)
        init = model.init_params(init_keys[i], sizes, config.init)
        to_end = landscape.path(evaluate, init, p, *train_xy, num=minima_config.path_points)
        rises = np.diff(to_end["cost"])
        row = {
            "width": width,
            "seed": int(seed),
            "num_params": num_params,
            "final_train_cost": _number(last["train_cost"][i]),
            "final_train_accuracy": _number(last["train_accuracy"][i]),
            "final_test_cost": _number(last["test_cost"][i]),
            "final_test_accuracy": _number(last["test_accuracy"][i]),
            "grad_norm": _number(last["grad_norm"][i]),
            "lambda_max": _number(high[i]),
            "lambda_min": _number(low[i]),
            "negative_eigenvalues": None,
            "converged_epoch": int(result.converged_epoch[i]),
            "init_path_monotone": bool(np.all(rises <= 1e-6 * abs(to_end["cost"][0]))),
            "init_path_max_rise": float(max(0.0, rises.max())),
            "init_path_costs": [float(c) for c in to_end["cost"]],
        }
        if dense:
            row["negative_eigenvalues"] = curvature.negative_eigenvalue_count(
                hessian(p), rtol=minima_config.negative_tol
            )
        cost = row["final_train_cost"]
        row["classification"] = classify(
            row["grad_norm"] if row["grad_norm"] is not None else math.inf,
            low[i], high[i], cost if cost is not None else math.inf,
            grad_tol=minima_config.grad_tol, negative_tol=minima_config.negative_tol, bar=bar,
        )  # fmt: skip
        if row["classification"] == MINIMUM and (row["negative_eigenvalues"] or 0) > 0:
            row["classification"] = SADDLE  # the dense spectrum sees what Lanczos missed
        rows.append(row)

    pairs, example = [], None
    for a, b in itertools.islice(
        itertools.combinations(range(len(seeds)), 2), minima_config.max_pairs
    ):
        pa, pb = _network(params, a), _network(params, b)
        aligned, _, _ = landscape.align(pa, pb, config.activation)
        aligned = jax.tree.map(jnp.asarray, aligned)
        naive_path = landscape.path(evaluate, pa, pb, *train_xy, num=minima_config.path_points)
        aligned_path = landscape.path(
            evaluate, pa, aligned, *train_xy, num=minima_config.path_points
        )
        naive_test = landscape.path(evaluate, pa, pb, *test_xy, num=minima_config.path_points)
        pairs.append(
            {
                "width": width,
                "seed_a": int(seeds[a]),
                "seed_b": int(seeds[b]),
                "class_a": rows[a]["classification"],
                "class_b": rows[b]["classification"],
                "naive_barrier": landscape.barrier(naive_path["cost"]),
                "aligned_barrier": landscape.barrier(aligned_path["cost"]),
                "distance": landscape.distance(pa, pb),
                "aligned_distance": landscape.distance(pa, aligned),
                "naive_test_accuracy_drop": float(
                    0.5 * (naive_test["accuracy"][0] + naive_test["accuracy"][-1])
                    - naive_test["accuracy"].min()
                ),
                "disagreement": disagreement(config, pa, pb, test_xy[0]),
            }
        )
        if example is None:
            example = {
                "alpha": naive_path["alpha"].tolist(),
                "naive": naive_path["cost"].tolist(),
                "aligned": aligned_path["cost"].tolist(),
            }
    example["init_paths"] = [r.pop("init_path_costs") for r in rows]
    return {
        "rows": rows,
        "pairs": pairs,
        "example": example,
        "ensemble": ensemble_rows(config, width, params, len(seeds), test_xy),
    }


def _outputs(config, params, x):
    _, output = costs.COSTS[config.cost]
    return model.predict(params, x, activation=config.activation, output=output)


def disagreement(config, params_a, params_b, x) -> float:
    """The fraction of examples on which the two networks predict different labels."""
    a = jnp.argmax(_outputs(config, params_a, x), axis=-1)
    b = jnp.argmax(_outputs(config, params_b, x), axis=-1)
    return float(jnp.mean(a != b))


def ensemble_rows(config, width, params, count, test_xy) -> list[dict]:
    """Accuracy of the first k networks averaged (outputs, or softmax probabilities),
    against the mean accuracy of one network, for k = 1..count."""
    x, labels = test_xy
    outputs = jnp.stack([_outputs(config, _network(params, i), x) for i in range(count)])
    if config.cost == "cross_entropy":
        outputs = jax.nn.softmax(outputs, axis=-1)
    single = jnp.mean(jnp.argmax(outputs, axis=-1) == labels[None], axis=-1)
    rows = []
    for k in range(1, count + 1):
        vote = jnp.argmax(jnp.mean(outputs[:k], axis=0), axis=-1)
        rows.append(
            {
                "width": width,
                "k": k,
                "ensemble_accuracy": float(jnp.mean(vote == labels)),
                "mean_single_accuracy": float(jnp.mean(single)),
            }
        )
    return rows


def _stats(values) -> dict:
    v = np.asarray([x for x in values if x is not None], float)
    if not v.size:
        return dict.fromkeys(("mean", "std", "iqr", "min", "max", "range"))
    q1, q3 = np.percentile(v, [25, 75])
    return {
        "mean": float(v.mean()),
        "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
        "iqr": float(q3 - q1),
        "min": float(v.min()),
        "max": float(v.max()),
        "range": float(v.max() - v.min()),
    }


def spread_rows(rows: list[dict]) -> list[dict]:
    """Per width: how the endpoints' quality spreads over seeds.

    Worst − best is reported as a positive ``range`` (for accuracy best − worst, for
    costs worst − best), beside the mean, standard deviation and interquartile range,
    and the correlation across seeds of training and test cost.
    """
    table = []
    for width in sorted({r["width"] for r in rows}):
        mine = [r for r in rows if r["width"] == width]
        row = {"width": width, "num_params": mine[0]["num_params"], "seeds": len(mine)}
        for key, name in (
            ("final_train_cost", "train_cost"),
            ("final_test_cost", "test_cost"),
            ("final_test_accuracy", "test_accuracy"),
        ):
            for stat, value in _stats(r[key] for r in mine).items():
                row[f"{name}_{stat}"] = value
        train_cost = np.array([r["final_train_cost"] or np.nan for r in mine], float)
        test_cost = np.array([r["final_test_cost"] or np.nan for r in mine], float)
        ok = np.isfinite(train_cost) & np.isfinite(test_cost)
        row["train_test_cost_correlation"] = (
            float(np.corrcoef(train_cost[ok], test_cost[ok])[0, 1])
            if ok.sum() > 2 and np.std(train_cost[ok]) > 0 and np.std(test_cost[ok]) > 0
            else None
        )
        for kind in (MINIMUM, SADDLE, PLATEAU, UNCONVERGED):
            row[kind] = sum(r["classification"] == kind for r in mine)
        table.append(row)
    return table


def summarize(config, minima_config, rows, pairs, spread, ensembles, bar) -> dict:
    per_width = []
    for s in spread:
        width = s["width"]
        mine = [p for p in pairs if p["width"] == width]
        both = [p for p in mine if p["class_a"] == p["class_b"] == MINIMUM]
        median = lambda key, group: float(np.median([p[key] for p in group])) if group else None
        best_ensemble = max(
            (e for e in ensembles if e["width"] == width), key=lambda e: e["k"], default=None
        )
        per_width.append(
            {
                **{
                    k: s[k]
                    for k in ("width", "num_params", "seeds", MINIMUM, SADDLE, PLATEAU, UNCONVERGED)
                },
                "test_accuracy_range": s["test_accuracy_range"],
                "test_accuracy_std": s["test_accuracy_std"],
                "train_cost_range": s["train_cost_range"],
                "pairs": len(mine),
                "median_naive_barrier": median("naive_barrier", mine),
                "median_aligned_barrier": median("aligned_barrier", mine),
                "median_naive_barrier_between_minima": median("naive_barrier", both),
                "median_aligned_barrier_between_minima": median("aligned_barrier", both),
                "median_distance": median("distance", mine),
                "median_aligned_distance": median("aligned_distance", mine),
                "median_disagreement": median("disagreement", mine),
                "ensemble_accuracy": best_ensemble["ensemble_accuracy"] if best_ensemble else None,
                "mean_single_accuracy": best_ensemble["mean_single_accuracy"]
                if best_ensemble
                else None,
                "init_paths_monotone": sum(
                    r["init_path_monotone"] for r in rows if r["width"] == width
                ),
            }
        )
    return {
        "per_width": per_width,
        "verdict": verdict(config, per_width),
        "learned_cost_bar": bar,
        "certified_minima": sum(r["classification"] == MINIMUM for r in rows),
        "networks": len(rows),
    }


def verdict(config, per_width: list[dict]) -> str:
    """The seed's claim judged in one sentence, with the numbers behind it."""
    parts = [
        f"w={w['width']}: {w[MINIMUM]}/{w['seeds']} certified minima, test accuracy "
        f"best − worst {100 * w['test_accuracy_range']:.2f} points"
        for w in per_width
        if w["test_accuracy_range"] is not None
    ]
    ranges = [w["test_accuracy_range"] for w in per_width if w["test_accuracy_range"] is not None]
    if len(ranges) >= 2:
        trend = "narrows" if ranges[-1] < ranges[0] else "does not narrow"
        claim = (
            f"the spread of quality {trend} from the narrowest to the widest network "
            f"({100 * ranges[0]:.2f} → {100 * ranges[-1]:.2f} points of test accuracy)"
        )
    else:
        claim = "one width only, so no trend"
    return f"On {config.dataset}, {claim}; " + "; ".join(parts) + "."


def write_figures(folder, config, summary, rows, pairs, examples, ensembles, spread, plane):
    figures = [
        ("quality.png", "Quality of the endpoints, per width", minima_plots.quality_figure(rows)),
        ("spread.png", "Spread of quality against width", minima_plots.spread_figure(spread)),
        ("barriers.png", "Barriers and distances, before and after alignment",
         minima_plots.barrier_figure(pairs)),
        ("paths.png", "Straight paths: between endpoints, and from initialisation",
         minima_plots.paths_figure(examples)),
        ("ensemble.png", "Ensembles against single networks",
         minima_plots.ensemble_figure(ensembles)),
    ]  # fmt: skip
    if plane is not None:
        title = (
            f"w={plane['width']}, seed {plane['seed']} ({plane['classification']}): the "
            "training cost on a random plane through it"
        )
        figure = minima_plots.surface_figure(plane, title=title)
        figures.append(("surface.png", "The cost around one endpoint (2-D slice)", figure))
    for name, _, figure in figures:
        io.write_figure(folder / name, figure, dpi=plots.DPI)
    io.write_text(folder / "report.md", report(config, summary, spread, figures))


def report(config, summary, spread, figures) -> str:
    table = lr_sweep.markdown_table
    per_width = summary["per_width"]
    classes = table(
        ["width", "parameters", "minima", "saddles", "plateaus", "unconverged"],
        [[w["width"], w["num_params"], w[MINIMUM], w[SADDLE], w[PLATEAU], w[UNCONVERGED]]
         for w in per_width],
    )  # fmt: skip
    quality = table(
        ["width", "test accuracy mean", "sd", "IQR", "best", "worst", "best − worst",
         "train cost mean", "train cost worst − best", "corr(train, test cost)"],
        [[s["width"], _pct(s["test_accuracy_mean"]), _pct(s["test_accuracy_std"]),
          _pct(s["test_accuracy_iqr"]), _pct(s["test_accuracy_max"]), _pct(s["test_accuracy_min"]),
          _pct(s["test_accuracy_range"]), s["train_cost_mean"], s["train_cost_range"],
          s["train_test_cost_correlation"]] for s in spread],
    )  # fmt: skip
    barriers = table(
        ["width", "pairs", "naive barrier (median)", "aligned barrier (median)",
         "between certified minima: naive / aligned", "distance before → after alignment",
         "test disagreement (median)", "ensemble of all vs one"],
        [[w["width"], w["pairs"], w["median_naive_barrier"], w["median_aligned_barrier"],
          f"{plots.format_value(w['median_naive_barrier_between_minima'])} / "
          f"{plots.format_value(w['median_aligned_barrier_between_minima'])}",
          f"{plots.format_value(w['median_distance'])} → "
          f"{plots.format_value(w['median_aligned_distance'])}",
          _pct(w["median_disagreement"]),
          f"{_pct(w['ensemble_accuracy'])} vs {_pct(w['mean_single_accuracy'])}"]
         for w in per_width],
    )  # fmt: skip
    batch = "full batch" if config.batch_size == 0 else f"batch {config.batch_size}"
    parts = [
        f"# Local minima: {config.dataset}, hidden widths "
        f"{', '.join(str(w['width']) for w in per_width)}\n",
        f"**Verdict.** {summary['verdict']}\n",
        f"Each width trains {per_width[0]['seeds']} seeds with `{config.optimizer}`, η = "
        f"{config.learning_rate:g}, {batch}, up to {config.epochs} epochs, stopping a network "
        f"when ‖∇C‖ falls below the tolerance. Endpoints are certified by ‖∇C‖ and the "
        "extreme Hessian eigenvalues (Lanczos; the dense spectrum where the network is small "
        "enough) and classified: *minimum*, *saddle* (clearly negative λ_min), *plateau* "
        "(critical but no better than a constant output) or *unconverged*.\n",
        f"## Certification\n\n{classes}\n",
        f"## Spread of quality\n\n{quality}\n",
        f"## Paths between endpoints\n\n{barriers}\n",
        "The barrier of a path is max over α of C((1−α)θ_A + αθ_B) minus the mean of its "
        "endpoint costs; *aligned* paths first permute and sign-flip B's hidden units to match "
        "A's (weight matching on the cosine of incoming weights).\n",
    ]
    parts += [f"## {caption}\n\n![{caption}]({name})\n" for name, caption, _ in figures]
    return "\n".join(parts)


def _pct(value) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"
