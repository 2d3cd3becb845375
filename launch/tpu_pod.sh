#!/usr/bin/env bash
# Train on a Cloud TPU pod slice: create the TPU VM, install t2t-jax on every worker, start training on all
# workers at once (jax.distributed.initialize() finds the pod topology by itself).
#
#   launch/tpu_pod.sh --name t2t-v4 --zone us-central2-b --accelerator v4-32 \
#       --config configs/big.py --workdir gs://my-bucket/wmt14-big [--dry-run] [-- --config.KEY=VALUE ...]
#
# --dry-run prints the commands instead of running them. The workdir should be a gs:// path that every worker
# can reach (orbax writes checkpoints collectively; process 0 writes logs and the vocabulary).
set -euo pipefail
name="" zone="" accelerator="" version="tpu-ubuntu2204-base" config="" workdir="" dry=0
repo="${T2T_REPO:-https://github.com/t2t-jax/t2t-jax.git}"
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --name) name=$2; shift 2 ;;
    --zone) zone=$2; shift 2 ;;
    --accelerator) accelerator=$2; shift 2 ;;
    --version) version=$2; shift 2 ;;
    --config) config=$2; shift 2 ;;
    --workdir) workdir=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    --) shift; extra=("$@"); break ;;
    *) echo "error: unknown argument $1" >&2; exit 2 ;;
  esac
done
for required in name zone accelerator config workdir; do
  [ -n "${!required}" ] || { echo "error: --$required is required" >&2; exit 2; }
done
show() { printf '+'; for a in "$@"; do case "$a" in *[[:space:]]*) printf " '%s'" "$a" ;; *) printf ' %s' "$a" ;; esac; done; printf '\n'; }
run() { if [ $dry -eq 1 ]; then show "$@"; else "$@"; fi; }

run gcloud compute tpus tpu-vm create "$name" --zone="$zone" --accelerator-type="$accelerator" --version="$version"
setup="git clone $repo t2t-jax 2>/dev/null || git -C t2t-jax pull; cd t2t-jax && python3 -m pip install -q -e '.[tpu]'"
run gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="$setup"
train="cd t2t-jax && T2T_TPU_POD=1 t2t-jax train --config $config --workdir $workdir ${extra[*]:-}"
run gcloud compute tpus tpu-vm ssh "$name" --zone="$zone" --worker=all --command="$train"
