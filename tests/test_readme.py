"""The README's result tables are generated from the committed run summaries: a table
edited by hand, or left behind by a rerun, fails here; and every flag and every file of
the project a page names exists."""

import json
import re
from pathlib import Path

import numpy as np

from experiments import pages
from experiments import pages as readme
from experiments.pages import bench, common, front, lr, minima

ROOT = Path(__file__).resolve().parent.parent


def test_the_readme_holds_exactly_the_tables_the_committed_results_make():
    expected = readme.render_all(ROOT)
    assert expected, "docs/results holds no run summaries"
    texts = [page.read_text() for page in readme.pages(ROOT)]
    assert readme.stale_pages(texts, expected) == []


def test_every_link_of_every_page_leads_to_a_file_and_the_figures_are_shown():
    links = {}
    for page in readme.pages(ROOT):
        for target in re.findall(r"\]\(([^)#\s]+)[^)]*\)", page.read_text()):
            if "://" not in target:
                links[page.relative_to(ROOT), target] = (page.parent / target).is_file()
    assert [link for link, found in links.items() if not found] == []
    figures = [target for _, target in links if target.endswith(".png")]
    assert len(figures) >= 10  # the studies' figures, on their pages


def test_rewriting_replaces_only_the_blocks_and_is_idempotent():
    text = (
        "# Title\n\nProse 1.\n\n"
        f"{readme.BEGIN.format('one')}\nold table\n{readme.END.format('one')}\n\n"
        "Prose 2.\n"
        f"{readme.BEGIN.format('two')}\nkept\n{readme.END.format('two')}\n"
    )
    once = readme.rewrite(text, {"one": "| new |\n| --- |"})
    assert readme.blocks_in(once) == {"one": "| new |\n| --- |", "two": "kept"}
    assert once.replace("| new |\n| --- |", "old table") == text
    assert readme.rewrite(once, {"one": "| new |\n| --- |"}) == once
    empty = f"{readme.BEGIN.format('one')}\n{readme.END.format('one')}"
    assert readme.blocks_in(readme.rewrite(empty, {"one": "| new |"})) == {"one": "| new |"}


def test_a_hand_edit_a_missing_block_and_an_unknown_block_are_all_seen():
    blocks = {"one": "| a |\n| --- |", "two": "| b |\n| --- |"}
    text = _document(blocks)
    assert readme.stale(text, blocks) == []
    assert readme.stale(text.replace("| a |", "| á |"), blocks) == ["one"]
    assert readme.stale(_document({"one": blocks["one"]}), blocks) == ["two"]
    assert readme.stale(text, {"one": blocks["one"]}) == ["two"]


def _document(blocks: dict) -> str:
    return "\n\n".join(
        f"{readme.BEGIN.format(name)}\n{body}\n{readme.END.format(name)}"
        for name, body in blocks.items()
    )


def test_the_machine_line_counts_runs_per_package_and_says_which_recorded_none():
    made = lambda commit, seconds: {"source": {"commit": commit}, "gd_jax_commit": "a" * 40,
                                    "date": "2026-01-02T00:00:00Z", "seconds": seconds}  # fmt: skip
    results = {
        "machine": {"date": "2026-01-01", "cpu": "X", "cores": 2, "versions": {"jax": "1"}},
        "a": made("b" * 40, 90),
        "b": made("c" * 40, 30),  # a later checkout with the same gd_jax/
    }
    assert front.machine(results).endswith(
        "In `docs/results`: 2 runs by gd_jax/ as at aaaaaaa (2026-01-02), 2 minutes."
    )
    results["c"] = made("b" * 40, None)
    results["d"] = {"seconds": 600}
    assert front.machine(results).endswith(
        "3 runs by gd_jax/ as at aaaaaaa (2026-01-02), 2 minutes (1 resumed, not timed); "
        "1 run by code that did not record its commit, 10 minutes."
    )


