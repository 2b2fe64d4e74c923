#!/usr/bin/env bash
# The train stage as a user runs it: a run stopped half way and resumed ends
# with exactly the weights of a run never stopped (1 rank and 2 ranks); bad
# input is refused with one line before any work is lost.
set -u
semrep=$(realpath "$1")
conf=$(cd "$(dirname "$0")/../../conf" && pwd)/tiny-test.conf
. "$(dirname "$0")/../lib.sh"
mpirun="mpirun --oversubscribe --allow-run-as-root -np 2"
checksum() { "$semrep" info "$1/checkpoint.nc" | sed -n 's/.*checksum \([0-9a-f]*\).*/\1/p'; }
train() { local dir=$1; shift; "$@" "$semrep" stage train "$conf" --set "output_dir=\"$dir\"" --set train.epochs=3 "${SETS[@]}" >>"$work/log" 2>&1; }

for launcher in "" "$mpirun"; do
  name=${launcher:+2 ranks}; name=${name:-1 rank}
  SETS=()
  train "$work/straight$launcher" $launcher
  SETS=(--set train.run_steps=11)
  train "$work/stopped$launcher" $launcher
  SETS=()
  train "$work/stopped$launcher" $launcher
  a=$(checksum "$work/straight$launcher") b=$(checksum "$work/stopped$launcher")
  check "resumed run equals the straight one ($name): $a vs $b" '[ -n "$a" ] && [ "$a" = "$b" ]'
done

straight="$work/straight"
expect 1 "training state .* has kernels = \\[4, 8, 16\\] but the conf's model.kernels is \\[4, 8, 32\\]" -- \
  "$semrep" stage train "$conf" --set "output_dir=\"$straight\"" --set "model.kernels=[4,8,32]"
cp "$straight/train-state.nc" "$work/damaged.nc"
head -c 20000 "$work/damaged.nc" > "$straight/train-state.nc"
expect 1 "cannot open the training state .*train-state.nc.*delete it to start over" -- \
  "$semrep" stage train "$conf" --set "output_dir=\"$straight\"" --set train.epochs=4
expect 1 "cannot (make the folder|write in the output folder) /proc/semrep" -- \
  "$semrep" stage train "$conf" --set 'output_dir="/proc/semrep"'
expect 1 "train.lr = 0 is out of range" -- "$semrep" stage train "$conf" --set train.lr=0.0
expect 1 "train.batch = 1 is smaller than the 2 ranks" -- $mpirun "$semrep" stage train "$conf" \
  --set "output_dir=\"$work/tiny-batch\"" --set train.batch=1
mkdir -p "$work/elsewhere" && cp "$work/stopped/checkpoint.nc" "$work/elsewhere/"
expect 1 "exists but .*train-state.nc does not: that model was trained elsewhere" -- \
  "$semrep" stage train "$conf" --set "output_dir=\"$work/elsewhere\""

# train.init starts from a model's weights with a fresh optimiser: at a
# learning rate of 1e-9 the first steps leave every weight within 1e-6 of the
# model's (a random start differs by far more). The cosine schedule's rates,
# read back from the curve, are lr (1 + cos(pi s / S)) / 2 for step s of S.
expect 0 "starting from the weights of .*straight/checkpoint.nc" -- "$semrep" stage train "$conf" \
  --set "output_dir=\"$work/init\"" --set "train.init=\"$straight/checkpoint.nc\"" --set train.epochs=1 \
  --set train.lr=1e-9 --set 'train.lr_schedule="cosine"'
