#!/usr/bin/env bash
# Fuzzes the readers for longer than CI does: SECONDS each (default 60),
# niced, all targets or those named (png idx netcdf checkpoint conf manifest).
# Builds build/fuzz first (clang with libFuzzer). New interesting inputs go
# to build/fuzz/found/READER (add the useful ones to tests/fuzz/corpus/),
# failures to build/fuzz/failures/READER; a crash does not stop the session
# (-fork), so one library bug does not hide the others.
#   tests/fuzz/fuzz.sh [SECONDS] [READER]...
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds=${1:-60}
shift || true
readers=("$@")
((${#readers[@]})) || readers=(png idx netcdf checkpoint conf manifest)
. tests/fuzz/options.sh
cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Sanitize -DSEMREP_CUDA=OFF -DSEMREP_FUZZ=ON >/dev/null
nice -n 10 cmake --build build/fuzz -j "$(nproc)" >/dev/null
status=0
for reader in "${readers[@]}"; do
  found=build/fuzz/found/$reader failures=build/fuzz/failures/$reader
  mkdir -p "$found" "$failures"
  echo "fuzz: $reader for $seconds s"
  nice -n 10 "build/fuzz/tests/fuzz/fuzz_$reader" -max_total_time="$seconds" -fork=1 -ignore_crashes=1 \
    -ignore_timeouts=1 -ignore_ooms=1 "${fuzz_options[@]}" -artifact_prefix="$failures/" \
    "$found" "tests/fuzz/corpus/$reader" >"build/fuzz/$reader.log" 2>&1 || status=1
  grep -E "^#[0-9]+: cov" "build/fuzz/$reader.log" | tail -1 || true
  n=$(find "$failures" -type f | wc -l)
  if [ "$n" -gt 0 ]; then
    status=1
    echo "fuzz: $reader: $n failing input(s) in $failures; the log is build/fuzz/$reader.log"
  fi
done
exit $status
