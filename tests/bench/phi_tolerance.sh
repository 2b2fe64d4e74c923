#!/usr/bin/env bash
# phi of one build against another's, on the same model and images: the
# relative max difference of phi (max |a - b| / max |b| at each sigma), for
# docs/performance.md's tolerance of a kernel change (issue 16).
#   tests/bench/phi_tolerance.sh NEW_SEMREP OLD_SEMREP [WORK]
# Two runs: conf/tiny-test.conf (a model trained here by OLD, 1 thread) and
# conf/fashion-mnist.conf's shipped model at the default shape (128 images,
# sigmas 0 and 0.2, 8 draws, 2 threads). Prints one line per conf and sigma,
# and fails when a difference is above TOLERANCE (1e-5: the CPU convolution
# paths, oneDNN's against the BLAS's, docs/performance.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
. job_scripts/env.sh
new=$(realpath "$1") old=$(realpath "$2") work=${3:-/tmp/phi_tolerance}
rm -rf "$work" && mkdir -p "$work"
"$old" stage train conf/tiny-test.conf --set "output_dir=\"$work/tiny-train\"" >/dev/null
for b in new old; do
  bin=${!b}
  "$bin" stage phi conf/tiny-test.conf --set "output_dir=\"$work/tiny-$b\"" \
    --set "model.checkpoint=\"$work/tiny-train/checkpoint.nc\"" >/dev/null
  "$bin" stage phi conf/fashion-mnist.conf --set "output_dir=\"$work/default-$b\"" --set threads=2 \
    --set dataset.limit=128 --set 'phi.sigmas=[0.0,0.2]' --set phi.draws=8 --set phi.block_means=false >/dev/null
done
/usr/bin/python3 - "$work" "${TOLERANCE:-1e-5}" <<'PY'
import sys
import netCDF4
import numpy as np
work, tol, worst = sys.argv[1], float(sys.argv[2]), 0.0
for conf in ("tiny", "default"):
    a = netCDF4.Dataset(f"{work}/{conf}-new/phi.nc")
    b = netCDF4.Dataset(f"{work}/{conf}-old/phi.nc")
    pa, pb = np.asarray(a["phi"][:], np.float64), np.asarray(b["phi"][:], np.float64)
    sig = np.asarray(a["sigma"][:])
    for s in range(pa.shape[0]):
        d = np.abs(pa[s] - pb[s]).max() / max(np.abs(pb[s]).max(), 1e-30)
        print(f"{conf}: sigma {sig[s]:.2f}: phi {pa[s].shape}, relative max difference {d:.2e}")
        worst = max(worst, d)
print(f"worst {worst:.2e}: {'within' if worst <= tol else 'ABOVE'} the tolerance {tol:g}")
sys.exit(0 if worst <= tol else 1)
PY
