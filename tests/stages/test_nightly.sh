#!/usr/bin/env bash
# The nightly run over a growing folder, as users run it: `semrep run` on a
# labelled PNG folder of 40 images, then again after 24 more arrive (their
# names sort between the others). The second run computes phi for the 24
# only, redoes stats, clusters and the report, and the report says what
# changed (each ARI against scikit-learn's from the two nights' records); a
# night with nothing new and one with images removed say so.
# Then headless Chromium opens the report: every picture must load (the
# maps of phi among them) and every section be there; its screenshot is kept in SHOTS.
#   test_nightly.sh SEMREP SHOTS
set -u
semrep=$(realpath "$1")
shots=$2
conf=$(cd "$(dirname "$0")/../../conf" && pwd)/tiny-test.conf
. "$(dirname "$0")/../lib.sh"
pngs() { /usr/bin/python3 "$(dirname "$0")/../fixtures/write_pngs.py" "$work/png" --classes "$@"; }
run() {
  mpirun --oversubscribe --allow-run-as-root -np 2 "$semrep" run "$conf" --set "output_dir=\"$work/night\"" \
    --set 'dataset.kind="png"' --set "dataset.path=\"$work/png\"" --set 'dataset.labels=""' --set dataset.limit=0 \
    --set 'reconstruct.targets=[0, 39]' >>"$work/log" 2>&1
}

pngs $(seq 0 2 78)
run
check "the first night runs every stage" '[ -f "$work/night/report/index.html" ] && [ -f "$work/night/recon.nc" ]'
check "the first report has nothing to compare with" 'grep -q "No earlier report in this folder" "$work/night/report/index.html"'
cp "$work/night/report-images.tsv" "$work/night1-images.tsv"

pngs $(seq 1 2 47)
run
page=$work/night/report/index.html
check "the second night computes phi for the 24 new images only" \
  'grep -q "holds 40 of these 64 images (same model and settings); computing the other 24" "$work/log"'
check "the report counts them" 'grep -q "<b>24 added</b>, <b>0 removed</b>, 40 in both" "$page"'
check "phi was computed for 24 and copied for 40" 'grep -q "phi was computed for 24 images and copied for 40" "$page"'
rows=$(($(wc -l <"$work/night/report-images.tsv") - 1))
check "the report's record, beside it, lists the 64 images: $rows" '[ "$rows" = 64 ] && [ ! -e "$work/night/report/tables/images.tsv" ]'
# Each ARI of the table against scikit-learn's, from the two nights'
# records (report-images.tsv: each image's cluster at each sigma and K),
# matched by image name; every clustering is compared.
aris=$(/usr/bin/python3 - "$work/night1-images.tsv" "$work/night/report-images.tsv" "$work/night/report/tables/changes.csv" <<'PY'
import csv, sys
from sklearn.metrics import adjusted_rand_score
last, now = ([r for r in csv.DictReader(open(p), delimiter="\t")] for p in sys.argv[1:3])
table = list(csv.reader(open(sys.argv[3])))[1:]
columns = [c for c in csv.DictReader(open(sys.argv[2]), delimiter="\t").fieldnames if c.startswith("sigma ")]
old = {r["source"]: r for r in last}
both = [r for r in now if r["source"] in old]
worst = 0.0
for name, ari in table:
    want = adjusted_rand_score([old[r["source"]][name] for r in both], [r[name] for r in both])
    worst = max(worst, abs(float(ari) - want))
print(len(both), len(table), len(columns), f"{worst:.4f}", " ".join(a for _, a in table))
PY
)
read -r n_both n_rows n_columns ari_worst ari_values <<<"$aris"
check "the clusters of the 40 are compared with last night's at every sigma and K ($n_rows of $n_columns): ARI $ari_values" \
  '[ "$n_both" = 40 ] && [ "$n_rows" -gt 0 ] && [ "$n_rows" = "$n_columns" ]'
check "each ARI as scikit-learn finds it from the two nights' records (to the 3 decimals shown): worst difference $ari_worst" \
  "/usr/bin/python3 -c 'import sys; sys.exit(not float(\"${ari_worst:-1}\") <= 0.00051)'"
# The 40 kept their phi rows (copied), so their clusters persist: measured
# 0.800, 0.601, 0.508 and 0.488; rows matched by position instead of name
# give about 0.
check "the kept images' clusters persist: every ARI above 0.35" \
  "/usr/bin/python3 -c 'import sys; v = \"$ari_values\".split(); sys.exit(not (v and min(map(float, v)) > 0.35))'"

