#!/usr/bin/env bash
# Submits the whole pipeline for CONF to SLURM as a chain of jobs, each
# starting when the one before it succeeded:
#   train (when the model does not exist or is unfinished) -> denoise-eval -> phi -> stats
#   -> cluster -> reconstruct (an array of SEMREP_RECON_TASKS tasks, then one
#   job that writes recon.nc) -> report
# Stages resume from their last checkpoint or chunk, so resubmitting after a
# failure or a time limit continues. Extra sbatch options for every job go in
# SEMREP_SBATCH (e.g. "--partition=gpu --gres=gpu:4 --ntasks-per-node=4");
# SEMREP_CHAIN_TAG, when set, becomes every job's --comment (nightly.sh uses
# it to see whether the last chain for a folder is still in the queue).
#   job_scripts/submit.sh CONF [--adopt] [--set KEY=VALUE]...  (--adopt: docs/cli.md)
set -euo pipefail
if [ $# -lt 1 ]; then echo "usage: job_scripts/submit.sh CONF [--set KEY=VALUE]..." >&2; exit 2; fi
conf=$(realpath -e -- "$1") || { echo "semrep: error: no conf at $1" >&2; exit 1; }
shift
top=$(cd "$(dirname "$0")/.." && pwd)
export SEMREP_HOME=$top
[ -x "$top/build/semrep" ] || "$top/job_scripts/build.sh"
tasks=${SEMREP_RECON_TASKS:-4}
# shellcheck disable=SC2086
submit() { sbatch --parsable --export=ALL ${SEMREP_SBATCH:-} ${SEMREP_CHAIN_TAG:+"--comment=$SEMREP_CHAIN_TAG"} "$@"; }
after=()
chain() { local name=$1; shift; local id
  id=$(submit "${after[@]}" --job-name="semrep-$name" "$@")
  echo "$name: job $id" >&2
  after=(--dependency="afterok:$id")
}
# train when the model does not exist yet or its training is unfinished (a time limit stopped it)
info=$("$top/build/semrep" info "$conf" "$@")
model=$(printf '%s\n' "$info" | sed -n 's/^  checkpoint: none yet at \([^ ]*\).*/\1/p')
unfinished=$(printf '%s\n' "$info" | sed -n 's/^  training: unfinished: //p')
jobs=$top/job_scripts/slurm
if [ -n "$model$unfinished" ]; then chain train "$jobs/train.sbatch" "$conf" "$@"; fi
for stage in denoise-eval phi stats cluster; do chain "$stage" "$jobs/$stage.sbatch" "$conf" "$@"; done
chain reconstruct-array --array="0-$((tasks - 1))" "$jobs/reconstruct.sbatch" "$conf" "$@"
chain reconstruct "$jobs/reconstruct.sbatch" "$conf" "$@"
chain report "$jobs/report.sbatch" "$conf" "$@"
