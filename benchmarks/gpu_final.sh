#!/usr/bin/env bash
# Third device run: big in bfloat16 after keeping the logits' and attention scores' backward products in
# bfloat16 (they were promoted to float32/TF32 by float32 cotangents), at two batch sizes, and with XLA's
# Triton GEMM fusion off.
set -uo pipefail
OUT=${OUT:-/tmp/t2t-gpu}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$PWD XLA_PYTHON_CLIENT_MEM_FRACTION=0.92 PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT/log") 2>&1
bench() { name=$1; shift; echo "=== $name"; timeout 150 python3 -m t2t_jax bench "$@" --json "$OUT/$name.json" || echo "FAILED $name"; }
big=(--config configs/big.py --config.model.dtype=bfloat16 --vocab 32000 --length 128 --steps 8 --skip_decode)
bench big_bf16_b128_v2 "${big[@]}" --batch 128
bench big_bf16_b256_v2 "${big[@]}" --batch 256
XLA_FLAGS=--xla_gpu_enable_triton_gemm=false bench big_bf16_b256_v2_notriton "${big[@]}" --batch 256
