#!/usr/bin/env bash
# The body of every stage's sbatch script (job_scripts/slurm/STAGE.sbatch),
# run inside the job: stage.sh STAGE CONF [--set KEY=VALUE]...
set -euo pipefail
stage=$1 conf=$2
shift 2
top=${SEMREP_HOME:?set SEMREP_HOME to the semrep checkout (submit.sh does)}
. "$top/job_scripts/env.sh"
# An array task is the reconstruction's fan-out: each takes its share.
if [ -n "${SLURM_ARRAY_TASK_ID:-}" ] && [ "$stage" = reconstruct ]; then
  set -- "$@" --set "reconstruct.tasks=${SLURM_ARRAY_TASK_COUNT}" --set "reconstruct.task=${SLURM_ARRAY_TASK_ID}"
fi
# Debian's Open MPI starts under srun through PMIx; set SEMREP_SRUN_MPI to
# what your cluster's srun offers (srun --mpi=list).
exec srun --mpi="${SEMREP_SRUN_MPI:-pmix}" "$top/build/semrep" stage "$stage" "$conf" "$@"
