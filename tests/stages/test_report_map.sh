#!/usr/bin/env bash
# The report's 2-D map of phi (issue 14): for each sigma, a PCA of a seeded
# sample of report.map_sample images. numpy recomputes the PCA of the rows
# the map data file names, from phi.nc, and must find the same coordinates
# (up to each component's sign) and the same shares of the variance; the
# sample has min(N, map_sample) distinct positions, the same on every run
# with the seed and another with another seed; the pictures are in the page
# and class names reach gnuplot only as quoted titles.
#   test_report_map.sh SEMREP
set -u
semrep=$(realpath "$1")
conf=$(cd "$(dirname "$0")/../../conf" && pwd)/tiny-test.conf
. "$(dirname "$0")/../lib.sh"
out=$work/run
plots=$out/report/plots
args=(--set "output_dir=\"$out\"" --set report.map_sample=20)

mpirun --oversubscribe --allow-run-as-root -np 2 "$semrep" run "$conf" "${args[@]}" >"$work/log" 2>&1
check "a run with report.map_sample = 20 makes the report" '[ -f "$out/report/index.html" ]' || tail -20 "$work/log"

# The map's data against numpy: the PCA of the named rows, centred.
pca_check() { # FILE... -> one line per file
  /usr/bin/python3 - "$out/phi.nc" "$@" <<'PY'
import sys, netCDF4, numpy as np
phi = netCDF4.Dataset(sys.argv[1])
sigmas = list(phi["sigma"][:])
for name in sys.argv[2:]:
    head = open(name).readline().split()
    m, n, sigma, ex = int(head[2]), int(head[4]), float(head[7].rstrip(",")), [float(v) for v in head[9:11]]
    d = np.loadtxt(name, ndmin=2)
    pos = d[:, 0].astype(int)
    s = min(range(len(sigmas)), key=lambda i: abs(sigmas[i] - sigma))
    x = np.asarray(phi["phi"][s, pos, :], dtype=np.float64)
    x -= x.mean(axis=0)
    w, v = np.linalg.eigh(np.cov(x, rowvar=False))
    ref = x @ v[:, ::-1][:, :2]
    spread = np.abs(ref).max()
    err = max(min(np.abs(d[:, 1 + p] - ref[:, p]).max(), np.abs(d[:, 1 + p] + ref[:, p]).max()) for p in range(2))
    share = w[::-1][:2] / w.clip(min=0).sum()
    ok = (len(pos) == m == min(n, 20) and len(set(pos)) == m and list(pos) == sorted(pos) and pos.min() >= 0
          and pos.max() < n == phi.dimensions["image"].size and err <= 1e-4 * spread
          and np.allclose(ex, share, rtol=1e-5, atol=1e-9))
    print("ok" if ok else "BAD", name.split("/")[-1], "rows", m, "of", n, "distinct", len(set(pos)),
          "error/spread %.2e" % (err / spread), "explained", ex, "numpy", list(share))
PY
}
result=$(pca_check "$plots"/map_0.dat "$plots"/map_1.dat 2>&1)
check "each sigma's map equals numpy's PCA of its 20 distinct sampled rows of phi.nc: $result" \
  '[ "$(grep -c "^ok " <<<"$result")" = 2 ]'
check "the two sigmas' maps show the same images" \
  'diff <(grep -v "^#" "$plots/map_0.dat" | cut -d" " -f1) <(grep -v "^#" "$plots/map_1.dat" | cut -d" " -f1) >/dev/null'
labels=$(/usr/bin/python3 -c "
import sys, netCDF4, numpy as np
f = netCDF4.Dataset('$out/phi.nc'); lab = np.asarray(f['label'][:])
d = np.loadtxt('$plots/map_0.dat', ndmin=2).astype(int)
c = netCDF4.Dataset('$out/clusters.nc'); k = list(c['k'][:]); q = k.index(min(k)); a = np.asarray(c['assignment'][0, q, :])
print((d[:, 4] == lab[d[:, 0]]).all() and (d[:, 3] == a[d[:, 0]]).all())" 2>&1)
check "the map's labels and clusters (smallest K) are those of phi.nc and clusters.nc: $labels" '[ "$labels" = True ]'
page=$out/report/index.html
for png in map_0_clusters map_0_labels map_1_clusters map_1_labels; do
  check "the page shows $png.png" '[ -s "$plots/$png.png" ] && grep -q "src=\"plots/$png.png\"" "$page"'
done
check "the caption gives the sample and the variance explained" \
  'grep -q "a sample of 20 of the 64 images, drawn by the seed, coloured by cluster (K = 4); they explain [0-9.]*% and [0-9.]*% of the variance" "$page"'

# The sample: the same for the seed, another for another seed, all images when fewer than map_sample.
cp "$plots/map_0.dat" "$work/first.dat"
"$semrep" stage report "$conf" "${args[@]}" >>"$work/log" 2>&1
check "the report made again samples the same images" 'cmp -s "$work/first.dat" "$plots/map_0.dat"'
"$semrep" stage report "$conf" "${args[@]}" --set seed=2 >>"$work/log" 2>&1
check "another seed samples other images" \
  '! diff <(cut -d" " -f1 "$work/first.dat") <(cut -d" " -f1 "$plots/map_0.dat") >/dev/null'
"$semrep" stage report "$conf" "${args[@]}" --set report.map_sample=1000 >>"$work/log" 2>&1
rows=$(grep -vc "^#" "$plots/map_0.dat")
check "with map_sample above N the map holds all 64 images: $rows" '[ "$rows" = 64 ]'
check "its caption says all of them" 'grep -q "all 64 images, coloured by cluster" "$page"'

# Without clusters.nc: the map by label only.
rm "$out/clusters.nc"
"$semrep" stage report "$conf" "${args[@]}" >>"$work/log" 2>&1
check "without clusters.nc the map is drawn by label only" \
  '[ -s "$plots/map_0_labels.png" ] && ! [ -e "$plots/map_0_clusters.png" ] && ! grep -q "map_0_clusters" "$page"'
check "and its data file says no cluster" '[ -z "$(grep -v "^#" "$plots/map_0.dat" | cut -d" " -f4 | grep -vx -- -1)" ]'

# A class name made to end its gnuplot title and run a command is only a title
# in the map's key (10 classes: each its own series, titled by its name).
/usr/bin/python3 "$(dirname "$0")/../fixtures/write_pngs.py" "$work/png" --classes $(seq 0 39)
mv "$work/png/0" "$work/png/a' ; system 'touch MARKER' ; print '"
mpirun --oversubscribe --allow-run-as-root -np 2 "$semrep" run "$conf" --set "output_dir=\"$work/png-run\"" \
  --set 'dataset.kind="png"' --set "dataset.path=\"$work/png\"" --set 'dataset.labels=""' --set dataset.limit=0 \
  --set 'reconstruct.targets=[0]' >>"$work/log" 2>&1
check "a hostile class name is drawn as the map's key, not run by gnuplot" \
  '[ -s "$work/png-run/report/plots/map_0_labels.png" ] && grep -q "touch MARKER" "$work/png-run/report/plots/map_0_labels.gp" &&
   [ -z "$(find "$work" -name MARKER)" ]'

expect 1 "report.map_sample = 2 is out of range \\[3, 100000\\]" -- "$semrep" stage report "$conf" "${args[@]}" --set report.map_sample=2
finish
