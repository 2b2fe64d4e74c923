#!/usr/bin/env bash
# The sanitizer pass (tests/run.sh runs it): semrep built with
# AddressSanitizer and UndefinedBehaviorSanitizer (the Sanitize build type,
# CUDA left out) in build/asan, and the CTest suite run on it, except the
# SLURM and converter tests (they run semrep's plain build). Extra
# arguments go to ctest, e.g. -R phi.
#
# Every report fails the pass, whatever the test made of the exit status:
# ASan and LSan write their reports to build/asan/sanitizer-logs (a test
# that expects a failing exit would otherwise hide one), and exit with 99.
# UBSan stops at the first report (-fno-sanitize-recover=all) and exits
# with 99 too; next to ASan, GCC's UBSan ignores log_path and prints to
# stderr, so its "runtime error:" lines are looked for in CTest's log. mpirun hands
# the options to every rank (OMPI_MCA_mca_base_env_list, mpirun's -x).
# Memory that Open MPI and other libraries keep until exit is suppressed in
# tests/sanitizers/lsan.supp; nothing of semrep's own is.
set -euo pipefail
cd "$(dirname "$0")/../.."
. job_scripts/env.sh
cmake -S . -B build/asan -DCMAKE_BUILD_TYPE=Sanitize -DSEMREP_CUDA=OFF >/dev/null
cmake --build build/asan -j "$(nproc)" >/dev/null

logs=$PWD/build/asan/sanitizer-logs
rm -rf "$logs"
mkdir -p "$logs"
# fast_unwind_on_malloc=0: whole stacks through libraries built without
# frame pointers, which the suppressions need to match. Not
# detect_stack_use_after_return: with the slow unwinder it triples the time.
export ASAN_OPTIONS="log_path=$logs/asan:exitcode=99:detect_leaks=1:fast_unwind_on_malloc=0:strict_string_checks=1"
export UBSAN_OPTIONS="log_path=$logs/ubsan:exitcode=99:print_stacktrace=1:halt_on_error=1"
export LSAN_OPTIONS="suppressions=$PWD/tests/sanitizers/lsan.supp:print_suppressions=0"
export OMPI_MCA_mca_base_env_list="ASAN_OPTIONS;UBSAN_OPTIONS;LSAN_OPTIONS"

status=0
ctest --test-dir build/asan --output-on-failure -E '^(slurm|convert)$' "$@" || status=1
if grep -n "runtime error:" build/asan/Testing/Temporary/LastTest.log; then
  echo "tests/sanitizers/check.sh: error: UndefinedBehaviorSanitizer reports above (build/asan/Testing/Temporary/LastTest.log)" >&2
  status=1
fi
reports=("$logs"/*)
if [ -e "${reports[0]}" ]; then
  for r in "${reports[@]}"; do
    echo "=== $r"
    cat "$r"
  done
  echo "tests/sanitizers/check.sh: error: ${#reports[@]} sanitizer report(s) above (in $logs); fix them in semrep, or, for a library's own leak, add it to tests/sanitizers/lsan.supp" >&2
  status=1
fi
exit $status
