#!/usr/bin/env bash
# The GPU check: one prepared script a machine with an NVIDIA GPU runs as is, in under
# 8 minutes, from the repository root after `make test` (or any install of '.[dev]'
# plus JAX's CUDA wheels: pip install -e '.[dev,cuda12]').
#
#   benchmarks/gpu_check.sh [OUT]      (default OUT: benchmarks/results/gpu_check.json)
#
# 1. The backend is the GPU, not a CPU fallback (a failed CUDA plugin falls back quietly).
# 2. The tests that compare paths pass on it, at full float32: the fast gradient-descent
#    paths against the plain step, sweeps against a network alone, the trace against
#    its own step, dC against -eta |grad C|^2.
# 3. Timings and device memory of a single run and of sweeps of 64 and 1,024 networks,
#    both paths, written to OUT with the card's name (benchmarks/gpu_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${1:-benchmarks/results/gpu_check.json}
unset JAX_PLATFORMS

echo "== backend"
"$PY" - <<'PY'
import jax
devices = jax.devices()
print(jax.__version__, devices)
if jax.default_backend() != "gpu":
    raise SystemExit(f"gpu_check: JAX runs on {jax.default_backend()}, not on a GPU: install "
                     "JAX's CUDA wheels (pip install -e '.[cuda12]') and check nvidia-smi.")
PY

echo "== tests that compare paths, on the GPU"
"$PY" -m pytest -q -p no:cacheprovider -x \
  tests/test_fast_gd.py tests/test_train.py tests/test_gradients.py tests/test_curvature.py \
  tests/test_sweep.py tests/test_device_ready.py -k "not sharded and not constant"

echo "== timings and memory"
"$PY" -m benchmarks.gpu_check --out="$OUT"
echo "gpu_check: report in $OUT"
