#!/usr/bin/env bash
# The pipeline through SLURM: job_scripts/submit.sh chains every stage of
# the tiny conf on a one-node SLURM started here (tests/slurm/start_slurm.sh),
# the reconstruction fanned out as a job array; the report and recon.nc must
# come out. Skipped (exit 77) where SLURM cannot be started.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib.sh"
if ! command -v sbatch >/dev/null || ! "$top/tests/slurm/start_slurm.sh" >"$work/start.log" 2>&1; then
  echo "SKIPPED: no one-node SLURM here ($(tail -1 "$work/start.log" 2>/dev/null))"
  exit 77
fi
cd "$work"
SEMREP_RECON_TASKS=2 "$top/job_scripts/submit.sh" "$top/conf/tiny-test.conf" --set "output_dir=\"$work/run\"" 2>"$work/jobs"
check "submit.sh queued the chain: $(tr '\n' ' ' <"$work/jobs")" 'grep -q "report: job" "$work/jobs" && grep -q "reconstruct-array: job" "$work/jobs"'
for _ in $(seq 1 300); do
  [ -z "$(squeue -h -u root -n semrep-train,semrep-denoise-eval,semrep-phi,semrep-stats,semrep-cluster,semrep-reconstruct-array,semrep-reconstruct,semrep-report 2>/dev/null)" ] && break
  sleep 1
done
check "every job finished: $(squeue -h 2>/dev/null | wc -l) left" '[ -z "$(squeue -h -n semrep-report 2>/dev/null)" ]'
check "the report and recon.nc came out of SLURM (logs: $(ls semrep-*.out 2>/dev/null | wc -l))" \
  '[ -s "$work/run/report/index.html" ] && [ -s "$work/run/recon.nc" ]'
[ "$failed" -eq 0 ] || tail -n 5 semrep-*.out
finish
