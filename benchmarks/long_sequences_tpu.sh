#!/usr/bin/env bash
# The whole base model's train step (and beam search) at long sequence lengths on a TPU v5e-16 slice (or this CPU),
# compiled ahead of time on this CPU (t2t-jax plan, libtpu in .venv-tpu): memory per chip with whole attention and
# with model.attention_chunk=512, one sequence per chip, bfloat16 compute on the TPU. One JSON per row in
# benchmarks/tpu_plan/ (benchmarks/cpu/ for TARGET=cpu).
#   [TARGET=v5e-16|cpu] benchmarks/long_sequences_tpu.sh [LENGTH ...]    (default: 1024 4096 8192)
set -euo pipefail
cd "$(dirname "$0")/.."
target=${TARGET:-v5e-16}
folder=$([ "$target" = cpu ] && echo benchmarks/cpu || echo benchmarks/tpu_plan)
for length in ${@:-1024 4096 8192}; do
  for chunk in 0 512; do
    echo "== base on $target, length $length, attention_chunk $chunk"
    JAX_PLATFORMS=cpu .venv-tpu/bin/t2t-jax plan --config configs/base.py --target "$target" --no_search \
      --config.data.max_source_length="$length" --config.data.max_target_length="$length" \
      --config.data.batch_tokens="$length" --config.model.max_length="$length" --config.train.tokens_per_update=0 \
      --config.decode.batch_tokens="$length" --config.decode.max_extra_length=50 \
      --config.model.attention_chunk="$chunk" \
      --json "$folder/long_base_${target}_${length}_chunk${chunk}.json" 2>&1 | grep -v "accelerator type" || true
  done
done
