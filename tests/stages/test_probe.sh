#!/usr/bin/env bash
# The cluster stage's linear probe (docs/analysis.md) on 400 Fashion-MNIST
# test images with the shipped default model, phi at two sigmas and the
# pixels:
# - against scikit-learn's LogisticRegression on the same split (read from
#   clusters.nc), the same standardisation and the same objective (C =
#   1 / (lambda n_train)): run to a tight tolerance, the objective at our
#   weights is within 1e-5 (relative) of the objective at scikit-learn's,
#   the weights within 0.5% of the largest and the biases within 0.05, so a
#   gradient without its L2 term or its 1/n fails; at the defaults, the test
#   predictions are scikit-learn's but for at most one image in 80 (the test
#   accuracies within 0.0125);
# - the split is stratified: round(0.2 n_c) test images of each class;
# - every probe variable is the same bits on 1, 2 and 3 ranks;
# - without labels, with one class, or switched off, it is skipped with a note;
# - the report shows its tables (per space, per class) and their CSV.
set -u
semrep=$(realpath "$1")
conf=$(cd "$(dirname "$0")/../../conf" && pwd)/fashion-mnist.conf
. "$(dirname "$0")/../lib.sh"
. "$(dirname "$0")/../../job_scripts/env.sh"
base=(--set dataset.limit=400 --set "phi.sigmas=[0.0,0.1]" --set phi.draws=1 --set phi.block_means=false
      --set "cluster.k=[3]" --set cluster.restarts=1)
"$semrep" stage phi "$conf" --set "output_dir=\"$work/r1\"" "${base[@]}" >"$work/log" 2>&1
for d in r2 r3 tight off; do cp -r "$work/r1" "$work/$d"; done
expect 0 "probe: test accuracy phi 0 0\.[0-9]+, phi 25\.5 0\.[0-9]+, pixels 0\.[0-9]+ \(320 training, 80 test images" -- \
  "$semrep" stage cluster "$conf" --set "output_dir=\"$work/r1\"" "${base[@]}"
for n in 2 3; do
  mpirun --oversubscribe --allow-run-as-root -np $n "$semrep" stage cluster "$conf" --set "output_dir=\"$work/r$n\"" \
    "${base[@]}" >>"$work/log" 2>&1
done
"$semrep" stage cluster "$conf" --set "output_dir=\"$work/tight\"" "${base[@]}" --set probe.tolerance=1e-7 \
  --set probe.iterations=20000 >>"$work/log" 2>&1
expect 0 "probe: off \(probe.enabled = false\)" -- \
  "$semrep" stage cluster "$conf" --set "output_dir=\"$work/off\"" "${base[@]}" --set probe.enabled=false

same=$(/usr/bin/python3 - "$work" <<'PY'
import sys
import netCDF4
import numpy as np
w = sys.argv[1]
f = [netCDF4.Dataset("%s/r%d/clusters.nc" % (w, n)) for n in (1, 2, 3)]
names = [v for v in f[0].variables if "probe" in v]
differ = [v for v in names if not all(np.array_equal(np.array(f[0][v][:]), np.array(x[v][:]), equal_nan=True) for x in f[1:])]
print(int(len(names) == 15 and not differ), "differ:", ",".join(differ) or "none", "of", len(names))
PY
)
check "1, 2 and 3 ranks: every probe variable the same bits ($same)" '[ "${same%% *}" = 1 ]'

