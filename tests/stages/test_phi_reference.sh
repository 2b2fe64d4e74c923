#!/usr/bin/env bash
# The phi stage as users run it (2 ranks) against PyTorch and a numpy
# Philox (tests/stages/phi_reference.py): 24 Fashion-MNIST test images with
# the shipped model, sigmas 0, 0.1 and 0.4 with 2 draws, in chunks of 16:
# phi and every block's means within 2e-5 of PyTorch's on the noise
# regenerated from docs/formats.md, and image_key exactly XXH3-64 of the
# pixels seeded with the noise key (xxhash).
set -u
semrep=$(realpath "$1")
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib.sh"
. "$top/job_scripts/env.sh"
expect 0 "wrote .*phi.nc" -- mpirun --oversubscribe --allow-run-as-root -np 2 "$semrep" stage phi \
  "$top/conf/fashion-mnist.conf" --set "output_dir=\"$work/p\"" --set dataset.limit=24 --set phi.batch=16 \
  --set "phi.sigmas=[0.0,0.1,0.4]" --set phi.draws=2 --set phi.block_means=true
/usr/bin/python3 "$top/tests/stages/phi_reference.py" "$work/p/phi.nc" "$top/conf/models/fashion-mnist.nc" 1 >"$work/ref" 2>&1
rc=$?
cat "$work/ref"
check "phi.nc is PyTorch's on numpy's noise, image_key xxhash's" '[ $rc = 0 ] && grep -q "^0 failed" "$work/ref"'
finish
