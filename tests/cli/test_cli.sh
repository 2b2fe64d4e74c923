#!/usr/bin/env bash
# The command line as a user meets it: exit codes (docs/cli.md), one-line
# errors naming the thing, and the benchmark's table on one and two ranks.
set -u
semrep=$1
conf=$(dirname "$0")/../../conf/fashion-mnist.conf
failed=0 passed=0
out=$(mktemp) err=$(mktemp)
trap 'rm -f "$out" "$err"' EXIT

# expect STATUS PATTERN -- COMMAND...: exit status and a line of output matching PATTERN
expect() {
  local want=$1 pattern=$2; shift 3
  "$@" >"$out" 2>"$err"
  local got=$?
  if [ "$got" -eq "$want" ] && grep -Eq -- "$pattern" "$out" "$err"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAILED: $* -> exit $got (want $want), output:"; cat "$out" "$err"
  fi
}

expect 2 "^usage: semrep COMMAND" -- "$semrep"
expect 0 "bench \[CONF\]" -- "$semrep" --help
expect 2 "unknown command 'frobnicate'" -- "$semrep" frobnicate
expect 2 "--batch abc is not an integer" -- "$semrep" bench --batch abc
expect 2 "--seconds x is not a number" -- "$semrep" bench --seconds x
expect 2 "unknown option --bogus" -- "$semrep" bench --bogus 1
expect 1 "cannot read the conf /nonexistent/x.conf" -- "$semrep" run /nonexistent/x.conf
expect 1 "cannot read the conf x.conf" -- "$semrep" stage phi x.conf
expect 2 "unknown stage 'phy'" -- "$semrep" stage phy x.conf
expect 1 "stage phi is not built yet" -- "$semrep" stage phi "$conf"

# The table: four passes with positive rates, and the sgemm reference.
expect 0 "sgemm 2048\^3: [0-9.]+ GFLOP/s" -- "$semrep" bench --batch 2 --seconds 0.01
rates=$(grep -cE "^  (encoder|full|training|projection).* [0-9]+\.[0-9] +[0-9]+\.[0-9] " "$out")
if [ "$rates" -eq 4 ]; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: bench table has $rates of 4 rows"; cat "$out"; fi
expect 0 "2 rank\(s\)" -- mpirun --oversubscribe --allow-run-as-root -np 2 "$semrep" bench --batch 2 --seconds 0.01

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
