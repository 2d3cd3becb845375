#!/usr/bin/env bash
# t2t-jax plan for the paper's base and big configs (paper batch, bfloat16 compute: model.dtype=auto on TPUs) on
# TPU slices, compiled ahead of time on this CPU machine; one JSON per (config, target) in benchmarks/tpu_plan/.
# Needs libtpu: `make .venv-tpu/bin/t2t-jax` (the [tpu] extra in its own environment).
#   benchmarks/plan_targets.sh [TARGET ...]    (default: v5e-16 v5p-8 v4-8)
set -euo pipefail
cd "$(dirname "$0")/.."
targets=("${@:-v5e-16 v5p-8 v4-8}")
for target in ${targets[*]}; do
  for config in base big; do
    echo "== $config on $target"
    JAX_PLATFORMS=cpu .venv-tpu/bin/t2t-jax plan --config "configs/$config.py" --target "$target" \
      --json "benchmarks/tpu_plan/${config}_${target}.json" 2>&1 | grep -v "accelerator type" || true
  done
done
