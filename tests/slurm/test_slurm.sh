#!/usr/bin/env bash
# The pipeline through SLURM: job_scripts/nightly.sh (through submit.sh)
# chains every stage of the tiny conf on a one-node SLURM started here
# (tests/slurm/start_slurm.sh), the reconstruction fanned out as a job array;
# the report and recon.nc must come out. Where SLURM cannot be started the
# test fails, saying why: tests/run.sh installs it, so that is a defect.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib.sh"
if ! command -v sbatch >/dev/null || ! "$top/tests/slurm/start_slurm.sh" >"$work/start.log" 2>&1; then
  echo "FAILED: could not start a one-node SLURM here ($(tail -1 "$work/start.log" 2>/dev/null)); install slurm-wlm and munge"
  exit 1
fi
cd "$work"
SEMREP_RECON_TASKS=2 "$top/job_scripts/nightly.sh" "$top/conf/tiny-test.conf" "$work/run" 2>"$work/jobs"
check "submit.sh queued the chain: $(tr '\n' ' ' <"$work/jobs")" 'grep -q "report: job" "$work/jobs" && grep -q "reconstruct-array: job" "$work/jobs"'
expect 1 "the last chain for .*/run is still queued or running; not submitting another" -- \
  "$top/job_scripts/nightly.sh" "$top/conf/tiny-test.conf" "$work/run"
for _ in $(seq 1 300); do
  [ -z "$(squeue -h -u root -n semrep-train,semrep-denoise-eval,semrep-phi,semrep-stats,semrep-cluster,semrep-reconstruct-array,semrep-reconstruct,semrep-report 2>/dev/null)" ] && break
  sleep 1
done
check "every job finished: $(squeue -h 2>/dev/null | wc -l) left" '[ -z "$(squeue -h -n semrep-report 2>/dev/null)" ]'
check "the report and recon.nc came out of SLURM (logs: $(ls semrep-*.out 2>/dev/null | wc -l))" \
  '[ -s "$work/run/report/index.html" ] && [ -s "$work/run/recon.nc" ]'
[ "$failed" -eq 0 ] || tail -n 5 semrep-*.out
finish
