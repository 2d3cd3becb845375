#!/usr/bin/env bash
# Third device run: big in bfloat16 after keeping the logits' and attention scores' backward products in
# bfloat16 (they were promoted to float32/TF32 by float32 cotangents), at two batch sizes, and with XLA's
# Triton GEMM fusion off.
BENCH_TIMEOUT=150
source "$(dirname "$0")/gpu_setup.sh"
big=(--config configs/big.py --config.model.dtype=bfloat16 --vocab 32000 --length 128 --steps 8 --skip_decode)
bench big_bf16_b128_v2 "${big[@]}" --batch 128
bench big_bf16_b256_v2 "${big[@]}" --batch 256
XLA_FLAGS=--xla_gpu_enable_triton_gemm=false bench big_bf16_b256_v2_notriton "${big[@]}" --batch 256
