#!/usr/bin/env bash
# gptoss on a Cloud TPU VM pod slice: the same command on every worker at once, one process per host.
# JAX finds the other workers itself (TPU metadata), so no coordinator flags are needed; process 0 (worker 0) alone
# prints and writes outputs. See launch/README.md.
#
#   export TPU_NAME=my-v5p-64 ZONE=us-east5-a          # PROJECT=... optional (else gcloud's default project)
#   launch/tpu_pod.sh setup                            # once: install this checkout on every worker (a wheel + jax[tpu])
#   launch/tpu_pod.sh run gptoss demo --checkpoint /mnt/ckpt/gpt-oss-120b --mesh 1,32,1
#   launch/tpu_pod.sh stop                             # after an interrupted run: end gptoss on every worker
#
# The checkpoint path must exist on every worker (a persistent disk attached read-only to all of them, or a
# gcsfuse mount of a bucket); each worker reads only the byte ranges of the weights its chips hold. Outputs (eval
# records) go where process 0 writes them: put them on shared storage or see distributed.collect_files.
set -euo pipefail

: "${TPU_NAME:?set TPU_NAME to the TPU VM name}"
: "${ZONE:?set ZONE to the TPU zone}"
VENV=${VENV:-gptoss-venv}      # on each worker, relative to the home directory
WORKDIR=${WORKDIR:-.}          # where the command runs on each worker (relative paths in flags resolve here)
gcloud_args=(--zone="$ZONE")
if [[ -n "${PROJECT:-}" ]]; then
  gcloud_args+=(--project="$PROJECT")
fi

on_all_workers() {  # run one shell command line on every worker concurrently
  gcloud compute tpus tpu-vm ssh "$TPU_NAME" "${gcloud_args[@]}" --worker=all --command="$1"
}

case "${1:-}" in
  setup)
    repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    dist=$(mktemp -d)
    python3 -m pip wheel --no-deps --quiet -w "$dist" "$repo"
    wheel=$(basename "$(ls "$dist"/gptoss_jax-*.whl)")
    gcloud compute tpus tpu-vm scp "$dist/$wheel" "$TPU_NAME:" "${gcloud_args[@]}" --worker=all
    on_all_workers "python3 -m venv ~/$VENV && ~/$VENV/bin/pip install --quiet --upgrade pip && ~/$VENV/bin/pip install --quiet ~/$wheel'[tpu]'"
    ;;
  run)
    shift
    if [[ $# -eq 0 ]]; then
      echo "usage: $0 run COMMAND [ARGS...]" >&2
      exit 2
    fi
    printf -v command '%q ' "$@"
    on_all_workers "cd $WORKDIR && source ~/$VENV/bin/activate && $command"
    ;;
  stop)
    # an interrupted ssh can leave processes holding the TPU on some workers
    # ([g] keeps the pattern from matching this very command line)
    pattern="$VENV/bin/[g]ptoss"
    on_all_workers "pkill -INT -f '$pattern' || true; sleep 5; pkill -KILL -f '$pattern' || true"
    ;;
  *)
    echo "usage: $0 setup | run COMMAND [ARGS...] | stop   (with TPU_NAME and ZONE set)" >&2
    exit 2
    ;;
esac
