#!/usr/bin/env bash
# The nightly run, for cron: resubmits CONF's pipeline (job_scripts/submit.sh)
# into a folder of its own for the night, so that a growing data set never
# meets the phi.nc of yesterday's images (which phi refuses to mix with).
# A PNG folder's manifest is kept in each night's folder; phi is computed
# again for every image: phi for only the new images is not built yet.
#   0 2 * * * /path/to/semrep/job_scripts/nightly.sh /path/to/my.conf runs/nightly
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: job_scripts/nightly.sh CONF OUTPUT_ROOT [--set KEY=VALUE]..." >&2; exit 2; fi
conf=$1 root=$2
shift 2
exec "$(dirname "$0")/submit.sh" "$conf" --set "output_dir=\"$root/$(date +%Y-%m-%d)\"" "$@"
