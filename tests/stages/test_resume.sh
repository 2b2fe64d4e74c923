#!/usr/bin/env bash
# Resumption that resumes: a phi or reconstruct run stopped part way
# (phi.run_chunks, reconstruct.run_batches) and run again does only the
# missing work. The finished chunk and batch files keep their inode and
# modification time (to the nanosecond) across the reruns, so they were
# neither computed nor written again; the new run adds only the next ones;
# and the assembled phi.nc equals a run never stopped. (The train stage's
# resumption keeps the first run's measured images/s: tests/stages/test_train.sh.)
set -u
semrep=$(realpath "$1")
top=$(cd "$(dirname "$0")/../.." && pwd)
conf=$top/conf/fashion-mnist.conf
. "$top/tests/lib.sh"
. "$top/job_scripts/env.sh"
ids() { stat -c '%n %i %y' "$@" 2>/dev/null; }
digest() { "$semrep" info "$1/phi.nc" | sed -n 's/.*phi values: [0-9]*, digest \([0-9a-f]*\).*/\1/p'; }

# phi: 64 images in 4 chunks of 16
P=(--set dataset.limit=64 --set phi.batch=16 --set "phi.sigmas=[0.1]" --set phi.draws=1 --set phi.block_means=false)
phi() { "$semrep" stage phi "$conf" --set "output_dir=\"$1\"" "${P[@]}" "${@:2}"; }
chunks=$work/p/phi-chunks
expect 0 "stopped with chunks to do" -- phi "$work/p" --set phi.run_chunks=2
before=$(ids "$chunks"/chunk-0000000000.nc "$chunks"/chunk-0000000001.nc)
check "2 chunks after the first run: $(ls "$chunks" | tr '\n' ' ')" '[ "$(ls "$chunks" | wc -l)" = 2 ]'
expect 0 "stopped with chunks to do" -- phi "$work/p" --set phi.run_chunks=1
after=$(ids "$chunks"/chunk-0000000000.nc "$chunks"/chunk-0000000001.nc)
check "the rerun kept chunks 0 and 1 (inode and time: $after) and added chunk 2 only" \
  '[ -n "$before" ] && [ "$before" = "$after" ] && [ "$(ls "$chunks" | tr "\n" " ")" = "chunk-0000000000.nc chunk-0000000001.nc chunk-0000000002.nc " ]'
expect 0 "wrote .*phi.nc" -- phi "$work/p"
expect 0 "wrote .*phi.nc" -- phi "$work/straight"
a=$(digest "$work/p") b=$(digest "$work/straight")
check "the resumed phi.nc equals a run never stopped ($a, $b), and its chunks are gone" \
  '[ -n "$a" ] && [ "$a" = "$b" ] && [ ! -e "$chunks" ]'

# reconstruct: 3 targets x 2 samples in 3 batches of 2
R=(--set "reconstruct.targets=[0,5,9]" --set reconstruct.samples=2 --set reconstruct.steps=3 --set reconstruct.draws=1
   --set reconstruct.batch=2 --set "reconstruct.analysis_sigmas=[0.2]" --set reconstruct.max_iter=3)
recon() { "$semrep" stage reconstruct "$conf" --set "output_dir=\"$work/r\"" "${R[@]}" "$@"; }
batches=$work/r/recon-batches
expect 0 "batch 0 done" -- recon --set reconstruct.run_batches=1
first=$(ids "$batches"/batch-0000000000.nc)
expect 0 "batch 1 done" -- recon --set reconstruct.run_batches=1
check "the rerun did batch 1 only" '! grep -q "batch 0 done" "$work/out"'
check "batch 0 kept its inode and time ($first)" '[ -n "$first" ] && [ "$first" = "$(ids "$batches"/batch-0000000000.nc)" ]'
expect 0 "batch 2 done" -- recon
check "the last run did batch 2 only and wrote recon.nc" \
  '! grep -Eq "batch [01] done" "$work/out" && [ -s "$work/r/recon.nc" ]'
finish
