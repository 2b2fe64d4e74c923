#!/usr/bin/env bash
# CTest's fuzz test: replays the committed corpus of one reader, then runs a
# short fuzzing session with a fixed seed (the same inputs on every run).
# New inputs go to a scratch folder, never into the committed corpus; an
# input that fails is kept in fuzz-failures/ under the current folder.
#   tests/fuzz/replay.sh FUZZER CORPUS [RUNS]
set -euo pipefail
fuzzer=$1 corpus=$2 runs=${3:-2000}
. "$(dirname "$0")/options.sh"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
# -runs counts the inputs tried after the corpus is read
if ! "$fuzzer" -seed=1 -runs="$runs" "${fuzz_options[@]}" -artifact_prefix="$scratch/" \
     "$scratch" "$corpus" >"$scratch/log" 2>&1; then
  tail -60 "$scratch/log"
  mkdir -p fuzz-failures
  kept=$(find "$scratch" -maxdepth 1 -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) \
         -exec cp {} fuzz-failures/ \; -print | sed 's|.*/||' | paste -sd ' ')
  echo "fuzz: $(basename "$fuzzer") failed on ${kept:-an input of the corpus}, kept in $PWD/fuzz-failures; reproduce: $fuzzer FILE"
  exit 1
fi
grep -E "^(INFO: seed corpus|Done )" "$scratch/log"