def test_a_resumed_run_keeps_the_time_of_the_same_flags_and_no_other(tmp_path, monkeypatch):
    from experiments import reproduce

    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "results")
    (tmp_path / "results").mkdir()
    run = tmp_path / "runs" / "train-digits"
    run.mkdir(parents=True)
    (run / "config.json").write_text('{"kind": "train", "flags": {"epochs": 3}}')
    (run / "summary.json").write_text('{"final_train_cost": 0.1}')

    def kept():
        return json.loads((tmp_path / "results" / "train-digits.json").read_text())["seconds"]

    reproduce.keep("train-digits", tmp_path / "runs", 61.4)
    assert kept() == 61
    reproduce.keep("train-digits", tmp_path / "runs", None)  # resumed: the time stays
    assert kept() == 61
    (run / "config.json").write_text('{"kind": "train", "flags": {"epochs": 4}}')
    reproduce.keep("train-digits", tmp_path / "runs", None)  # other flags: not timed
    assert kept() is None


# Flags of other programs that the pages quote: Slurm's, TensorBoard's, TFDS's and
# absl's own.
FOREIGN_FLAGS = {"nodes", "ntasks", "gpus", "time", "logdir", "manual_dir", "flagfile", "help",
                 "helpfull"}  # fmt: skip


def defined_flags() -> set[str]:
    """Every flag a command of the project takes: the commands' (generated from the
    config fields), and those the scripts of experiments/, benchmarks/ and tools/ define."""
    import re

    from absl import flags

    from gd_jax.cli import local_minima, lr_sweep, toy_descent, train  # noqa: F401

    names = set(flags.FLAGS)
    pattern = re.compile(r"DEFINE_\w+\(\s*\"(\w+)\"|add_argument\(\s*\"--(\w+)\"")
    for folder in ("experiments", "benchmarks", "tools"):
        for path in (ROOT / folder).glob("*.py"):
            names |= {a or b for a, b in pattern.findall(path.read_text())}
    return names


def test_every_flag_a_page_names_exists():
    import re

    known = defined_flags() | FOREIGN_FLAGS
    for page in CHECKED_PAGES:
        named = set(re.findall(r"(?<![\w-])--([a-z][a-z0-9_]*)", page.read_text()))
        unknown = {n for n in named if n not in known and n.removeprefix("no") not in known}
        assert not unknown, f"{page.name} names flags no command takes: {sorted(unknown)}"


# Files a page names as what a script will write, before any machine has run it.
NOT_YET_WRITTEN = {"benchmarks/results/gpu_check.json"}  # benchmarks/gpu_check.sh, on a GPU


def test_every_file_of_the_project_a_page_names_exists():
    import re

    tops = "gd_jax|experiments|benchmarks|tools|docs|tests|examples"
    pattern = re.compile(rf"(?<![\w/.-])((?:{tops})/[\w/.-]*\w)")
    for page in CHECKED_PAGES:
        named = set(pattern.findall(page.read_text()))
        missing = sorted(n for n in named - NOT_YET_WRITTEN
                         if "*" not in n and not (ROOT / n).exists())  # fmt: skip
        assert not missing, f"{page.name} names files that do not exist: {missing}"


def test_the_rerun_parts_hold_every_run_once():
    from experiments import reproduce

    parts = [name for names in reproduce.PARTS.values() for name in names]
    assert sorted(parts) == sorted(reproduce.RUNS) and len(set(parts)) == len(parts)
    assert all(reproduce.PARTS.values())


def test_a_block_may_live_on_any_page_and_every_copy_is_checked():
    one = f"{readme.BEGIN.format('one')}\n| a |\n{readme.END.format('one')}"
    two = f"{readme.BEGIN.format('two')}\n| b |\n{readme.END.format('two')}"
    blocks = {"one": "| a |", "two": "| b |"}
    assert readme.stale_pages([f"# README\n{one}\n", f"# Page\n{two}\n"], blocks) == []
    assert readme.stale_pages([f"{one}\n", f"{one}\n"], blocks) == ["two"]  # nowhere
    assert readme.stale_pages([f"{one}\n{two}\n", one.replace("| a |", "| á |")],
                              blocks) == ["one"]  # fmt: skip


# Pages the checks read: those with generated blocks, and the benchmarks' guide.
CHECKED_PAGES = [*readme.pages(ROOT), ROOT / "benchmarks" / "README.md"]
# A number with a unit of time or memory outside a generated block is typed by hand,
# unless it is a setting or a bar the code defines, not a measurement.
DEFINED = ("2 GiB by default", "about 11 MB", "for 3 seconds", "every 30 s", "under 2 s",
           "under 4 GiB", "GFLOP per epoch", "GFLOP for one", "at least 1 s")  # fmt: skip
