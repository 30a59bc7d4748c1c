# The two commands: `make demo` and `make test`. Each sets up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench reproduce pages clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,tfds]'
	touch $(STAMP)

# The main job on the embedded digits, offline: one training run, the intuition
# figures, the learning-rate study (13 η from 0.01 to 100, 3 seeds each) and the
# local-minima study (widths 4, 16 and 64, 8 seeds each).
demo: $(STAMP)
	rm -rf runs/demo
	$(PY) -m experiments.train --dataset=digits --layers=16,16 --learning_rate=3.0 \
	  --batch_size=10 --epochs=30 --workdir=runs/demo/train
	$(PY) -m experiments.toy_descent --workdir=runs/demo/toy
	$(PY) -m experiments.lr_sweep --dataset=digits --layers=16,16 --batch_size=10 \
	  --epochs=30 --learning_rates=logspace:0.01:100:13 --seeds=3 \
	  --full_batch_steps=500 --track_sharpness_every=25 --workdir=runs/demo/lr_sweep
	$(PY) -m experiments.local_minima --dataset=digits --layers=16,16 --batch_size=10 \
	  --learning_rate=3.0 --epochs=60 --widths=4,16,64 --seeds=8 --workdir=runs/demo/minima
	@echo "Reports: runs/demo/{train,toy,lr_sweep,minima}/report.md"

# Two workers: most tests wait on XLA's single-threaded compiler, so two run side by side
# on 2 cores. Work stealing keeps both busy to the end (with one file per worker, the
# longest file ran alone: 11:52 against 10:57 for the same suite). The 15 slowest are
# listed at the end: the suite's time budget is 10 minutes on 2 cores.
test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist worksteal --durations=15

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

bench: $(STAMP)
	$(PY) -m benchmarks.epoch

# Reruns every run and benchmark the pages (README.md, docs/) quote (Fashion-MNIST ones
# where Debian's dataset-fashion-mnist is installed), keeps their summaries in docs/results/
# and benchmarks/results/ and regenerates their tables and figures from them.
reproduce: $(STAMP)
	$(PY) -m experiments.reproduce

# The same in parts, each resumable and redone alone: make reproduce-train,
# reproduce-lr, reproduce-minima, reproduce-minima-wd, reproduce-bench (the benchmarks the
# performance page reads; run it on a quiet machine).
reproduce-%: $(STAMP)
	$(PY) -m experiments.reproduce --part=$*

# Rewrites the pages' generated blocks from docs/results/ and benchmarks/results/ as
# they are, running nothing.
pages: $(STAMP)
	$(PY) -m experiments.reproduce --render_only

clean:
	rm -rf runs .pytest_cache .ruff_cache
