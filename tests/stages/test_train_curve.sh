#!/usr/bin/env bash
# The learning-rate column of train-curve.nc against each schedule's closed
# form (docs/conf.md): "step" halves train.lr every train.lr_step epochs,
# "constant" keeps it, "cosine" is lr (1 + cos(pi s / S)) / 2 at step s of S
# (counted from 0); and the curve has one point per step, numbered from 1.
# tiny-test.conf: 256 images in batches of 32, 8 steps per epoch; 3 epochs.
set -u
semrep=$(realpath "$1")
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib.sh"
. "$top/job_scripts/env.sh"
for schedule in step constant cosine; do
  expect 0 "train: step 24/24" -- "$semrep" stage train "$top/conf/tiny-test.conf" --set "output_dir=\"$work/$schedule\"" \
    --set train.epochs=3 --set train.lr_step=1 --set train.lr=0.004 --set "train.lr_schedule=\"$schedule\""
  got=$(/usr/bin/python3 - "$work/$schedule/train-curve.nc" "$schedule" <<'PY'
import math, sys
import netCDF4
import numpy as np
c = netCDF4.Dataset(sys.argv[1])
step, lr = np.array(c["step"][:]), np.array(c["lr"][:])
kind, base, per_epoch, total = sys.argv[2], 0.004, 8, 24
s = np.arange(total)
want = {"step": base * 0.5 ** (s // per_epoch), "constant": np.full(total, base),
        "cosine": base * 0.5 * (1 + np.cos(math.pi * s / total))}[kind]
ok = np.array_equal(step, s + 1) and len(lr) == total and np.abs(lr - want).max() <= 1e-6 * base
print(int(ok), "largest error %.3g of lr, steps %d..%d" % (np.abs(lr - want).max() / base if len(lr) == total else -1,
                                                            step.min(), step.max()))
PY
)
  check "$schedule: the curve's lr is the closed form ($got)" '[ "${got%% *}" = 1 ]'
done
finish
