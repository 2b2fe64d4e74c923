#!/usr/bin/env bash
# The phi stage as users run it: 1, 2 and 3 ranks write the same numbers; a
# run stopped after a chunk and resumed writes the same file as a clean one;
# the spread over noise seeds shrinks like 1/sqrt(draws); bad input refused.
set -u
semrep=$(realpath "$1")
conf=$(cd "$(dirname "$0")/../../conf" && pwd)/tiny-test.conf
. "$(dirname "$0")/../lib.sh"
mp() { mpirun --oversubscribe --allow-run-as-root -np "$@"; }
digest() { "$semrep" info "$1/phi.nc" | sed -n 's/.*phi values: [0-9]*, digest \([0-9a-f]*\).*/\1/p'; }
blocks() { "$semrep" info "$1/phi.nc" | sed -n 's/.*block_mean values: [0-9]*, digest \([0-9a-f]*\).*/\1/p'; }

# a tiny model to compute phi with
"$semrep" stage train "$conf" --set "output_dir=\"$work/model\"" >"$work/log" 2>&1
model="model.checkpoint=\"$work/model/checkpoint.nc\""
# 72 images in chunks of 16: the last chunk is short
phi() { local dir=$1; shift; "$@" "$semrep" stage phi "$conf" --set "$model" --set "output_dir=\"$dir\"" \
  --set dataset.limit=72 "${SETS[@]}" >>"$work/log" 2>&1; }

SETS=()
phi "$work/r1"
phi "$work/r2" mp 2
phi "$work/r3" mp 3
d1=$(digest "$work/r1") d2=$(digest "$work/r2") d3=$(digest "$work/r3")
check "phi on 1, 2, 3 ranks: $d1 $d2 $d3" '[ -n "$d1" ] && [ "$d1" = "$d2" ] && [ "$d1" = "$d3" ]'
b1=$(blocks "$work/r1") b3=$(blocks "$work/r3")
check "block means on 1 and 3 ranks: $b1 $b3" '[ -n "$b1" ] && [ "$b1" = "$b3" ]'

SETS=(--set phi.run_chunks=2)
phi "$work/resumed"
check "a stopped run leaves chunks and no phi.nc" '[ ! -e "$work/resumed/phi.nc" ] && [ "$(ls "$work/resumed/phi-chunks" | wc -l)" = 2 ]'
SETS=()
phi "$work/resumed" mp 2
dr=$(digest "$work/resumed")
check "stopped, resumed on 2 ranks: $dr vs $d1" '[ "$dr" = "$d1" ] && [ ! -e "$work/resumed/phi-chunks" ]'

# the spread over seeds of phi at sigma 0.4: 4 draws against 16
for n in 4 16; do
  for seed in 1 2 3 4 5 6; do
    SETS=(--set "seed=$seed" --set "phi.draws=$n" --set "phi.sigmas=[0.4]" --set phi.block_means=false --set dataset.limit=32)
    phi "$work/spread-$n-$seed"
  done
done
ratio=$(/usr/bin/python3 - "$work" <<'PY'
import sys, numpy as np, netCDF4
def spread(n):
    runs = np.stack([netCDF4.Dataset(f"{sys.argv[1]}/spread-{n}-{s}/phi.nc")["phi"][:] for s in range(1, 7)])
    return np.sqrt(np.mean(runs.std(axis=0, ddof=1) ** 2))
print(f"{spread(4) / spread(16):.3f}")
PY
)
check "spread ratio of 4 against 16 draws is about 2: $ratio" "/usr/bin/python3 -c 'import sys; r=float(\"$ratio\"); sys.exit(not 1.6 < r < 2.5)'"

expect 1 "has kernels = \\[4, 8, 16\\] but the conf's model.kernels is \\[4, 8, 32\\]" -- \
  "$semrep" stage phi "$conf" --set "$model" --set "output_dir=\"$work/bad\"" --set "model.kernels=[4,8,32]"
expect 1 "phi.sigmas = -0.1 is out of range" -- "$semrep" stage phi "$conf" --set "phi.sigmas=[0.0,-0.1]"
expect 1 "phi.draws = 0 is out of range" -- "$semrep" stage phi "$conf" --set phi.draws=0
expect 1 "cannot (make the folder|write in the output folder) /proc/semrep" -- \
  "$semrep" stage phi "$conf" --set "$model" --set 'output_dir="/proc/semrep"'
"$semrep" stage train "$conf" --set "output_dir=\"$work/other\"" --set seed=9 >>"$work/log" 2>&1
expect 1 "r1/phi.nc was made from the checkpoint with checksum [0-9a-f]+, not this run's" -- \
  "$semrep" stage phi "$conf" --set "model.checkpoint=\"$work/other/checkpoint.nc\"" --set "output_dir=\"$work/r1\"" \
  --set dataset.limit=72
expect 0 "phi.nc is up to date" -- "$semrep" stage phi "$conf" --set "$model" --set "output_dir=\"$work/r1\"" --set dataset.limit=72

finish
