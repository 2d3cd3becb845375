#!/usr/bin/env bash
# Same-machine, same-run comparison on this CPU: the Flax WMT example (train + beam-4 decode) and t2t-jax through
# the peer script, then t2t-jax's own bench (base at the peer shapes) and the cached-vs-recompute decode benchmark.
# Needs a read-only checkout of google/flax examples/wmt at /tmp/peer/examples/wmt (never committed here).
set -euo pipefail
cd "$(dirname "$0")/.."
out=benchmarks/cpu
mkdir -p $out
peer=../shared/bench/peer_train_decode.py
python $peer --impl flax_wmt --what train,decode --reps 5 | grep '^{' | tee $out/peer_flax_wmt.jsonl
python $peer --impl t2t_jax --what train --reps 5 | grep '^{' | tee $out/peer_t2t_jax.jsonl
t2t-jax bench --config configs/base.py --steps 5 --json $out/bench_base.json | grep -v '^I0000'
python benchmarks/decode.py --reps 5 --json $out/decode.json | grep -v '^I0000'
