# Sourced by the shell tests: a work folder removed at exit, counters, and
# the closing line CTest's log and CI read ("N passed, N failed").
work=$(mktemp -d)
[ -n "${SEMREP_KEEP_TEST_WORK:-}" ] || trap 'rm -rf "$work"' EXIT
passed=0 failed=0

# check DESCRIPTION CONDITION: CONDITION (a shell expression) holds.
check() {
  if eval "$2"; then passed=$((passed + 1)); else failed=$((failed + 1)); echo "FAILED: $1"; fi
}

# expect STATUS PATTERN -- COMMAND...: COMMAND exits with STATUS and a line of
# its output (stdout and stderr, kept in $work/out) matches PATTERN.
expect() {
  local want=$1 pattern=$2
  shift 3
  "$@" >"$work/out" 2>&1
  local got=$?
  if [ "$got" -eq "$want" ] && grep -Eq -- "$pattern" "$work/out"; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1))
    echo "FAILED: $* -> exit $got (want $want), output:"
    cat "$work/out"
  fi
}

finish() {
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
}