MEASURED = re.compile(
    r"\d[\d,.]*\s?(?:s|ms|µs|min|minutes|seconds|hours|GiB|MiB|GB|MB|GFLOP/s)\b|\d\.\d+×|(?<!\d)×\d"
)


def typed_numbers(text: str) -> list[str]:
    """The measured-looking numbers of ``text`` outside its generated blocks, fenced
    code and the settings above."""
    text = re.sub(r"<!-- BEGIN GENERATED: ([\w-]+) -->.*?<!-- END GENERATED: \1 -->", "",
                  text, flags=re.S)  # fmt: skip
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    for phrase in DEFINED:
        text = text.replace(phrase, "")
    return [m.group(0) for m in MEASURED.finditer(text)]


def test_no_page_types_a_time_a_size_or_a_speed_up_by_hand():
    assert typed_numbers("took 4 min 9 s, peaked at 0.95 GiB, 1.71× NumPy") == [
        "4 min", "9 s", "0.95 GiB", "1.71×"]  # fmt: skip
    block = f"{readme.BEGIN.format('x')}\n12.3 s\n{readme.END.format('x')}"
    assert typed_numbers(f"{block}\n```\n5 s\n```\n(2 GiB by default)") == []
    found = {page.relative_to(ROOT): typed_numbers(page.read_text()) for page in CHECKED_PAGES}
    assert {page: numbers for page, numbers in found.items() if numbers} == {}


def test_the_first_order_finding_names_where_each_prediction_stops_holding():
    row = lambda eta, first, second: {"learning_rate": eta, "ratio_to_first_order": first,
                                      "ratio_to_second_order": second, "first_order": -1.0,
                                      "second_order": -1.0 - first}  # fmt: skip
    s = {"first_order_at_init": [row(0.1, 1.0, 1.0), row(1.0, 0.95, 0.99),
                                 row(3.0, 0.7, 0.95), row(10.0, 0.3, 0.5)],
         "two_over_lambda_max_init": 4.0}  # fmt: skip
    text = lr.lr_first_order(s)
    assert "1.000 at η = 0.1, below 0.9 from η = 3 on (0.700)" in text
    assert "within 10% up to η = 3 and not from η = 10 on (0.500)" in text
    assert "2/λ_max at initialisation: 4" in text and "above 1" not in text
    s["first_order_at_init"][1] = row(1.0, 1.004, 0.999)  # negative curvature: above 1
    assert "above 1 at η = 1 (up to 1.004), where ∇CᵀH∇C < 0" in lr.lr_first_order(s)
    assert lr.held_up_to(s["first_order_at_init"], "ratio_to_first_order") == 1.0


def test_the_sharpness_table_says_up_to_which_eta_every_seed_stays_below_two_over_eta():
    # Two seeds, samples at steps 0, 10, 20, 30: η = 1 stays below 2/η = 2; η = 10
    # crosses 2/η = 0.2; η = 20 is above 2/η = 0.1 throughout; η = 30 below again.
    lam = [
        [0.5] * 8,
        [1.0, 1.1, 0.3, 0.3, 0.5, 0.5, 0.01, 0.01],
        [1.0, 1.0, 0.1, 0.3, 0.5, 0.5, 0.01, 0.01],
        [1.5, 1.2, 0.25, 0.15, 0.4, 0.5, 0.02, 0.03],
    ]
    record = {"trace": {"learning_rate": [1, 1, 10, 10, 20, 20, 30, 30], "seed": [0, 1] * 4,
                        "sample_steps": [0, 10, 20, 30], "diverged_step": [-1] * 8,
                        "lambda_max": lam, "cost": [[0.1] * 8] * 4}}  # fmt: skip
    text = lr.lr_sharpness(record)
    assert "stays below 2/η for every seed at every η up to 1;" in text
    assert "it crosses 2/η at η = 10 (0.5–1.5 times 2/η)" in text
    assert "it stays above 2/η at η = 20" in text
    assert "| 1 | 2 | 0.5 | 1.05 | 1.35 | 1–1.5 | 0.1 |" in text


