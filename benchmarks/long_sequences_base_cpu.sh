#!/usr/bin/env bash
# Step time of the whole base model (configs/base.py, float32 on this CPU) at long lengths, one sentence of LENGTH
# source + LENGTH target tokens per step, whole attention and model.attention_chunk=512 (t2t-jax bench, median of 2
# steps after compiling). Whole attention stops at 2048: at 4096 it needs 32 GiB here (benchmarks/README.md).
#   benchmarks/long_sequences_base_cpu.sh   -> benchmarks/cpu/long_base_steps.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/cpu/long_base_steps.jsonl
: > "$out"
for row in "256 0" "1024 0" "2048 0" "256 512" "1024 512" "2048 512" "4096 512"; do
  set -- $row
  .venv/bin/t2t-jax bench --config configs/base.py --steps 2 --batch 1 --length "$1" --skip_decode \
    --config.model.max_length="$1" --config.model.attention_chunk="$2" --json /tmp/long_base_step.json > /dev/null
  python3 -c "import json, sys; r = json.load(open('/tmp/long_base_step.json')); t = r.get('train', r)
print(json.dumps({'length': int(sys.argv[1]), 'attention_chunk': int(sys.argv[2]), 'step_s': t['step_s'],
                  'memory_estimate_gib': t['memory_estimate_gib'], 'compile_s': t['compile_s']}))" "$1" "$2" | tee -a "$out"
done
