#!/usr/bin/env bash
# The cluster stage's pixel baseline as users run it, on 64 Fashion-MNIST
# test images with the shipped default model: without projection its
# neighbour distances are numpy's over the raw pixels; above
# cluster.pixel_dims the random projection is recorded, keeps distances
# (Johnson-Lindenstrauss), and is the same on 1 and 2 ranks (every rank
# draws the same matrix); with the neighbours of a sample above
# cluster.exact_max, the report says both. The start line lists K as given.
set -u
semrep=$(realpath "$1")
conf=$(cd "$(dirname "$0")/../../conf" && pwd)/fashion-mnist.conf
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../../job_scripts/env.sh"
base=(--set dataset.limit=64 --set "phi.sigmas=[0.1]" --set phi.draws=1 --set phi.block_means=false
      --set "cluster.k=[3]" --set cluster.restarts=1)
"$semrep" stage phi "$conf" --set "output_dir=\"$work/a\"" "${base[@]}" >"$work/log" 2>&1
cp -r "$work/a" "$work/p1" && cp -r "$work/a" "$work/p2" && cp -r "$work/a" "$work/k"
expect 0 "written to" -- "$semrep" stage cluster "$conf" --set "output_dir=\"$work/a\"" "${base[@]}"
# the start line lists the K values as given, neither contiguous nor sorted
# (it printed "K = 5..5" for these: the first and the largest)
expect 0 "^cluster: 64 images, K = 5, 3, 1 restarts, 1 sigma\(s\), and the pixels as the baseline$" -- \
  "$semrep" stage cluster "$conf" --set "output_dir=\"$work/k\"" "${base[@]}" --set "cluster.k=[5, 3]"
scale=(--set cluster.pixel_dims=256 --set cluster.exact_max=20 --set cluster.queries=10)
expect 0 "pixels: 1024 per image, randomly projected to 256 dimensions" -- \
  "$semrep" stage cluster "$conf" --set "output_dir=\"$work/p1\"" "${base[@]}" "${scale[@]}"
mpirun --oversubscribe --allow-run-as-root -np 2 "$semrep" stage cluster "$conf" --set "output_dir=\"$work/p2\"" \
  "${base[@]}" "${scale[@]}" >>"$work/log" 2>&1
"$semrep" stage report "$conf" --set "output_dir=\"$work/p1\"" "${base[@]}" "${scale[@]}" >>"$work/log" 2>&1
check "the report says the sample and the projection" \
  'grep -q "k-NN accuracy of a seeded sample of 10 images (cluster.queries), each against all 64" "$work/p1/report/index.html" &&
   grep -q "Pixels: 1024 per image, randomly projected to 256 dimensions" "$work/p1/report/index.html"'

# the pixels as numpy reads them (zero padding to 32x32 changes no distance)
measure() {
  /usr/bin/python3 - "$work" <<'PY'
import gzip, sys
import netCDF4
import numpy as np
w = sys.argv[1]
raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()
x = np.frombuffer(raw, np.uint8, offset=16)[:64 * 784].reshape(64, 784).astype(np.float64) / 255.0
true = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
a, p1, p2 = (netCDF4.Dataset("%s/%s/clusters.nc" % (w, d)) for d in ("a", "p1", "p2"))
q = np.array(a["query_index"][:])
nbr, dist = np.array(a["pixel_neighbours"][:]), np.array(a["pixel_neighbour_distance"][:])
exact = np.abs(dist - true[q[:, None], nbr]).max() / true.max()
order = np.argsort(np.where(np.eye(64) > 0, np.inf, true), axis=1)[:, :nbr.shape[1]]
q1 = np.array(p1["query_index"][:])
ratio = np.array(p1["pixel_neighbour_distance"][:]) / true[q1[:, None], np.array(p1["pixel_neighbours"][:])]
same = np.abs(np.array(p1["pixel_neighbour_distance"][:]) - np.array(p2["pixel_neighbour_distance"][:])).max()
print("%.3g %d %s %d %d %.4f %.4f %.3g" % (exact, np.array_equal(order, nbr), a.pixel_projection, p1.pixel_dims,
      p1.pixel_source_dims, ratio.mean(), ratio.std(), same))
PY
}
read -r exact order none dims source mean sd same <<<"$(measure)"
check "unprojected: pixel distances are numpy's (worst $exact of the largest), lists too ($order)" \
  "/usr/bin/python3 -c 'import sys; sys.exit(not ($exact < 1e-5 and $order == 1))'"
check "unprojected: recorded as none ($none)" '[ "$none" = none ]'
check "projected: 1024 pixels to 256 dimensions recorded ($source, $dims)" '[ "$dims" = 256 ] && [ "$source" = 1024 ]'
check "projected: neighbour distances over the true ones, mean $mean, sd $sd (near 1; scaled wrong is 16 or 1/16)" \
  "/usr/bin/python3 -c 'import sys; sys.exit(not (0.85 < $mean < 1.1 and $sd < 0.15))'"
check "projected: 1 and 2 ranks draw the same matrix (distances differ by $same)" \
  "/usr/bin/python3 -c 'import sys; sys.exit(not $same < 1e-4)'"
echo "values: $exact $order $none $dims $source $mean $sd $same"

# k-means is the same bits on 1, 2 and 3 ranks: 300 images (shards of 64
# rows: 5 blocks over 2 or 3 ranks), two restarts, every sum across ranks
# exact on its fixed-point grid (docs/analysis.md)
inv=(--set dataset.limit=300 --set "phi.sigmas=[0.1]" --set phi.draws=1 --set phi.block_means=false
     --set "cluster.k=[7,20]" --set cluster.restarts=2 --set cluster.max_iter=30 --set cluster.pixels=false)
"$semrep" stage phi "$conf" --set "output_dir=\"$work/r1\"" "${inv[@]}" >>"$work/log" 2>&1
cp -r "$work/r1" "$work/r2" && cp -r "$work/r1" "$work/r3"
for n in 1 2 3; do
  mpirun --oversubscribe --allow-run-as-root -np $n "$semrep" stage cluster "$conf" --set "output_dir=\"$work/r$n\"" \
    "${inv[@]}" >>"$work/log" 2>&1
done
same=$(/usr/bin/python3 - "$work" <<'PY'
import sys
import netCDF4
import numpy as np
w = sys.argv[1]
f = [netCDF4.Dataset("%s/r%d/clusters.nc" % (w, n)) for n in (1, 2, 3)]
names = ("inertia", "assignment", "cluster_size", "members", "jaccard_within", "jaccard_across")
differ = [v for v in names if not all(np.array_equal(np.array(f[0][v][:]), np.array(x[v][:])) for x in f[1:])]
print(int(not differ), "differ:", ",".join(differ) or "none",
      repr(np.array(f[0]["inertia"][:]).ravel().tolist()), repr(np.array(f[1]["inertia"][:]).ravel().tolist()))
PY
)
check "k-means on 1, 2 and 3 ranks: the same assignments, sizes, members, inertia and Jaccard overlaps to the bit ($same)" \
  '[ "${same%% *}" = 1 ]'
finish