# A night with nothing new, then one with 8 images gone.
run
check "a night with nothing new makes no new report" 'grep -q "report: up to date (same conf and inputs)" "$work/log"'
"$semrep" stage report "$conf" --set "output_dir=\"$work/night\"" --set 'dataset.kind="png"' \
  --set "dataset.path=\"$work/png\"" --set 'dataset.labels=""' --set dataset.limit=0 >>"$work/log" 2>&1
check "a report made again by hand: phi.nc unchanged" \
  'grep -q "<b>0 added</b>, <b>0 removed</b>, 64 in both. phi.nc is unchanged since the last report" "$page"'
rm "$work"/png/*/img-00[0-7].png
run
check "a night with 8 images removed: none computed, 56 copied" \
  'grep -q "<b>0 added</b>, <b>8 removed</b>, 56 in both. phi was computed for 0 images and copied for 56" "$page"'

# The page in a browser: a copy with a script that, once everything has
# loaded, lists the pictures that did not and the sections.
browser=$(command -v chromium || true)
check "Debian's chromium is installed (tests/run.sh installs it)" '[ -n "$browser" ]'
if [ -n "$browser" ]; then
  flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
         --disable-component-update --disable-sync "--user-data-dir=$work/chromium")
  probe=$work/night/report/browser-check.html
  cp "$(dirname "$0")/report_probe.js" "$work/night/report/browser-check.js"
  sed 's|</body>|<script src="browser-check.js"></script></body>|' "$page" >"$probe"
  timeout 120 "$browser" "${flags[@]}" --virtual-time-budget=20000 --dump-dom "file://$probe" >"$work/dom.html" 2>>"$work/log"
  result=$(sed -n '/<pre id="semrep-check">/,/<\/pre>/p' "$work/dom.html")
  images=$(sed -n 's/.*IMAGES \([0-9]*\) BROKEN \([0-9]*\).*/\1 \2/p' <<<"$result")
  read -r n_images n_broken <<<"$images"
  check "the browser loaded every picture of the report: ${n_images:-?} pictures, ${n_broken:-?} broken" \
    '[ "${n_images:-0}" -gt 20 ] && [ "$n_broken" = 0 ]'
  maps=$(sed -n 's/^MAPS \([0-9]*\)$/\1/p' <<<"$result")
  check "the browser loaded the maps of phi, by cluster and by label at both sigmas: ${maps:-?}" '[ "${maps:-0}" = 4 ]'
  findings=$(grep -c '^FINDING \(shown\|not shown\|not measured\): ' <<<"$result")
  check "the browser shows the paper's four findings, each with a verdict: ${findings:-0}" '[ "$findings" = 4 ]'
  check "the findings name their numbers" \
    'grep -q "^FINDING .*: the participation ratio rises through the encoder .*(encoder.0 [0-9.]*, encoder.1 [0-9.]*, mid [0-9.]*; at sigma" <<<"$result" &&
     grep -q "^FINDING .*active sets overlap more within classes than across (mean Jaccard [0-9.]* within, [0-9.]* across" <<<"$result"'
  for section in "The denoiser" "What changed since the last run" "What phi groups together" "findings, checked" \
                 "phi at sigma 0 of 255" "phi at sigma 51 of 255" "Samples of p(x | phi)"; do
    check "the browser shows the section \"$section\"" 'grep -qF "$section" <<<"$result"'
  done
  probe_rows=$(sed -n 's/^PROBE //p' <<<"$result" | sed 's|</pre>.*||')
  check "the browser shows the linear probe's table, phi at both sigmas beside the pixels: $probe_rows" \
    'grep -Eq "^space,test accuracy,training accuracy(;phi, sigma [0-9.]+,[01]\.[0-9]{3},[01]\.[0-9]{3}){2};pixels,[01]\.[0-9]{3},[01]\.[0-9]{3}$" \
       <<<"$probe_rows"'
  rm -f "$probe" "$work/night/report/browser-check.js"
  mkdir -p "$shots"
  timeout 120 "$browser" "${flags[@]}" --window-size=1100,2600 --hide-scrollbars \
    "--screenshot=$shots/nightly-report.png" "file://$page" >>"$work/log" 2>&1
  check "the screenshot is kept: $shots/nightly-report.png" '[ -s "$shots/nightly-report.png" ]'
fi
[ "$failed" = 0 ] || tail -20 "$work/log"
finish
