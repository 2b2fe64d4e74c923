#!/usr/bin/env bash
# The main job on one machine: installs what is missing, builds, and runs the
# pipeline for CONF with one MPI rank per core (SEMREP_RANKS to change it).
#   job_scripts/local.sh conf/fashion-mnist.conf
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: job_scripts/local.sh CONF" >&2
  exit 2
fi
conf=$(realpath -e -- "$1" 2>/dev/null) || { echo "semrep: error: no conf at $1" >&2; exit 1; }
top=$(cd "$(dirname "$0")/.." && pwd)
"$top/job_scripts/build.sh"
. "$top/job_scripts/env.sh"
ranks=${SEMREP_RANKS:-$(nproc)}
exec mpirun --oversubscribe -np "$ranks" "$top/build/semrep" run "$conf"
