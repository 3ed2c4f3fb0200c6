#!/usr/bin/env bash
# Runs cnn_jax as N processes on this machine, each with M CPU devices, as a multi-host job does:
# jax.distributed on localhost with gloo CPU collectives. If one process fails, the others are
# stopped and the script exits non-zero.
#
#   launch/local_multiprocess.sh --processes=2 --devices=4 -- --workdir=/tmp/cnn_jax/mp
#   launch/local_multiprocess.sh --dry-run --processes=2 -- --config=configs/default.py --workdir=/tmp/w
set -euo pipefail

processes=2
devices=4
port=12355
dry_run=0
usage() { echo "usage: $0 [--processes=N] [--devices=M] [--port=P] [--dry-run] -- MAIN_FLAGS..." >&2; exit 2; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --processes=*) processes="${1#*=}" ;;
    --devices=*) devices="${1#*=}" ;;
    --port=*) port="${1#*=}" ;;
    --dry-run) dry_run=1 ;;
    --) shift; break ;;
    *) usage ;;
  esac
  shift
done
[[ "$processes" =~ ^[1-9][0-9]*$ && "$devices" =~ ^[1-9][0-9]*$ && "$port" =~ ^[0-9]+$ ]] || usage

cd "$(dirname "$0")/.."
main_flags=$(printf '%q ' "$@")
# The caller's own XLA_FLAGS are kept; the device count comes last, so --devices wins.
xla_flags="${XLA_FLAGS:+${XLA_FLAGS} }--xla_force_host_platform_device_count=${devices}"
commands=()
for ((i = 0; i < processes; i++)); do
  commands+=("XLA_FLAGS=$(printf '%q' "${xla_flags}") python -m cnn_jax.main \
--coordinator_address=localhost:${port} --num_processes=${processes} --process_id=${i} ${main_flags}")
done

if [[ "$dry_run" == 1 ]]; then
  printf '%s\n' "${commands[@]}"
  exit 0
fi

pids=()
# shellcheck disable=SC2329  # called by the trap
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT
for ((i = 0; i < processes; i++)); do
  # Only process 0 reports; the others' output goes to stderr, prefixed.
  if [[ "$i" == 0 ]]; then
    bash -c "${commands[$i]}" &
  else
    bash -c "${commands[$i]}" > >(sed "s/^/[process $i] /" >&2) 2>&1 &
  fi
  pids+=($!)
done
status=0
for ((n = 0; n < processes; n++)); do
  if ! wait -n "${pids[@]}"; then
    status=1
    echo "local_multiprocess: a process failed; stopping the others" >&2
    break
  fi
done
exit "$status"
