#!/usr/bin/env bash
# Second device run: where the big bfloat16 step spends its time (profile), and a larger batch.
set -uo pipefail
OUT=${OUT:-/tmp/t2t-gpu}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD XLA_PYTHON_CLIENT_MEM_FRACTION=0.92 PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT/log") 2>&1
bench() { name=$1; shift; echo "=== $name"; timeout 200 python3 -m t2t_jax bench "$@" --json "$OUT/$name.json" || echo "FAILED $name"; }
bench big_bf16_b128_profile --config configs/big.py --config.model.dtype=bfloat16 --vocab 32000 --batch 128 \
  --length 128 --steps 5 --skip_decode --profile /tmp/prof128
bench big_bf16_b256 --config configs/big.py --config.model.dtype=bfloat16 --vocab 32000 --batch 256 --length 128 \
  --steps 8 --skip_decode
