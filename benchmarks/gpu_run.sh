#!/usr/bin/env bash
# The prepared device run (one call of the device tool on an H100/H200; no tensorflow there, no network):
#   t2t-jax bench for big in bfloat16 (MFU target >= 45%), with threefry and with rbg dropout bits, and base
#   in float32 at the peer benchmark's shapes with beam-4 decoding. Results land in $OUT/*.json and $OUT/log.
BENCH_TIMEOUT=240
source "$(dirname "$0")/gpu_setup.sh"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
bench big_bf16_b128 --config configs/big.py --config.model.dtype=bfloat16 --vocab 32000 --batch 128 --length 128 \
  --steps 10 --skip_decode
JAX_DEFAULT_PRNG_IMPL=rbg bench big_bf16_b128_rbg --config configs/big.py --config.model.dtype=bfloat16 --vocab 32000 \
  --batch 128 --length 128 --steps 10 --skip_decode
bench base_f32_peer_shapes --config configs/base.py --vocab 8000 --batch 32 --length 64 --steps 10
bench base_bf16_b256 --config configs/base.py --config.model.dtype=bfloat16 --vocab 32000 --batch 256 --length 128 \
  --steps 10 --decode_batch 64 --decode_source_length 24
