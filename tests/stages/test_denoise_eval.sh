#!/usr/bin/env bash
# denoise-eval with the shipped Fashion-MNIST model on 32 held-out images,
# against closed forms: the noisy input's PSNR is -20 log10(sigma) (within
# 0.1 dB); the output beats it by at least 3 dB at every sigma of 25/255 and
# above (a denoiser D(y) = y has output = input); and the held-out loss is
# under a quarter of what D(y) = y would give, sum over the 32 x 32 pixels
# of sigma^2, whose mean under train.sigma_dist = inv_sqrt on [0, 1]
# (sigma = u^2, u uniform) is 1024 E[u^4] = 1024 / 5.
set -u
semrep=$(realpath "$1")
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib.sh"
. "$top/job_scripts/env.sh"
expect 0 "denoise-eval: 32 held-out images" -- "$semrep" stage denoise-eval "$top/conf/fashion-mnist.conf" \
  --set "output_dir=\"$work/d\"" --set dataset.limit=32
cat "$work/out"
/usr/bin/python3 - "$work/d/denoise.nc" >"$work/ref" 2>&1 <<'PY'
import math, sys
import netCDF4
import numpy as np
ds = netCDF4.Dataset(sys.argv[1])
sigma, pin, pout = (np.array(ds[v][:]) for v in ("sigma", "input_psnr", "output_psnr"))
bad = 0
for s, a, b in zip(sigma, pin, pout):
    want = -20 * math.log10(s)
    ok_in = abs(a - want) < 0.1
    ok_out = b > a + 3 if s >= 25 / 255 - 1e-9 else True
    bad += not (ok_in and ok_out)
    print("%s sigma %5.1f/255: input %.2f dB (closed form %.2f), output %.2f dB"
          % ("ok  " if ok_in and ok_out else "FAIL", s * 255, a, want, b))
identity = 1024 / 5
loss = float(ds.heldout_loss)
ok = 0 < loss < identity / 4 and int(ds.images) == 32
bad += not ok
print("%s held-out loss %.4f, D(y) = y would give about %.1f" % ("ok  " if ok else "FAIL", loss, identity))
print("sigmas %d" % len(sigma))
sys.exit(1 if bad or len(sigma) != 6 else 0)
PY
rc=$?
cat "$work/ref"
check "denoise.nc: input PSNR the closed form, output better by 3 dB from 25/255, held-out loss far below D(y) = y's" \
  '[ $rc = 0 ]'
finish