check "train.init: the weights start at the model's; cosine rates by the closed form" '/usr/bin/python3 - "$straight/checkpoint.nc" "$work/init" <<"PY"
import sys, math, netCDF4, numpy as np
a, b = netCDF4.Dataset(sys.argv[1]), netCDF4.Dataset(sys.argv[2] + "/checkpoint.nc")
worst = max(float(np.max(np.abs(a[v][:] - b[v][:]))) for v in a.variables)
c = netCDF4.Dataset(sys.argv[2] + "/train-curve.nc")
step, lr = c["step"][:], c["lr"][:]
want = [1e-9 * 0.5 * (1 + math.cos(math.pi * (s - 1) / len(step))) for s in step]
err = max(abs(x - y) / 1e-9 for x, y in zip(lr, want))
print("init: largest weight change %g; cosine: largest error %g of lr over %d steps" % (worst, err, len(step)))
sys.exit(0 if 0 < worst < 1e-6 and err < 1e-6 and len(step) > 2 else 1)
PY'
expect 1 "checkpoint .*nothing.nc" -- "$semrep" stage train "$conf" --set "output_dir=\"$work/init2\"" \
  --set "train.init=\"$work/nothing.nc\""

# The held-out loss goes into the curve after every epoch and at the end of
# every run; with train.patience = 1 and a learning rate too small to move
# it, training ends after the second evaluation, at epoch 2 of 3, and a
# rerun finds it finished.
expect 0 "the held-out loss has not improved for 1 evaluations" -- "$semrep" stage train "$conf" \
  --set "output_dir=\"$work/patience\"" --set "train.init=\"$straight/checkpoint.nc\"" --set train.epochs=3 \
  --set train.lr=1e-9 --set train.heldout_images=40 --set train.patience=1
check "two held-out evaluations in the curve, after epochs 1 and 2, finite and alike" '/usr/bin/python3 - "$work/patience" <<"PY"
import sys, netCDF4, numpy as np
c = netCDF4.Dataset(sys.argv[1] + "/train-curve.nc")
e, l = c["heldout_epoch"][:], c["heldout_loss"][:]
print("held-out evaluations:", list(e), list(l))
sys.exit(0 if list(e) == [1.0, 2.0] and np.all(np.isfinite(l)) and abs(l[1] - l[0]) < 1e-3 * l[0] else 1)
PY'
expect 0 "is complete" -- "$semrep" stage train "$conf" --set "output_dir=\"$work/patience\"" \
  --set "train.init=\"$straight/checkpoint.nc\"" --set train.epochs=3 --set train.lr=1e-9 \
  --set train.heldout_images=40 --set train.patience=1

# semrep run trains (no model yet), then evaluates the denoiser: the noisy
# input's PSNR is -20 log10(sigma) to within 0.1 dB (a closed form).
expect 0 "denoise-eval: 64 held-out images" -- "$semrep" run "$conf" --set "output_dir=\"$work/run\""
bad_psnr=$(awk '/^ +[0-9]+ +[0-9.]+ +[0-9.-]+ +[0-9.]+/ { s = $1 / 255; want = -20 * log(s) / log(10);
  d = $2 - want; if (d < -0.1 || d > 0.1) print $0 }' "$work/out")
check "input PSNR is -20 log10(sigma): ${bad_psnr:-ok}" '[ -z "$bad_psnr" ] && grep -q "^ *200 " "$work/out"'
expect 0 "train: the model is .*checkpoint.nc; not training" -- "$semrep" run "$conf" --set "output_dir=\"$work/run\""
check "a second run skips what is up to date" 'grep -q "stats: up to date" "$work/out" && grep -q "phi.nc is up to date" "$work/out" && grep -q "report: up to date" "$work/out"'
expect 0 "stats: 64 images" -- "$semrep" run "$conf" --set "output_dir=\"$work/run\"" --set stats.active_threshold=0.2
# a clusters.nc of an older format_version is out of date, whatever its record says
ncdump "$work/run/clusters.nc" | sed 's/:format_version = 3 ;/:format_version = 2 ;/' >"$work/clusters-v2.cdl"
ncgen -k nc4 -o "$work/run/clusters.nc" "$work/clusters-v2.cdl"
expect 0 "cluster: 64 images" -- "$semrep" run "$conf" --set "output_dir=\"$work/run\"" --set stats.active_threshold=0.2
check "the older clusters.nc is made again, at version 3, and stats stays up to date" \
  'grep -q ":format_version = 2 ;" "$work/clusters-v2.cdl" && ncdump -h "$work/run/clusters.nc" | grep -q ":format_version = 3 ;" &&
   grep -q "stats: up to date" "$work/out"'

