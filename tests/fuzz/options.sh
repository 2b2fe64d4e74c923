# Sourced by replay.sh and fuzz.sh: the sanitizers' and libFuzzer's options
# for every fuzz target. Leaks that libraries make on their own error paths
# are suppressed by tests/sanitizers/lsan.supp.
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export LSAN_OPTIONS="suppressions=$here/../sanitizers/lsan.supp:print_suppressions=0"
# A request too big for any machine returns NULL, as malloc does outside
# ASan, so that a library's own check of it runs (NetCDF's NC_ENOMEM).
export ASAN_OPTIONS="fast_unwind_on_malloc=0:allocator_may_return_null=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
# each input gets 10 s and 2 GB; inputs up to 64 kB (a small NetCDF-4 file)
fuzz_options=(-timeout=10 -rss_limit_mb=2048 -max_len=65536)
