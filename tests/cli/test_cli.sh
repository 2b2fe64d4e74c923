#!/usr/bin/env bash
# The command line as a user meets it: exit codes (docs/cli.md), one-line
# errors naming the thing, and the benchmark's table on one and two ranks
# (positive rates, FLOPs per image as PyTorch counts them).
set -u
semrep=$(realpath "$1")
top=$(cd "$(dirname "$0")/../.." && pwd)
conf=$top/conf/fashion-mnist.conf
. "$top/tests/lib.sh"
# in the work folder: a relative output_dir (the conf's runs/...) lands
# there and goes with it, never in the build tree
cd "$work" || exit 1

expect 2 "^usage: semrep COMMAND" -- "$semrep"
expect 0 "bench \[CONF\]" -- "$semrep" --help
expect 2 "unknown command 'frobnicate'" -- "$semrep" frobnicate
expect 2 "--batch abc is not an integer" -- "$semrep" bench --batch abc
expect 2 "--seconds x is not a number" -- "$semrep" bench --seconds x
expect 2 "unknown option --bogus" -- "$semrep" bench --bogus 1
expect 1 "cannot read the conf /nonexistent/x.conf" -- "$semrep" run /nonexistent/x.conf
expect 1 "cannot read the conf x.conf" -- "$semrep" stage phi x.conf
expect 2 "unknown stage 'phy'" -- "$semrep" stage phy x.conf

# Confs and files: what they hold, and bad ones refused with one line.
fixtures=$top/tests/fixtures
expect 0 "2507489 parameters" -- "$semrep" info "$conf"
expect 0 "checksum b39ea6d768966418 \(verified\)" -- "$semrep" info "$fixtures/converted_tiny.nc"
expect 1 "has in_channels = 3 but the conf's model.in_channels is 1" -- \
  "$semrep" info "$conf" --set "model.checkpoint=\"$fixtures/converted_tiny.nc\""
expect 1 "has kernels = \[4, 6, 8\] but the conf's model.kernels is \[32, 64, 128, 256\]" -- \
  "$semrep" info "$conf" --set "model.checkpoint=\"$fixtures/converted_tiny.nc\"" --set model.in_channels=3 \
  --set dataset.channels=3 --set train.dataset.channels=3
expect 1 "cannot open the checkpoint .*fashion-mnist.conf" -- "$semrep" info "$conf" --set "model.checkpoint=\"$conf\""
expect 1 "--set: unknown key phi.sigma \(did you mean phi.sigmas\?\)" -- "$semrep" info "$conf" --set "phi.sigma=[0.1]"
expect 1 "model.kernels = -64 is out of range" -- "$semrep" info "$conf" --set "model.kernels=[32,-64,128,256]"
expect 1 "model.norm must be a quoted string" -- "$semrep" info "$conf" --set "model.norm=3"
expect 1 "needs [0-9.]+ GiB .* but the cpu backend has" -- "$semrep" info "$conf" --set "model.kernels=[8192,8192,8192,8192]"
expect 1 "cannot read /nonexistent.nc" -- "$semrep" info /nonexistent.nc

# A FIFO given as any input is refused by name at once, never waited on
# (timeout turns a hang into exit 124, which fails the check).
mkfifo "$work/fifo"
for key in model.checkpoint dataset.images dataset.labels dataset.classes dataset.index_file; do
  expect 1 "fifo \($key\) is a FIFO; semrep reads only regular files" -- \
    timeout 20 "$semrep" info "$conf" --set "$key=\"$work/fifo\"" --set "output_dir=\"$work/fifo-run\""
done
expect 1 "fifo \(semrep info\) is a FIFO" -- timeout 20 "$semrep" info "$work/fifo"
expect 1 "fifo \(the conf\) is a FIFO" -- timeout 20 "$semrep" run "$work/fifo"
# integers past 2^31: the seed's whole range, and the limit as written
expect 0 "seed 4294967295" -- "$semrep" info "$conf" --set seed=4294967295
expect 1 "seed = 4294967296 is out of range \[0, 4294967295\]" -- "$semrep" info "$conf" --set seed=4294967296

# The table: four passes with positive, finite rates, and FLOPs per image
# as PyTorch's modules count them (tests/cli/bench_check.py); on two ranks too.
bench_table() {
  local found
  found=$(/usr/bin/python3 "$top/tests/cli/bench_check.py" "$work/out" "$1")
  local rc=$?
  check "the bench table on $1 rank(s): $(tr '\n' ' ' <<<"$found")" "[ $rc = 0 ]"
}
expect 0 "sgemm 2048\^3: [0-9.]+ GFLOP/s" -- "$semrep" bench --batch 2 --seconds 0.01
bench_table 1
expect 0 "2 rank\(s\)" -- mpirun --oversubscribe --allow-run-as-root -np 2 "$semrep" bench --batch 2 --seconds 0.01
bench_table 2

finish
