#!/usr/bin/env bash
# The cluster stage as users run it (2 ranks), against numpy and
# scikit-learn (tests/stages/cluster_reference.py): 300 Fashion-MNIST test
# images, whose phi.nc (written by the phi stage, so its images and data-set
# attributes are the conf's) is rewritten into overlapping blobs, one per
# label (tests/fixtures/make_cluster_reference.py). Checked for phi and for
# the pixel baseline: exact neighbours without the image itself, k-NN
# accuracy, the stored NMI, ARI and purity from the stored labels, a Lloyd
# fixed point, inertia within 1.01x scikit-learn's best, and the members.
# A run with one Lloyd iteration must fail the same checks: they can fail.
set -u
semrep=$(realpath "$1")
top=$(cd "$(dirname "$0")/../.." && pwd)
conf=$top/conf/fashion-mnist.conf
images=/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz
. "$top/tests/lib.sh"
. "$top/job_scripts/env.sh"
set_=(--set dataset.limit=300 --set "phi.sigmas=[0.1]" --set phi.draws=1 --set phi.block_means=false
      --set "cluster.k=[10,4]")
expect 0 "wrote .*phi.nc" -- "$semrep" stage phi "$conf" --set "output_dir=\"$work/a\"" "${set_[@]}"
expect 0 "blobs: 300 images, 10 classes" -- /usr/bin/python3 "$top/tests/fixtures/make_cluster_reference.py" "$work/a/phi.nc"
cp -r "$work/a" "$work/once"
expect 0 "written to" -- mpirun --oversubscribe --allow-run-as-root -np 2 "$semrep" stage cluster "$conf" \
  --set "output_dir=\"$work/a\"" "${set_[@]}"
/usr/bin/python3 "$top/tests/stages/cluster_reference.py" "$work/a" "$images" >"$work/ref" 2>&1
rc=$?
cat "$work/ref"
check "clusters.nc agrees with numpy and scikit-learn" '[ $rc = 0 ] && grep -q "^[0-9]* passed, 0 failed" "$work/ref"'

# The control: one Lloyd iteration after seeding is not a fixed point, and
# its inertia is far from scikit-learn's.
"$semrep" stage cluster "$conf" --set "output_dir=\"$work/once\"" "${set_[@]}" --set cluster.max_iter=1 \
  --set cluster.restarts=1 >"$work/log" 2>&1
/usr/bin/python3 "$top/tests/stages/cluster_reference.py" "$work/once" "$images" >"$work/ref1" 2>&1
check "the control (cluster.max_iter=1) fails the fixed-point check" \
  'grep -q "^FAIL .*K=10: each image nearest its own cluster" "$work/ref1"'
finish
