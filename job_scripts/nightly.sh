#!/usr/bin/env bash
# The nightly run, for cron: resubmits CONF's pipeline (job_scripts/submit.sh)
# into one folder that lives from night to night. When the data set has
# grown, phi is computed for the new images only (the others' rows are
# reused from last night's phi.nc), stats, clusters, reconstructions and the
# report are made again, and the report says what changed since the last
# night (docs/usage.md).
#   0 2 * * * /path/to/semrep/job_scripts/nightly.sh /path/to/my.conf /path/to/runs/nightly
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: job_scripts/nightly.sh CONF OUTPUT_DIR [--set KEY=VALUE]..." >&2; exit 2; fi
conf=$1 out=$2
shift 2
# Two chains in one folder would share its phi chunks: while the last
# night's is still queued or running, submit nothing (and say so to cron).
tag="semrep-nightly:$(realpath -m -- "$out")"
if command -v squeue >/dev/null && squeue -h -u "$(id -un)" -o "%k" | grep -qxF -- "$tag"; then
  echo "semrep: the last chain for $out is still queued or running; not submitting another into the same folder" >&2
  exit 1
fi
export SEMREP_CHAIN_TAG=$tag
exec "$(dirname "$0")/submit.sh" "$conf" --set "output_dir=\"$out\"" "$@"
