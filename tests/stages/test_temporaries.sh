#!/usr/bin/env bash
# No failure leaves a temporary file or folder behind (*.tmp.*, report.tmp.*),
# and a full disk is named as such: a stage that fails mid-way (the report
# without gnuplot), a training stopped by SIGTERM, and runs of 1 and 2 ranks
# onto small full filesystems (tmpfs mounts, which need root: without them
# the test reports SKIP, exit 77, once the other checks have passed).
set -u
semrep=$(realpath "$1")
conf=$(cd "$(dirname "$0")/../../conf" && pwd)/tiny-test.conf
. "$(dirname "$0")/../lib.sh"
trap 'for m in "$work"/full-*; do umount "$m" 2>/dev/null; done; [ -n "${SEMREP_KEEP_TEST_WORK:-}" ] || rm -rf "$work"' EXIT
mpirun="mpirun --oversubscribe --allow-run-as-root -np 2"
temporaries() { find "$1" -name '*.tmp*' | tr '\n' ' '; }

# A complete run; its cache serves the runs below.
ok="$work/ok"
expect 0 "report: .*ok/report/index.html" -- "$semrep" run "$conf" --set "output_dir=\"$ok\""

# The report stage fails mid-way (gnuplot fails) after it made its folder
# and wrote into it: the folder goes, the last report stays.
mkdir "$work/bin" && printf '#!/bin/sh\nexit 1\n' >"$work/bin/gnuplot" && chmod +x "$work/bin/gnuplot"
expect 1 "gnuplot could not draw" -- env PATH="$work/bin:$PATH" "$semrep" stage report "$conf" --set "output_dir=\"$ok\""
left=$(temporaries "$ok")
check "a failed report leaves no temporary folder: ${left:-none}" '[ -z "$left" ] && [ -s "$ok/report/index.html" ]'

# A training stopped by SIGTERM (a SLURM time limit) while it checkpoints at every step.
"$semrep" stage train "$conf" --set "output_dir=\"$work/killed\"" --set train.epochs=100 \
  --set train.checkpoint_every=1 >"$work/killed.log" 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "step 8/" "$work/killed.log" 2>/dev/null && break; sleep 0.1; done
kill -TERM "$pid"
wait "$pid"
status=$?
left=$(temporaries "$work/killed")
check "SIGTERM ends the training (status $status) and leaves no temporary: ${left:-none}" \
  '[ "$status" -eq 143 ] && [ -z "$left" ] && [ -s "$work/killed/train-state.nc" ]'

# full SIZE [CACHE] [LAUNCHER]: a run onto a new tmpfs of SIZE; CACHE, when
# given, is the data cache (a link out of the small disk; a file semrep did
# not write, so the run adopts the folder).
n=0
full() {
  local size=$1 cache=${2:-} launcher=${3:-}
  n=$((n + 1))
  local m="$work/full-$n"
  mkdir -p "$m" && mount -t tmpfs -o "size=$size" tmpfs "$m" 2>/dev/null || return 77
  mkdir "$m/out"
  [ -z "$cache" ] || ln -s "$cache" "$m/out/cache"
  expect 1 "error: .*$m/out[^ ]*: .*the disk is full \\($m/out[^)]*\\): free space or choose another output_dir" -- \
    $launcher "$semrep" run "$conf" ${cache:+--adopt} --set "output_dir=\"$m/out\""
  grep -o "error: .*the disk is full" "$work/out" | head -1 | grep -o "[^ /]*\.tmp\.[^ /:]*" | tail -1 | sed 's/\.tmp\..*//' \
    >>"$work/failed-writes"
  left=$(temporaries "$m")
  check "a run onto a full $size disk ${launcher:+(2 ranks) }leaves no temporary: ${left:-none}" '[ -z "$left" ]'
  return 0
}

if ! full 200k; then
  [ "$failed" -eq 0 ] || finish
  echo "SKIP: cannot mount a tmpfs here (needs root); the disk-full checks did not run ($passed passed before)"
  exit 77
fi
for size in 40k 100k 300k 600k; do full $size "$ok/cache"; done
full 300k "$ok/cache" "$mpirun"
# The small disks filled at different writes: the data cache, the training's
# NetCDF files, phi's parallel file and the report (an image, or a file in
# its temporary folder: which one depends on the bytes each run writes).
writes=$(sort -u "$work/failed-writes" | wc -l)
check "the full disks stopped $writes different writes: $(tr '\n' ' ' <"$work/failed-writes")" \
  '[ "$writes" -ge 4 ] && grep -q "idx3-ubyte" "$work/failed-writes" && grep -q "\.png$\|^report$" "$work/failed-writes"'

finish