# The report: a page whose every link is a file beside it (no network), with
# its tables as CSV and its plots drawn.
page="$work/run/report/index.html"
links=$(grep -o '\(src\|href\)="[^"]*"' "$page" 2>/dev/null | sed 's/^[a-z]*="//; s/"$//')
missing=$(for l in $links; do [ -e "$work/run/report/$l" ] || echo "$l"; done)
check "the report exists and its links resolve: ${missing:-all there}" \
  '[ -s "$page" ] && [ -n "$links" ] && [ -z "$missing" ] && ! grep -q "http" "$page"'
check "the report has the measures table, plots, image grids and reconstruction rows" \
  'grep -q "phi, sigma" "$work/run/report/tables/measures.csv" && ls "$work/run/report/plots/"pr_*.png >/dev/null && ls "$work/run/report/images/"recon-*.png >/dev/null'

# semrep run resumes a training that stopped (train.run_steps here; a time
# limit or a kill leave the same state) and runs no later stage until the
# model is finished: exit 3 while it is not, and phi and denoise-eval refuse
# it by name. Resumed, not restarted: the curve's steps continue and its
# earlier points (their measured images/s included) are kept, and the end
# equals a training never stopped.
curve() { ncdump -v "$2" "$1/train-curve.nc" | tr -d ' \t\n' | sed -n "s/.*data:$2=\([^;]*\);.*/\1/p"; }
resume="$work/resume"
run=("$semrep" run "$conf" --set "output_dir=\"$resume\"" --set train.epochs=2)
expect 3 "the model .*checkpoint.nc is not fully trained: .* stopped at step 3, in epoch 1 of 2.*the later stages did not run" -- \
  "${run[@]}" --set train.run_steps=3
check "no stage after train ran on the unfinished model: $(ls "$resume" | tr '\n' ' ')" \
  '[ -e "$resume/checkpoint.nc" ] && ! ls "$resume" | grep -Eq "denoise|phi|stats|clusters|recon|report"'
first=$(curve "$resume" images_per_s)
expect 0 "^  training: unfinished: the model .*checkpoint.nc is not fully trained" -- \
  "$semrep" info "$conf" --set "output_dir=\"$resume\"" --set train.epochs=2
for stage in phi denoise-eval report; do
  expect 1 "error: .*the model .*checkpoint.nc is not fully trained: .*finish it with semrep run or semrep stage train" -- \
    "$semrep" stage $stage "$conf" --set "output_dir=\"$resume\"" --set train.epochs=2
done
# SLURM: resubmitting after a time limit chains the train stage again
# (sbatch is a stand-in that records the jobs; submit.sh runs build/semrep).
top=$(cd "$(dirname "$0")/../.." && pwd)
submitted() {
  rm -f "$work/sbatch.log"
  env PATH="$work/fake:$PATH" "$top/job_scripts/submit.sh" "$conf" --set "output_dir=\"$resume\"" --set train.epochs=2 \
    >/dev/null 2>&1
  sed -n 's/.*--job-name=\([^ ]*\).*/\1/p' "$work/sbatch.log" | tr '\n' ' '
}
if [ "$semrep" -ef "$top/build/semrep" ]; then
  mkdir -p "$work/fake" && printf '#!/bin/sh\necho "$*" >>"%s/sbatch.log"\necho 1\n' "$work" >"$work/fake/sbatch"
  chmod +x "$work/fake/sbatch"
  jobs=$(submitted)
  check "submit.sh chains train for the unfinished model: $jobs" '[ "${jobs%% *}" = semrep-train ]'
fi
expect 3 "stopped at step 10, in epoch 2 of 2" -- "${run[@]}" --set train.run_steps=7
check "the second run resumed at step 3" 'grep -q "train: resuming .*train-state.nc at step 3 (epoch 1)" "$work/out"'
second=$(curve "$resume" images_per_s) steps=$(curve "$resume" step)
check "the curve continues (steps $steps) and keeps the first run's points" \
  '[ "$steps" = "1,2,3,4,5,6,7,8,9,10" ] && [ -n "$first" ] && [ "${second#"$first",}" != "$second" ]'
