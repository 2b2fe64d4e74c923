#!/usr/bin/env bash
# The pipeline through SLURM: job_scripts/nightly.sh (through submit.sh)
# chains every stage of the tiny conf on a private one-node SLURM started
# here (tests/slurm/start_slurm.sh: its own daemons, files and ports, in the
# work folder), the reconstruction fanned out as a job array; the report
# and recon.nc must come out. Whatever happens, the exit cancels every job
# of that SLURM (a failed afterok chain leaves the later jobs pending) and
# stops the daemons it started. Where SLURM cannot be started the test
# fails, saying why: tests/run.sh installs it, so that is a defect.
set -u
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib.sh"
slurm=$work/slurm
export SLURM_CONF=$slurm/slurm.conf
stop_slurm() {
  "$top/tests/slurm/start_slurm.sh" stop "$slurm" >>"$work/stop.log" 2>&1
  [ -s "$work/stop.log" ] && cat "$work/stop.log"
  [ -n "${SEMREP_KEEP_TEST_WORK:-}" ] || rm -rf "$work"
}
trap stop_slurm EXIT
trap 'exit 130' INT TERM
if ! command -v sbatch >/dev/null || ! "$top/tests/slurm/start_slurm.sh" start "$slurm" >"$work/start.log" 2>&1; then
  echo "FAILED: could not start a one-node SLURM here ($(tail -1 "$work/start.log" 2>/dev/null)); install slurm-wlm and munge"
  tail -5 "$slurm"/log/*.log 2>/dev/null
  exit 1
fi
cd "$work"
SEMREP_RECON_TASKS=2 "$top/job_scripts/nightly.sh" "$top/conf/tiny-test.conf" "$work/run" 2>"$work/jobs"
check "submit.sh queued the chain: $(tr '\n' ' ' <"$work/jobs")" 'grep -q "report: job" "$work/jobs" && grep -q "reconstruct-array: job" "$work/jobs"'
expect 1 "the last chain for .*/run is still queued or running; not submitting another" -- \
  "$top/job_scripts/nightly.sh" "$top/conf/tiny-test.conf" "$work/run"
# this SLURM runs nothing else: done when its queue is empty (a failed job's
# dependants are cancelled at once, DependencyParameters=kill_invalid_depend)
for _ in $(seq 1 300); do
  [ -z "$(squeue -h 2>/dev/null)" ] && break
  sleep 1
done
check "every job finished: $(squeue -h 2>/dev/null | wc -l) left" '[ -z "$(squeue -h 2>/dev/null)" ]'
check "the report and recon.nc came out of SLURM (logs: $(ls semrep-*.out 2>/dev/null | wc -l))" \
  '[ -s "$work/run/report/index.html" ] && [ -s "$work/run/recon.nc" ]'
[ "$failed" -eq 0 ] || tail -n 5 semrep-*.out
finish
