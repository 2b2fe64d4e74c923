#!/usr/bin/env bash
# The reconstruct stage as users run it, against PyTorch, numpy and a numpy
# Philox (tests/stages/recon_reference.py), with the shipped model on 32
# Fashion-MNIST test images:
#  - the fixed sampler matching stats.nc's selective channels at sigma 0.2
#    (phi.nc has 0.1 and 0.2), for two image targets and a cluster of
#    clusters.nc: target_phi and sample_phi at sigma 0 and 0.2 (2 draws)
#    within 2e-5 of PyTorch's on numpy's noise, phi_error within 1e-6 of
#    numpy's from the stored phi, and channel_mask as numpy finds the
#    selective channels in phi.nc (docs/analysis.md); its projection too
#    weak to move a pixel (lr 1e-9), the samples SPEC.md's schedule run in
#    PyTorch, within 1e-4 (the projection's effect: test_reconstruct.sh);
#  - the projection itself: the fixed sampler (2 steps, 3 projection
#    iterations at lr 0.01) with mask "all" (and a stop_ratio that stops
#    some projections early and not others) and with the selective mask
#    (stats.nc's), run step by step in PyTorch: the gradient of docs/conf.md's
#    loss by autograd, Adam from its closed form (pipeline/core/backend.h's
#    adam_masked), the same stored pixels within 1e-5 (4.3e-7 measured;
#    ignoring the mask, doubling the gradient, Adam without its bias
#    corrections or with the sign flipped miss by 3e-2 or more);
#  - the adaptive sampler, twice: with a projection too weak to move a
#    pixel (lr 1e-9), against SPEC.md's loop run in PyTorch (the same step
#    counts, the same samples within 1e-4); with the projection, what the
#    sampler promises: no failure, finite samples in range, steps within
#    max_steps, each sample's phi error below its starting noise's, and
#    below that of the run without the projection (semrep against itself).
set -u
semrep=$(realpath "$1")
top=$(cd "$(dirname "$0")/../.." && pwd)
. "$top/tests/lib.sh"
. "$top/job_scripts/env.sh"
conf=$top/conf/fashion-mnist.conf
common=(--set dataset.limit=32 --set threads=1 --set "phi.sigmas=[0.1,0.2]" --set phi.draws=2 --set phi.block_means=false
        --set phi.batch=32 --set "cluster.k=[4]" --set cluster.restarts=2 --set cluster.pixels=false
        --set probe.enabled=false --set reconstruct.samples=2 --set "reconstruct.analysis_sigmas=[0.0,0.2]")
adaptive=(--set "reconstruct.targets=[0,5]" --set 'reconstruct.sampler="adaptive"' --set reconstruct.h0=0.3
          --set reconstruct.beta=0.4 --set reconstruct.sigma_l=0.06 --set reconstruct.max_steps=50
          --set reconstruct.draws=1 --set reconstruct.batch=4)
projection=(--set "reconstruct.targets=[0,5]" --set reconstruct.batch=4 --set reconstruct.steps=2
            --set reconstruct.max_iter=3 --set reconstruct.lr=0.01 --set reconstruct.draws=2)
stage() { local name=$1 dir=$2; shift 2; "$semrep" stage "$name" "$conf" --set "output_dir=\"$work/$dir\"" "${common[@]}" "$@"; }

# The adaptive runs have folders of their own and need nothing else: they
# go alongside the fixed sampler's chain.
stage reconstruct weak "${adaptive[@]}" --set reconstruct.lr=1e-9 --set reconstruct.max_iter=1 >"$work/weak.log" 2>&1 &
weak=$!
stage reconstruct adaptive "${adaptive[@]}" --set reconstruct.max_iter=3 >"$work/adaptive.log" 2>&1 &
adapt=$!
# The projection with every channel needs no other file. At stop_ratio 0.75
# the loss ratios (0.57 to 0.95) stop 3 of its 8 projections after 1 update
# and leave the others, none within 4% of the threshold.
stage reconstruct projection-all "${projection[@]}" --set reconstruct.stop_ratio=0.75 >"$work/projection-all.log" 2>&1 &
proj_all=$!
for s in phi stats; do
  expect 0 "written to|wrote" -- stage "$s" fixed
done
# The selective mask from the chain's stats.nc (and the phi.nc it was made from).
mkdir "$work/projection-selective" && cp "$work/fixed/phi.nc" "$work/fixed/stats.nc" "$work/projection-selective/"
stage reconstruct projection-selective "${projection[@]}" --set 'reconstruct.mask="selective"' \
  >"$work/projection-selective.log" 2>&1 &
proj_sel=$!
expect 0 "written to|wrote" -- stage cluster fixed
expect 0 "3 target\(s\) x 2 sample\(s\), fixed sampler, 0 failed" -- stage reconstruct fixed \
  --set "reconstruct.targets=[0,5]" --set "reconstruct.clusters=[1]" --set reconstruct.cluster_k=4 \
  --set reconstruct.batch=6 --set reconstruct.steps=3 --set reconstruct.lr=1e-9 --set reconstruct.max_iter=1 \
  --set reconstruct.draws=2 \
  --set 'reconstruct.mask="selective"'
wait $weak
rc_weak=$?
wait $adapt
rc_adaptive=$?
wait $proj_all
rc_proj_all=$?
wait $proj_sel
rc_proj_sel=$?
check "the adaptive sampler ran without a projection: $(grep -h "adaptive sampler, " "$work/weak.log")" \
  '[ $rc_weak = 0 ] || { cat "$work/weak.log"; false; }'
check "the adaptive sampler ran: $(grep -h "adaptive sampler, " "$work/adaptive.log")" \
  '[ $rc_adaptive = 0 ] || { cat "$work/adaptive.log"; false; }'
check "the fixed sampler ran with a projection, mask all: $(grep -h "fixed sampler, " "$work/projection-all.log")" \
  '[ $rc_proj_all = 0 ] || { cat "$work/projection-all.log"; false; }'
check "and mask selective: $(grep -h "fixed sampler, " "$work/projection-selective.log")" \
  '[ $rc_proj_sel = 0 ] || { cat "$work/projection-selective.log"; false; }'

/usr/bin/python3 "$top/tests/stages/recon_reference.py" "$top/conf/models/fashion-mnist.nc" trajectory="$work/fixed/recon.nc" \
  trajectory="$work/weak/recon.nc" adaptive="$work/adaptive/recon.nc" projection="$work/projection-all/recon.nc" \
  projection="$work/projection-selective/recon.nc" >"$work/ref" 2>&1
rc=$?
cat "$work/ref"
check "recon.nc is PyTorch's and numpy's" '[ $rc = 0 ] && grep -q "^0 failed" "$work/ref"'
read -r _ _ w0 w2 <<<"$(grep "^RESULT weak " "$work/ref")"
read -r _ _ a0 a2 <<<"$(grep "^RESULT adaptive " "$work/ref")"
read -r _ _ _ stops runs <<<"$(grep "^RESULT projection-all stops " "$work/ref")"
check "the stop rule stopped some of the projections early, not all: ${stops:-none} of ${runs:-none}" \
  '[ "${stops:-0}" -gt 0 ] && [ "$stops" -lt "$runs" ]'
check "the projection lowers the adaptive sampler's mean phi error: $a0 < 0.8 x $w0 at sigma 0, $a2 < 0.8 x $w2 at 0.2" \
  "/usr/bin/python3 -c 'import sys; sys.exit(not ($a0 < 0.8 * $w0 and $a2 < 0.8 * $w2))'"
finish