expect 0 "report: .*resume/report/index.html" -- "${run[@]}"
check "the third run resumed at step 10 and ran the later stages" \
  'grep -q "train: resuming .*train-state.nc at step 10 (epoch 2)" "$work/out" && grep -q "denoise-eval: 64 held-out images" "$work/out"'
third=$(curve "$resume" images_per_s) steps=$(curve "$resume" step)
check "the curve holds steps 1 to 16 ($steps) and the earlier points" \
  '[ "$steps" = "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16" ] && [ "${third#"$second",}" != "$third" ]'
"$semrep" stage train "$conf" --set "output_dir=\"$work/straight-2\"" --set train.epochs=2 >>"$work/log" 2>&1
a=$(checksum "$work/straight-2") b=$(checksum "$resume")
check "the resumed model equals one trained without a stop: $a vs $b" '[ -n "$a" ] && [ "$a" = "$b" ]'
if [ "$semrep" -ef "$top/build/semrep" ]; then
  jobs=$(submitted)
  check "submit.sh does not chain train for the finished model: $jobs" '[ "${jobs%% *}" = semrep-denoise-eval ]'
fi
rm "$resume/checkpoint.nc"
expect 0 "train: .*resume/checkpoint.nc is complete \(16 steps\); nothing to do" -- "${run[@]}"
b=$(checksum "$resume")
check "a finished training writes its removed model again from its state: $a vs $b" '[ "$a" = "$b" ]'

# A training state trains the model it names. With model.checkpoint set to
# another file (a model from elsewhere) beside an unfinished state, that
# model is used as it is, and train refuses to continue the state into it.
mkdir -p "$work/shipped" && cp "$resume/checkpoint.nc" "$work/shipped/"
"$semrep" stage train "$conf" --set "output_dir=\"$work/mixed\"" --set train.run_steps=2 >>"$work/log" 2>&1
mixed=(--set "output_dir=\"$work/mixed\"" --set "model.checkpoint=\"$work/shipped/checkpoint.nc\"")
expect 0 "checkpoint: .*shipped/checkpoint.nc, matches the conf" -- "$semrep" info "$conf" "${mixed[@]}"
check "info finds the shipped model finished" '! grep -q "training:" "$work/out"'
expect 1 "the training state .*mixed/train-state.nc trains the model .*mixed/checkpoint.nc, not .*shipped/checkpoint.nc" -- \
  "$semrep" stage train "$conf" "${mixed[@]}"
b=$(checksum "$work/mixed") c=$(checksum "$work/shipped")
check "the model from elsewhere is unchanged: $c vs $a" '[ "$c" = "$a" ] && [ -n "$b" ] && [ "$b" != "$a" ]'
# The same with a state from before states named their model (no `model`
# attribute): it trained the folder's default checkpoint.nc, not this one.
ncdump -p 9,17 "$work/mixed/train-state.nc" | grep -v ":model = " >"$work/state-v0.cdl" # every digit: the values keep their checksum
ncgen -k nc4 -o "$work/mixed/train-state.nc" "$work/state-v0.cdl"
check "the older state names no model" '! ncdump -h "$work/mixed/train-state.nc" | grep -q ":model = "'
expect 1 "the training state .*mixed/train-state.nc trains the model .*mixed/checkpoint.nc, not .*shipped/checkpoint.nc" -- \
  "$semrep" stage train "$conf" "${mixed[@]}"
c=$(checksum "$work/shipped")
check "the model from elsewhere is still unchanged: $c vs $a" '[ "$c" = "$a" ]'

# A relative output folder (the usual case) works from any directory.
expect 0 "report: relative/report/index.html" -- bash -c "cd '$work' && '$semrep' run '$conf' --set 'output_dir=\"relative\"'"

finish