# scikit-learn on the split of clusters.nc; phi from phi.nc, the pixels from
# the IDX file, padded to 32 x 32 as the data set pads them
compare() {
  /usr/bin/python3 - "$1" "$2" <<'PY'
import gzip, sys
import netCDF4
import numpy as np
from sklearn.linear_model import LogisticRegression
w, tight = sys.argv[1], sys.argv[2] == "tight"
ph, cl = netCDF4.Dataset(w + "/phi.nc"), netCDF4.Dataset(w + "/clusters.nc")
y, split = np.array(ph["label"][:]), np.array(cl["probe_split"][:]).astype(int)
tr, te, lam = split == 0, split == 1, float(cl.probe_lambda)
n, N = tr.sum(), len(y)
counts = [(int((y == c).sum()), int(((y == c) & te).sum())) for c in range(10)]
stratified = all(t == int(np.floor(0.2 * m + 0.5)) for m, t in counts) and n == cl.probe_train_images \
    and te.sum() == cl.probe_test_images and (split >= 0).all()

def objective(z, W, b):
    l = z[tr] @ W + b
    l -= l.max(1, keepdims=True)
    return (np.log(np.exp(l).sum(1)) - l[np.arange(n), y[tr]]).mean() + 0.5 * lam * (W ** 2).sum()

def measure(x, prefix, s):
    x = x.astype(np.float64)
    sd = x[tr].std(0)
    z = (x - x[tr].mean(0)) / np.where(sd > 0, sd, 1.0)
    sk = LogisticRegression(C=1 / (lam * n), tol=1e-10, max_iter=100000).fit(z[tr], y[tr])
    W, b = sk.coef_.T, sk.intercept_ - sk.intercept_.mean()
    get = lambda v: np.array(cl[prefix + v][:] if s is None else cl[prefix + v][s])
    Wm, bm = get("probe_weights"), get("probe_bias")
    mine, theirs = np.argmax(z @ Wm + bm, 1), sk.predict(z)
    acc = (mine[te] == y[te]).mean()
    fm, fs = objective(z, Wm, bm), objective(z, W, b)
    return [abs(fm - fs) / fs, np.abs(Wm - W).max() / np.abs(W).max(), np.abs(bm - b).max(),
            int((mine[te] != theirs[te]).sum()), abs(acc - get("probe_test_accuracy")), abs(acc - sk.score(z[te], y[te]))]

rows = [measure(np.array(ph["phi"][s]), "", s) for s in range(len(cl["sigma"]))]
raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()
img = np.frombuffer(raw, np.uint8, offset=16)[:N * 784].reshape(N, 28, 28).astype(np.float32) / np.float32(255)
pix = np.zeros((N, 32, 32), np.float32)
pix[:, 2:30, 2:30] = img
rows.append(measure(pix.reshape(N, 1024), "pixel_", None))
r = np.array(rows)
if tight:
    ok = (r[:, 0] < 1e-5).all() and (r[:, 1] < 5e-3).all() and (r[:, 2] < 0.05).all()
else:
    ok = (r[:, 3] <= 1).all() and (r[:, 4] < 1e-12).all() and stratified
print(int(ok), "objective %.2g, weights %.2g, biases %.2g, test predictions differing %d, accuracy %.2g" % (
    r[:, 0].max(), r[:, 1].max(), r[:, 2].max(), r[:, 3].max(), r[:, 5].max()), "stratified", int(stratified))
PY
}
tight=$(compare "$work/tight" tight)
check "tight: the objective, weights and biases of scikit-learn's optimum ($tight)" '[ "${tight%% *}" = 1 ]'
defaults=$(compare "$work/r1" defaults)
check "defaults: a stratified split, and scikit-learn's test predictions ($defaults)" '[ "${defaults%% *}" = 1 ]'
echo "values: tight $tight; defaults $defaults"

# the report's table, and its CSV
"$semrep" stage report "$conf" --set "output_dir=\"$work/r1\"" "${base[@]}" >>"$work/log" 2>&1
check "the report has the probe's tables and CSV, per space and per class" \
  'grep -q "<caption>linear probe: test accuracy (logistic regression trained on 320 images, tested on 80 others" \
     "$work/r1/report/index.html" && [ "$(wc -l <"$work/r1/report/tables/probe.csv")" = 4 ] &&
   grep -q "^pixels,0\.[0-9]*,[01]\.[0-9]*$" "$work/r1/report/tables/probe.csv" &&
   [ "$(wc -l <"$work/r1/report/tables/probe_classes.csv")" = 11 ] &&
   grep -Eq "^9,Ankle boot(,[01]\.[0-9]{3}){3}$" "$work/r1/report/tables/probe_classes.csv"'
check "without the probe, no table and no probe variables" \
  '! ncdump -h "$work/off/clusters.nc" | grep -q "probe_test_accuracy" &&
   ncdump -h "$work/off/clusters.nc" | grep -q "probe_note = \"off (probe.enabled = false)\""'

# no labels, and one class: skipped with a note, not an error
small=(--set dataset.limit=40 --set "phi.sigmas=[0.1]" --set phi.draws=1 --set phi.block_means=false
       --set "cluster.k=[2]" --set cluster.restarts=1 --set cluster.pixels=false)
"$semrep" stage phi "$conf" --set "output_dir=\"$work/nolabel\"" "${small[@]}" --set 'dataset.labels=""' \
  --set 'dataset.classes=""' >>"$work/log" 2>&1
expect 0 "probe: skipped: the images have no labels" -- \
  "$semrep" stage cluster "$conf" --set "output_dir=\"$work/nolabel\"" "${small[@]}" --set 'dataset.labels=""' \
  --set 'dataset.classes=""'
/usr/bin/python3 - "$work/index" <<'PY'
import gzip, sys
import numpy as np
y = np.frombuffer(gzip.open("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz").read(), np.uint8, offset=8)
open(sys.argv[1], "w").write("".join("%d\n" % i for i in np.flatnonzero(y == 9)[:40]))
PY
"$semrep" stage phi "$conf" --set "output_dir=\"$work/one\"" "${small[@]}" --set "dataset.index_file=\"$work/index\"" \
  >>"$work/log" 2>&1
expect 0 "probe: skipped: the labelled images are of 1 class" -- \
  "$semrep" stage cluster "$conf" --set "output_dir=\"$work/one\"" "${small[@]}" --set "dataset.index_file=\"$work/index\""
"$semrep" stage report "$conf" --set "output_dir=\"$work/one\"" "${small[@]}" --set "dataset.index_file=\"$work/index\"" \
  >>"$work/log" 2>&1
check "the report says why there is no probe" \
  'grep -q "<p>Linear probe: skipped: the labelled images are of 1 class</p>" "$work/one/report/index.html"'
finish
