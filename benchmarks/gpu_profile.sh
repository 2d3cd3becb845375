#!/usr/bin/env bash
# Second device run: where the big bfloat16 step spends its time (profile), and a larger batch.
BENCH_TIMEOUT=200
source "$(dirname "$0")/gpu_setup.sh"
bench big_bf16_b128_profile --config configs/big.py --config.model.dtype=bfloat16 --vocab 32000 --batch 128 \
  --length 128 --steps 5 --skip_decode --profile /tmp/prof128
bench big_bf16_b256 --config configs/big.py --config.model.dtype=bfloat16 --vocab 32000 --batch 256 --length 128 \
  --steps 8 --skip_decode