def test_the_line_under_a_block_names_its_files_and_what_made_them():
    made = {"source": {"commit": "a" * 40, "modified": False}, "date": "2026-12-07T10:00:00Z",
            "machine": {"cpu": "AMD EPYC", "cores": 2},
            "path": {"epoch_path": "delayed", "head": "native"}}  # fmt: skip
    results = {"one": made, "two": {**made, "earlier_sources": [{"commit": "b" * 40}]},
               "old": {"summary": {}}}  # fmt: skip
    assert common.made_by(results, ["one"]) == (
        "*From `docs/results/one.json`: commit aaaaaaa, 2026-12-07, AMD EPYC (2 cores), "
        "path delayed, head native.*")  # fmt: skip
    assert "commit aaaaaaa (resumed from bbbbbbb)" in common.made_by(results, ["two"])
    results["one"]["gd_jax_commit"] = "d" * 40  # a later checkout, the same package
    assert "commit aaaaaaa (gd_jax/ as at ddddddd), 2026" in common.made_by(results, ["one"])
    assert common.made_by(results, ["old"]).endswith(
        "made by code that did not record its commit.*"
    )
    made = {"job": {"date": "2026-12-03"}, "results": {"environment": {
        "source": {"commit": "c" * 40, "modified": True}, "date": "2026-12-07",
        "machine": {"cpu": "X", "cores": 2}, "devices": ["TFRT_CPU_0"],
        "versions": {"jax": "0.10.2"}}}}  # fmt: skip
    assert bench.bench_made_by(made, ["results"]) == (
        "*From `benchmarks/results/results.json`: commit ccccccc with gd_jax/ modified, "
        "2026-12-07, X (2 cores), TFRT_CPU_0; jax 0.10.2.*")  # fmt: skip
    assert "did not record its commit (2026-12-03)" in bench.bench_made_by(made, ["job"])


def test_which_randomness_compares_the_population_the_study_judges():
    def run(accuracies, classes, decay=10.0):
        points = [
            {
                "width": 16,
                "seed": i,
                "classification": c,
                "sgd_train_cost": 0.1,
                "final_train_cost": 0.1,
                "sgd_test_accuracy": a - 0.01,
                "final_test_accuracy": a,
            }
            for i, (a, c) in enumerate(zip(accuracies, classes, strict=True))
        ]
        return {"summary": {"learned_cost_bar": 0.4}, "points": points,
                "flags": {"weight_decay": decay}}  # fmt: skip

    wide, narrow = [0.70, 0.80, 0.90, 0.75, 0.85], [0.80, 0.801, 0.799, 0.8, 0.802]
    results = {"minima-fashion-wd": run(wide, ["minimum"] * 5),
               "minima-fashion-wd-init": run(wide, ["minimum"] * 5),
               "minima-fashion-wd-order": run(narrow, ["minimum"] * 5),
               "minima-fashion-no-wd-order": run(narrow, ["descending"] * 5, 0.0)}  # fmt: skip
    text = minima.minima_vary(results)
    assert "| λ = 10 | data order only | certified minima (5) | 80.04% | 0.11 [" in text
    assert "| none | data order only | SGD endpoints (5) |" in text  # no minima: SGD
    assert (
        "Weight decay λ = 10, of the certified minima: sd in points 7.91 (initialisation "
        "and data order), 7.91 (initialisation only), 0.11 (data order only)"
    ) in text
    assert "Brown–Forsythe p = 0.0" in text or "Brown–Forsythe p < 0.001" in text
    assert "Weight decay none" not in text  # one source alone: nothing to compare


def test_the_minima_sentence_says_no_critical_point_only_where_none_was_certified():
    def run(decay, **classes):
        width = {"width": 16, **classes}
        return {"summary": {"weight_decay": decay, "networks": sum(classes.values()),
                            "per_width": [width], "certified_minima": classes.get("minimum", 0),
                            "certified_saddles": classes.get("saddle", 0),
                            "verdict": "the minima are of equal quality."}}  # fmt: skip

    results = {"minima-digits-normal": run(0, descending=3, unconverged=1),
               "minima-digits-scaled": run(0, descending=4)}  # fmt: skip
    text = front._minima_sentence(results)
    assert "of 8 SGD endpoints (2 runs) ends at 7 descending, 1 unconverged: no critical " in text
    results["minima-fashion-no-wd"] = run(0, minimum=1, descending=3)
    text = front._minima_sentence(results)
    assert "of 12 SGD endpoints (3 runs) ends at 1 minimum, 10 descending, 1 unconverged" in text
    assert "no critical point" not in text  # one was certified: the expectation is not met
    results["minima-fashion-wd"] = run(10, minimum=5)
    text = front._minima_sentence(results)
    assert (
        "; with weight decay λ = 10 on Fashion-MNIST, 5 of 5 points are certified minima, " in text
    )
    assert text.endswith("reads: the minima are of equal quality: [the local-minima study]"
                         "(docs/minima-study.md).")  # fmt: skip
    assert front._minima_sentence({}) is None


