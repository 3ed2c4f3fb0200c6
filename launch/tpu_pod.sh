#!/usr/bin/env bash
# Runs cnn_jax on every worker of a Cloud TPU VM pod at once, one process per host, over
# `gcloud compute tpus tpu-vm ssh --worker=all`. Each worker runs the same command; JAX reads the
# pod's layout from the TPU metadata, so no --coordinator_address is needed. The checkout must be
# at --repo_dir on every worker, and --workdir must be a path all workers share (gs://BUCKET/...).
# Running the same command again resumes from the latest checkpoint in --workdir.
#
#   launch/tpu_pod.sh --tpu=my-pod --zone=us-central2-b --setup -- \
#       --config=configs/digits_resnet.py --workdir=gs://my-bucket/cnn_jax/resnet20
#   launch/tpu_pod.sh --dry-run --tpu=my-pod --zone=us-central2-b -- --workdir=gs://my-bucket/w
#
# --setup installs requirements.txt plus jax[tpu] (at the jax version requirements.txt pins) before
# training. --python picks the workers' interpreter (cnn_jax needs Python >= 3.11).
# --env=NAME=VALUE sets a variable for the training processes (e.g. TFDS_DATA_DIR=gs://...).
set -euo pipefail

tpu=''
zone=''
project=''
# shellcheck disable=SC2088  # the ~ is for the workers' shell to expand
repo_dir='~/cnn_jax'
python='python3'
setup=0
dry_run=0
env_vars=()
usage() {
  [[ $# -gt 0 ]] && echo "tpu_pod.sh: $*" >&2
  echo "usage: $0 --tpu=NAME --zone=ZONE [--project=PROJECT] [--repo_dir=DIR] [--python=PYTHON]" \
       "[--env=NAME=VALUE]... [--setup] [--dry-run] -- --workdir=gs://BUCKET/PATH [MAIN_FLAGS...]" >&2
  exit 2
}
while [[ $# -gt 0 ]]; do
  case "$1" in
    --tpu=*) tpu="${1#*=}" ;;
    --zone=*) zone="${1#*=}" ;;
    --project=*) project="${1#*=}" ;;
    --repo_dir=*) repo_dir="${1#*=}" ;;
    --python=*) python="${1#*=}" ;;
    --env=*)
      [[ "${1#*=}" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]] || usage "--env needs NAME=VALUE, got '${1#*=}'"
      env_vars+=("${1#*=}") ;;
    --setup) setup=1 ;;
    --dry-run) dry_run=1 ;;
    --) shift; break ;;
    *) usage "unknown option '$1' (main flags go after --)" ;;
  esac
  shift
done
[[ -n "$tpu" ]] || usage "--tpu is required"
[[ -n "$zone" ]] || usage "--zone is required"
[[ -n "$repo_dir" && -n "$python" ]] || usage "--repo_dir and --python must not be empty"
workdir=''
for ((i = 1; i <= $#; i++)); do
  case "${!i}" in
    --workdir=*) workdir="${!i#--workdir=}" ;;
    --workdir) j=$((i + 1)); workdir="${!j:-}" ;;
  esac
done
[[ -n "$workdir" ]] || usage "--workdir is required after -- (a path every worker shares, e.g. gs://BUCKET/PATH)"

# Quotes a path for the workers' shell, leaving a leading ~ unquoted so that it expands there.
# shellcheck disable=SC2088
remote_path() {
  if [[ "$1" == '~' ]]; then
    printf '~'
  elif [[ "$1" == '~/'* ]]; then
    printf '~/%q' "${1#'~/'}"
  else
    printf '%q' "$1"
  fi
}
# Quotes one word for the local shell (for --dry-run): as is when safe, else in single quotes
# (only the value of an --option=value).
local_quote() {
  local prefix='' value="$1"
  if [[ "$value" =~ ^(--[A-Za-z0-9_-]+=)(.*)$ ]]; then
    prefix="${BASH_REMATCH[1]}"
    value="${BASH_REMATCH[2]}"
  fi
  if [[ "$value" =~ ^[A-Za-z0-9_./:=@%+,-]*$ ]]; then
    printf '%s%s' "$prefix" "$value"
  else
    printf "%s'%s'" "$prefix" "${value//\'/\'\\\'\'}"
  fi
}

cd "$(dirname "$0")/.."
py=$(remote_path "$python")
remote="cd $(remote_path "$repo_dir")"
if [[ "$setup" == 1 ]]; then
  jax_version=$(sed -n 's/^jax==\([^[:space:]#]*\).*/\1/p' requirements.txt)
  [[ -n "$jax_version" ]] || { echo "tpu_pod.sh: no jax==VERSION line in requirements.txt" >&2; exit 2; }
  remote+=" && $py -m pip install -r requirements.txt $(printf '%q' "jax[tpu]==${jax_version}")"
fi
remote+=" &&"
for var in "${env_vars[@]}"; do
  remote+=" ${var%%=*}=$(printf '%q' "${var#*=}")"
done
main_flags=''
[[ $# -gt 0 ]] && printf -v main_flags ' %q' "$@"
remote+=" $py -m cnn_jax.main${main_flags}"

command=(gcloud compute tpus tpu-vm ssh "$tpu" "--zone=$zone")
[[ -n "$project" ]] && command+=("--project=$project")
command+=(--worker=all "--command=$remote")

if [[ "$dry_run" == 1 ]]; then
  line=''
  for word in "${command[@]}"; do
    line+="${line:+ }$(local_quote "$word")"
  done
  printf '%s\n' "$line"
  exit 0
fi
command -v gcloud >/dev/null || { echo "tpu_pod.sh: gcloud not found: install the Google Cloud CLI" >&2; exit 2; }
exec "${command[@]}"
