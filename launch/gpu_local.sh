#!/usr/bin/env bash
# Train on all GPUs of this machine: one process drives every local GPU; the mesh's data axis takes them all
# (override with --config.mesh.fsdp=N / --config.mesh.tensor=N).
#
#   launch/gpu_local.sh --config configs/base.py --workdir runs/wmt14-base [--dry-run] [-- --config.KEY=VALUE ...]
set -euo pipefail
config="" workdir="" dry=0 extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --config) config=$2; shift 2 ;;
    --workdir) workdir=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "error: unknown argument $1" >&2; exit 2 ;;
  esac
done
[ -n "$config" ] && [ -n "$workdir" ] || { echo "error: --config and --workdir are required" >&2; exit 2; }
gpus=$( (nvidia-smi -L 2>/dev/null || true) | grep -c '^GPU' || true)
[ $dry -eq 1 ] || [ "$gpus" -gt 0 ] || { echo "error: no GPU found by nvidia-smi" >&2; exit 2; }
show() { printf '+'; for a in "$@"; do case "$a" in *[[:space:]]*) printf " '%s'" "$a" ;; *) printf ' %s' "$a" ;; esac; done; printf '\n'; }
cmd=(env XLA_PYTHON_CLIENT_MEM_FRACTION=0.95
     "XLA_FLAGS=--xla_gpu_enable_latency_hiding_scheduler=true ${XLA_FLAGS:-}"
     "T2T_EXPECTED_DEVICES=$gpus"
     t2t-jax train --config "$config" --workdir "$workdir" --config.mesh.data=-1 "${extra[@]}")
if [ $dry -eq 1 ]; then echo "# $gpus local GPU(s)"; show "${cmd[@]}"; else exec "${cmd[@]}"; fi