def test_the_lambda_table_names_the_smallest_lambda_whose_points_are_all_minima():
    def run(lam, classes, accuracy, width=16):
        points = [{"width": width, "classification": c, "lbfgs_steps": 500 * (i + 1),
                   "final_train_cost": 0.2, "penalty": 0.05 if lam else None,
                   "param_norm": 20.0} for i, c in enumerate(classes)]  # fmt: skip
        polish = {"median_sgd_test_accuracy": 0.7, "median_final_test_accuracy": accuracy}
        return {"flags": {"weight_decay": lam, "train_size": 10000, "polish_steps": 4000},
                "summary": {"certified": [p for p in points if p["classification"] == "minimum"],
                            "uncertified": [p for p in points if p["classification"] != "minimum"],
                            "per_width": [{"width": width, "polish": polish}]}}  # fmt: skip

    results = {"minima-fashion-lambda-20": run(20.0, ["minimum"] * 2, 0.65),
               "minima-fashion-lambda-1": run(1.0, ["descending", "descending"], 0.84),
               "minima-fashion-lambda-10": run(10.0, ["minimum", "minimum"], 0.77),
               "minima-fashion-lambda-5": run(5.0, ["minimum", "unconverged"], 0.82),
               "minima-fashion-lambda-5-other-widths": run(5.0, ["minimum"] * 3, 0.8, 64),
               # the study itself, at λ = 10: its own points at width 64
               "minima-fashion-wd": run(10.0, ["minimum"] * 4, 0.78, 64)}  # fmt: skip
    text = minima.minima_lambda(results)
    rows = [line for line in text.splitlines()[2:] if line.startswith("| ")]
    # by width, then λ
    assert [r.split(" | ")[:3] for r in rows] == [
        ["| 1", "0.0001", "16"], ["| 5", "0.0005", "16"], ["| 10", "0.001", "16"],
        ["| 20", "0.002", "16"], ["| 5", "0.0005", "64"]]  # fmt: skip
    # the cost minimised is C₀ + penalty = 0.25, of which the penalty is 20%
    assert (
        "| 5 | 0.0005 | 16 | 1 minimum, 1 unconverged | 500–1,000 of 4,000 | 0.25 | 20.00% | 20 | "
        "70.00% | 82.00% |" in text
    )
    assert "| 1 | 0.0001 | 16 | 2 descending | 500–1,000 of 4,000 | 0.25 | 20.00% |" in text
    assert ("At width 16, the smallest λ tried at which every point is a certified minimum "
            "within the budget is λ = 10; the polished points' median test accuracy is 84.00% "
            "at λ = 1, 82.00% at λ = 5, 77.00% at λ = 10, 65.00% at λ = 20.") in text  # fmt: skip
    # at width 64 only λ = 5 was tried; the study's λ = 10 took up to 2,000 steps there
    assert ("At width 64, the smallest λ tried at which every point is a certified minimum "
            "within the budget is λ = 5; at λ = 10, the λ of the study above, the polish took "
            "at most 2,000 L-BFGS steps, at λ = 5 at most 1,500; the polished points' median "
            "test accuracy is 80.00% at λ = 5.") in text  # fmt: skip
    del results["minima-fashion-lambda-10"], results["minima-fashion-lambda-20"]
    assert "At width 16, at no λ tried is every point a certified minimum" in (
        minima.minima_lambda(results)
    )
    assert set(pages.render(results)) >= {"minima-lambda"}


def test_the_weight_decay_beside_table_shows_the_cost_minimised_and_the_penalty_share():
    def run(lam):
        point = {
            "width": 4,
            "classification": "minimum",
            "final_train_cost": 0.3,
            "penalty": 0.1 if lam else None,
            "param_norm": 10.0,
            "saturation": 0.05,
        }
        width = {"width": 4, "minimum": 1, "minima_test_accuracy_n": 0, "sgd_test_accuracy_n": 0}
        return {
            "flags": {"weight_decay": lam, "epochs": 30},
            "summary": {"certified": [point], "uncertified": [], "per_width": [width]},
        }

    text = minima.minima_beside({"minima-fashion-wd": run(7.5), "minima-fashion-no-wd": run(0)})
    assert "| 4 | λ = 7.5 | 1 minimum | 0.4 | 25.00% | 10 | 5.00% |" in text
    assert "| 4 | none | 1 minimum | 0.3 | — | 10 | 5.00% |" in text


