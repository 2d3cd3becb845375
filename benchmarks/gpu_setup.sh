# Sourced by the gpu_*.sh device runs: wheels carried in .whl/ (the device image has no tensorflow, no network),
# results and a log under $OUT, and `bench NAME ARGS...` running `t2t-jax bench` into $OUT/NAME.json under a
# timeout of $BENCH_TIMEOUT seconds.
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
bench() {
  name=$1; shift; echo "=== $name"
  timeout "$BENCH_TIMEOUT" python3 -m t2t_jax bench "$@" --json "$OUT/$name.json" || echo "FAILED $name"
}
