#!/usr/bin/env bash
# tests/bench/analysis_scale.sh runs: on a small synthetic phi file it prints
# a row per rank count and stage with a time, a CPU time and every rank's
# peak memory; the file it makes is the phi layout with 10 labelled classes
# of sparse non-negative rows; bad arguments are refused by name. Speed is
# not checked (it is a benchmark). Skipped (77) without /usr/bin/time.
set -u
semrep=$(realpath "$1")
bench=$(cd "$(dirname "$0")/../bench" && pwd)/analysis_scale.sh
. "$(dirname "$0")/../lib.sh"
[ -x /usr/bin/time ] || { echo "no /usr/bin/time (Debian package time): skipped"; exit 77; }
row='^\| 300 \(synthetic\) \| [12] \| (stats|cluster) \| [0-9.]+ s \| [0-9.]+ s \| [0-9]+ MB \(ranks: [0-9]+( [0-9]+)?\) \|$'

WORK="$work/b" RANKS="1 2" KS="5, 20" RESTARTS=1 MAX_ITER=3 "$bench" "$semrep" 300 >"$work/table" 2>"$work/err"
status=$?
check "the benchmark exits 0 on 300 images: $status $(tail -3 "$work/err")" '[ "$status" -eq 0 ]'
rows=$(grep -Ec "$row" "$work/table")
check "a row for each of 1 and 2 ranks and stats and cluster: $rows of 4 ($(cat "$work/table"))" '[ "$rows" -eq 4 ]'
check "two ranks report two peaks" 'grep -E "\| 2 \| stats \|" "$work/table" | grep -Eq "ranks: [0-9]+ [0-9]+\)"'
check "stats wrote stats.nc for 2 ranks" '[ -s "$work/b/run-synthetic-300-np2/stats.nc" ]'
/usr/bin/python3 - "$work/b/synthetic-300.nc" >"$work/py" 2>&1 <<'PY'
import sys, netCDF4, numpy as np
d = netCDF4.Dataset(sys.argv[1])
phi, label = np.asarray(d["phi"][:]), np.asarray(d["label"][:])
assert d.getncattr("format") == "semrep-phi" and int(d.getncattr("format_version")) == 1
assert phi.shape == (1, 300, 256) and label.shape == (300,), (phi.shape, label.shape)
assert phi.min() >= 0 and set(np.unique(label)) == set(range(10)), np.unique(label)
zero = np.mean(phi == 0)
assert 0.7 < zero < 0.95, zero  # sparse: most channels exactly 0
print("synthetic phi ok, %.2f of the values 0" % zero)
PY
check "the synthetic phi: $(cat "$work/py")" 'grep -q "synthetic phi ok" "$work/py"'

expect 1 "analysis_scale.sh: image count '12x' is not a number" -- "$bench" "$semrep" 12x
REAL_PHI="$work/none.nc" expect 1 "analysis_scale.sh: REAL_PHI=.*/none.nc is not a readable file" -- "$bench" "$semrep" 300
WORK="$work/b" RANKS=1 KS="301" expect 1 "cluster failed on 300 images, 1 rank\(s\); see" -- "$bench" "$semrep" 300
check "with the stage's own error" 'grep -q "K = 301 is more than the 300 images" "$work/out"'
check "a failed stage has a row that says so" 'grep -Eq "\| 300 \(synthetic\) \| 1 \| cluster \| failed \|" "$work/out"'
finish