def test_each_fast_path_is_compared_with_the_plain_path_of_the_same_case():
    def case(network, batch, path, seconds):
        return {"network": network, "batch_size": batch, "taken": {"epoch_path": path},
                "seconds_per_epoch": seconds}  # fmt: skip

    cases = [case("784-30-10", 10, "delayed", 0.3), case("784-16-16-10", 10, "delayed", 0.15),
             case("784-30-10", None, "column", 0.05), case("784-30-10", 10, "plain", 0.2),
             case("784-16-16-10", 10, "plain", 0.2)]  # fmt: skip
    # The column case has no plain full-batch case to be compared with: it is left out.
    assert bench._against_plain(cases) == [
        "1.50× (784-30-10, batch 10, delayed)", "0.75× (784-16-16-10, batch 10, delayed)"
    ]  # fmt: skip


def test_the_eta_sentence_says_beyond_two_over_lambda_max_only_where_every_seed_is():
    def run(*largest):
        stability = [{"full_batch_largest_trained_eta": eta, "two_over_lambda_max": 2.0}
                     for eta in largest]  # fmt: skip
        return {"summary": {"best_learning_rate": 1.0, "stability": stability}}

    said = lambda results: front._eta_sentence(results).split("**How large can η be?** ")[1]
    assert said({"lr-digits": run(3.0, 5.0)}).startswith(
        "Beyond 2/λ_max at initialisation: on digits the best η is 1, full-batch descent "
        "trains up to 1.5–2.5 times"
    )  # fmt: skip
    assert said({"lr-digits": run(1.0, 2.0)}).startswith("Not beyond 2/λ_max")
    mixed = said({"lr-digits": run(1.0, 3.0), "lr-fashion": run(3.0)})
    assert mixed.startswith("On digits the best η is 1,")
    assert "; on Fashion-MNIST the best η is 1, full-batch descent trains up to 1.5 times" in mixed


def test_the_first_order_sentence_says_small_steps_only_where_a_larger_step_broke_it():
    def run(*ratios):
        rows = [{"learning_rate": eta, "ratio_to_first_order": r, "ratio_to_second_order": r}
                for eta, r in zip((0.1, 1.0, 10.0), ratios, strict=False)]  # fmt: skip
        return {"summary": {"first_order_at_init": rows}}

    text = front._lr_sentence({"lr-digits": run(1.0, 0.95, 0.5)})
    assert text.startswith("**Does the cost fall by −η‖∇C‖²?** For small steps only: ")
    assert "within 10% of it on digits up to η = 1 (with the second-order term up to η = 1)" in text
    text = front._lr_sentence({"lr-digits": run(1.0, 0.95, 0.92)})
    assert "?** At every η tried: " in text


def test_the_range_finding_says_on_which_side_of_the_best_eta_the_steepest_descent_lies():
    s = lambda steepest: {"best_learning_rate": 4.0,
                          "range_test": {"steepest_eta": steepest, "min_eta": 9.0}}  # fmt: skip
    assert "(40 times below the sweep's best η, 4)" in lr.lr_range_finding(s(0.1))
    assert "(2 times above the sweep's best η, 4)" in lr.lr_range_finding(s(8.0))
    assert "(at the sweep's best η, 4)" in lr.lr_range_finding(s(4.0))


def test_a_results_file_keeps_what_the_pages_compare_across_runs(tmp_path):
    import numpy as np

    from experiments import reproduce

    (tmp_path / "results.csv").write_text(
        "width,seed,classification,sgd_train_cost,final_train_cost,sgd_test_accuracy,"
        "final_test_accuracy,other\n4,0,minimum,0.2,0.1,0.8,0.85,x\n4,1,descending,0.3,,0.7,0.72,y\n"
    )
    points = reproduce.extras(tmp_path, "local_minima")["points"]
    assert points[0] == {"width": 4, "seed": 0, "classification": "minimum", "sgd_train_cost": 0.2,
                         "final_train_cost": 0.1, "sgd_test_accuracy": 0.8,
                         "final_test_accuracy": 0.85}  # fmt: skip
    assert points[1]["final_train_cost"] is None
    np.savez(tmp_path / "trace.npz", learning_rate=np.array([1.0, 2.0]), seed=np.array([0, 0]),
             sample_steps=np.array([0, 5]), diverged_step=np.array([-1, 3]),
             lambda_max=np.array([[0.123456, np.nan], [0.5, 0.25]]),
             cost=np.ones((2, 2)))  # fmt: skip
    trace = reproduce.extras(tmp_path, "lr_sweep")["trace"]
    assert trace["lambda_max"] == [[0.1235, None], [0.5, 0.25]]
    assert trace["diverged_step"] == [-1, 3] and reproduce.extras(tmp_path, "train") == {}


