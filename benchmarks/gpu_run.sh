#!/usr/bin/env bash
# The prepared device run (one call of the device tool on an H100/H200; no tensorflow there, no network):
#   t2t-jax bench for big in bfloat16 (MFU target >= 45%), with threefry and with rbg dropout bits, and base
#   in float32 at the peer benchmark's shapes with beam-4 decoding. Results land in $OUT/*.json and $OUT/log.
set -uo pipefail
OUT=${OUT:-/tmp/t2t-gpu}; mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site:$PWD
else
  export PYTHONPATH=$PWD
fi
export XLA_PYTHON_CLIENT_MEM_FRACTION=0.92 PYTHONUNBUFFERED=1
exec > >(tee -a "$OUT/log") 2>&1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, jax.devices())"
bench() { name=$1; shift; echo "=== $name"; timeout 240 python3 -m t2t_jax bench "$@" --json "$OUT/$name.json" || echo "FAILED $name"; }
bench big_bf16_b128 --config configs/big.py --config.model.dtype=bfloat16 --vocab 32000 --batch 128 --length 128 \
  --steps 10 --skip_decode
JAX_DEFAULT_PRNG_IMPL=rbg bench big_bf16_b128_rbg --config configs/big.py --config.model.dtype=bfloat16 --vocab 32000 \
  --batch 128 --length 128 --steps 10 --skip_decode
bench base_f32_peer_shapes --config configs/base.py --vocab 8000 --batch 32 --length 64 --steps 10
bench base_bf16_b256 --config configs/base.py --config.model.dtype=bfloat16 --vocab 32000 --batch 256 --length 128 \
  --steps 10 --decode_batch 64 --decode_source_length 24