def test_powers_of_ten_read_as_powers():
    assert common.power(1e-7) == "10⁻⁷" and common.power(100.0) == "10²"
    assert common.power(0.3) == "0.3"


def test_keeping_a_run_without_running_it_refuses_an_unfinished_one(tmp_path):
    import subprocess
    import sys

    (tmp_path / "train-digits").mkdir()  # started, never finished: no summary.json
    command = [sys.executable, "-m", "experiments.reproduce", "--keep_only",
               "--only=train-digits", f"--runs_dir={tmp_path}"]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert "--keep_only:" in done.stderr and "holds no finished run" in done.stderr
    assert not (tmp_path / "train-digits" / "config.json").exists()  # nothing was run


def test_the_checks_sentence_counts_the_poor_endpoints_in_words_that_agree():
    def run(outcomes):
        escapes = [{"outcome": o} for o in outcomes]
        return {"flags": {"epochs": 30},
                "summary": {"networks": 4, "certified_minima": 0, "certified": [],
                            "escapes": escapes}}  # fmt: skip

    one = minima.minima_checks({"minima-digits-normal": run(["stays poor", "not poor"])})
    assert "of the 2 poorest SGD endpoints tried, 1 was poor (" in one
    assert one.endswith("1 reached the others' lower quartile neither way.")
    two = minima.minima_checks(
        {"minima-digits-normal": run(["stays poor", "escapes by training on"])}
    )
    assert "of the 2 poorest SGD endpoints tried, 2 were poor (" in two
    assert "1 reached the others' lower quartile neither way, 1 reached the others' lower " in two
    none = minima.minima_checks({"minima-digits-normal": run(["not poor", "not poor"])})
    assert none.endswith("; none of the 2 poorest SGD endpoints tried was poor.")


def _split(record: dict, study: str, size: int) -> dict:
    """``record``'s points as parts of ``study`` of ``size`` seeds each (the published
    runs of width 64 are made so), each with the record's per-width summary."""
    found = {}
    for first in range(0, record["summary"]["networks"], size):
        mine = lambda p, first=first: first <= p["seed"] < first + size
        summary = {**record["summary"],
                   "certified": [p for p in record["summary"]["certified"] if mine(p)],
                   "uncertified": [p for p in record["summary"]["uncertified"] if mine(p)],
                   "per_width": [{**w, "seeds": size, "minima": sum(
                       mine(p) for p in record["summary"]["certified"]), **{
                       c: sum(mine(p) and p["classification"] == c for p in record["points"])
                       for c, _ in minima.CLASS_NAMES}}
                       for w in record["summary"]["per_width"]]}  # fmt: skip
        found[f"{study}-64-seeds-{first}"] = {
            **record, "flags": {**record["flags"], "seed": first, "seeds": size},
            "summary": summary, "points": [p for p in record["points"] if mine(p)]}  # fmt: skip
    return found


def test_a_width_made_in_parts_pools_to_the_spread_the_study_computes_of_all_its_points():
    # A published study of 32 seeds at width 16, cut into four parts of 8 seeds: pooled,
    # the parts give the spread the study itself computed of its 32 points.
    record = json.loads((ROOT / "docs/results/minima-fashion-wd-init.json").read_text())
    whole = record["summary"]["per_width"][0]
    empty = {"per_width": [], "certified": [], "uncertified": []}
    results = {"minima-fashion-wd": {**record, "summary": {**record["summary"], **empty},
                                     "points": []},
               **_split(record, "minima-fashion-wd", 8)}  # fmt: skip
    assert minima.parts(results, "minima-fashion-wd") == [
        f"minima-fashion-wd-64-seeds-{first}" for first in (0, 8, 16, 24)]  # fmt: skip
    pooled = minima.pooled_width(results, "minima-fashion-wd", 16)
    assert pooled["seeds"] == 32 and pooled["minima"] == 32
    for population in ("sgd", "minima"):
        for key in ("n", "mean", "sd", "sd_low", "sd_high", "sd_bonett_low", "mad"):
            field = f"{population}_test_accuracy_{key}"
            assert np.isclose(pooled[field], whole[field], rtol=1e-12), field
        field = f"{population}_test_accuracy_outliers"
        # the same seeds flagged (values are published rounded to 6 digits there too)
        assert [o.split(":")[0] for o in pooled[field].split()] == [
            o.split(":")[0] for o in (whole[field] or "").split()]  # fmt: skip
        # equal floors pool to that floor
        assert np.isclose(pooled[f"{population}_test_accuracy_floor"],
                          whole[f"{population}_test_accuracy_floor"])  # fmt: skip
    assert len(minima.pooled_points(results, "minima-fashion-wd", 16)) == 32
    # the block names every results file it read, the parts included
    assert "`docs/results/minima-fashion-wd-64-seeds-24.json`" in pages.render(results)[
        "minima-beside"]  # fmt: skip
    # one width alone: measured, not compared, as the study's own verdict says
    verdict = minima.pooled_verdict(results, "minima-fashion-wd")
    assert verdict.startswith("Per width: w=16: 32 of 32 learned certified minima (32 minima). "
                              "Judged on the learned certified minima: ")  # fmt: skip
    own = record["summary"]["verdict"]
    assert verdict.split("Judged on the learned certified minima: ")[1] == own[own.index("The ") :]
    assert minima.pooled_verdict({"minima-fashion-wd": record}, "minima-fashion-wd") is None


def test_the_pooled_floor_is_the_root_mean_square_of_the_parts_weighted_by_points():
    from gd_jax.studies.minima import spread

    def part(first, n, floor, accuracy, width=64):
        points = [{"width": width, "seed": first + i, "classification": "minimum",
                   "sgd_train_cost": 0.3, "final_train_cost": 0.3, "sgd_test_accuracy": a,
                   "final_test_accuracy": a} for i, a in enumerate(accuracy)]  # fmt: skip
        summary = {"width": width, "seeds": n, "minima": n, "minimum": n}
        for population in ("sgd", "minima"):  # as the study's own summary has them
            found = {**spread.spread(accuracy), "floor": floor, "outliers": ""}
            found.update(spread.beyond_floor(found["sd"], found["n"], floor))
            summary.update({f"{population}_test_accuracy_{k}": v for k, v in found.items()})
        return {"flags": {"seed": first, "seeds": n},
                "summary": {"per_width": [summary], "learned_cost_bar": 0.4,
                            "certified": points, "uncertified": []}, "points": points}  # fmt: skip

    results = {
        "minima-fashion-wd": part(0, 3, 0.001, [0.70, 0.71, 0.72], width=16),
        "minima-fashion-wd-64-seeds-0": part(0, 1, 0.003, [0.80]),
        "minima-fashion-wd-64-seeds-8": part(8, 3, 0.001, [0.81, 0.82, 0.83]),
    }
    pooled = minima.pooled_width(results, "minima-fashion-wd", 64)
    assert np.isclose(pooled["minima_test_accuracy_floor"], np.sqrt((0.003**2 + 3 * 0.001**2) / 4))
    assert pooled["minima_test_accuracy_n"] == 4 and pooled["seeds"] == 4
    assert np.isclose(pooled["minima_test_accuracy_mean"], 0.815)
    # width 16 is the study's alone: its own summary, not pooled
    assert minima.pooled_width(results, "minima-fashion-wd", 16)["seeds"] == 3
    verdict = minima.pooled_verdict(results, "minima-fashion-wd")
    assert "w=16: 3 of 3 learned certified minima (3 minima); w=64: 4 of 4" in verdict
    # the tests across widths are of all the points: 3 at width 16, 4 pooled at 64
    tests = spread.across({16: [0.70, 0.71, 0.72], 64: [0.80, 0.81, 0.82, 0.83]})
    assert f"Brown–Forsythe {spread._p(tests['brown_forsythe_p'])}" in verdict
    assert "(w=16, n=3) → 1.29 [" in verdict and "(w=64, n=4)" in verdict
