#!/usr/bin/env bash
# The report against hostile names and damaged files (issue 15): a PNG
# folder whose class folders and files are named to break out of HTML
# attributes and CSV fields; stats.nc, recon.nc and clusters.nc attributes
# and values edited to inject gnuplot commands or HTML, or to overflow the
# report's tables; a damaged table of the previous report. The run has 15
# sigmas x 5 K values, past the 64 clusterings the report once held.
#   test_report.sh SEMREP
set -u
semrep=$(realpath "$1")
conf=$(cd "$(dirname "$0")/../../conf" && pwd)/tiny-test.conf
. "$(dirname "$0")/../lib.sh"
out=$work/out-dir
page=$out/report/index.html
hostile_class='x" onmouseover="alert(1)" y='"'z'"' <b>&amp;, "q"'
hostile_file='img-'"'"'><img src=x onerror=alert(2)>.png'
args=(--set "output_dir=\"$out\"" --set 'dataset.kind="png"' --set "dataset.path=\"$work/png\""
      --set 'dataset.labels=""' --set dataset.limit=0 --set 'reconstruct.targets=[0]' --set phi.draws=1
      --set 'phi.sigmas=[0.0,0.01,0.02,0.03,0.04,0.05,0.06,0.07,0.08,0.09,0.1,0.11,0.12,0.13,0.14]'
      --set 'cluster.k=[2,3,4,5,6]')
report() { "$semrep" stage report "$conf" "${args[@]}" >"$work/log" 2>&1; }
nc_edit() { /usr/bin/python3 -c "import netCDF4, sys; f = netCDF4.Dataset(sys.argv[1], 'a'); $2; f.close()" "$1"; }

# 40 images in class folders, two of them renamed to hostile names, and a hostile file.
/usr/bin/python3 "$(dirname "$0")/../fixtures/write_pngs.py" "$work/png" --classes $(seq 0 39)
mv "$work/png/0" "$work/png/$hostile_class"
mv "$work/png/1/$(ls "$work/png/1" | head -1)" "$work/png/1/$hostile_file"
mpirun --oversubscribe --allow-run-as-root -np 2 "$semrep" run "$conf" "${args[@]}" >"$work/log" 2>&1
check "a run over hostile names with 15 sigmas x 5 K values makes the report" '[ -f "$page" ]' || cat "$work/log"
held=$(/usr/bin/python3 -c "
import netCDF4, sys
c = netCDF4.Dataset(sys.argv[1])
want = list(zip(c['heldout_step'][:], c['heldout_loss'][:]))
rows = [[float(v) for v in line.split()] for line in open(sys.argv[2])]
print(len(want), len(rows) == len(want) > 0 and all(abs(a - s) <= 1e-5 * abs(s) and abs(b - l) <= 1e-5 * abs(l)
                                                   for (a, b), (s, l) in zip(rows, want)))" \
  "$out/train-curve.nc" "$out/report/plots/heldout.dat" 2>&1)
check "the training curve's plot has the curve's held-out losses (evaluations, match): $held" \
  '[ "${held#* }" = True ] && grep -qF "title '"'"'held-out loss'"'"'" "$out/report/plots/curve.gp"'

# The page parsed as a browser would: no event handler and no script came
# from the data, and the hostile names came through as text, exactly.
/usr/bin/python3 - "$page" "$hostile_class" "$hostile_file" >"$work/html-check" 2>&1 <<'PY'
import html.parser, sys
page, cls, name = sys.argv[1:]
class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.handlers, self.scripts, self.titles, self.text = [], 0, [], []
    def handle_starttag(self, tag, attrs):
        self.scripts += tag == "script"
        self.handlers += [k for k, _ in attrs if k.startswith("on")]
        self.titles += [v for k, v in attrs if k == "title"]
    def handle_data(self, data):
        self.text.append(data)
p = Page()
p.feed(open(page, encoding="utf-8").read())
text = "".join(p.text)
print("handlers", p.handlers, "scripts", p.scripts)
print("class in a title", any(cls + "/" in t for t in p.titles), "file in a title", any(name in t for t in p.titles))
print("class in the text", cls in text)
PY
check "no event handler and no script element came from the data" 'grep -qx "handlers \[\] scripts 0" "$work/html-check"'
check "the hostile class and file names are in the thumbnails' titles, exactly" \
  'grep -qx "class in a title True file in a title True" "$work/html-check"'
check "the hostile class name is in the page's text, exactly" 'grep -qx "class in the text True" "$work/html-check"' ||
  cat "$work/html-check"
# Every CSV read back with Python's csv module: rectangular, and the class name whole.
csv_check=$(/usr/bin/python3 - "$out/report/tables" "$hostile_class" <<'PY'
import csv, glob, sys
tables, cls = sys.argv[1:]
ragged = [f for f in glob.glob(tables + "/*.csv")
          if len({len(row) for row in csv.reader(open(f, newline="", encoding="utf-8"))}) != 1]
classes = [row[1] for row in csv.reader(open(tables + "/classes.csv", newline="", encoding="utf-8"))]
print("ragged", ragged, "class", cls in classes)
PY
)
check "every CSV table has one width and classes.csv holds the class name: $csv_check" \
  '[ "$csv_check" = "ragged [] class True" ]'

# One report over four crafted inputs: a stats.nc block name that would end
# its gnuplot title and run a command; recon.nc's sampler and phi.nc's
# images_computed that are markup; and the widest table a conf can make, 64 sigmas x 16 K values (a header
# of over 8 KiB), as the last report's, to be read back, not taken for damaged.
nc_edit "$out/stats.nc" "f['pr_hist'].blocks = \"enc1' ; system 'touch $work/MARKER' ; print ',\" + 'mid\"; system(\"touch $work/MARKER2\") #,dec\nsystem \"touch $work/MARKER3\"'"
nc_edit "$out/recon.nc" "f.sampler = '<script>alert(3)</script>'"
nc_edit "$out/phi.nc" "f.images_computed = '<img src=x onerror=alert(4)>'"
sed -i '2s/[^\t]*$/another-phi/' "$out/report/tables/run.tsv" # so that the page says what phi computed
images=$out/report-images.tsv
/usr/bin/python3 - "$images" <<'PY'
import sys
path = sys.argv[1]
rows = [line.split("\t")[:3] for line in open(path, encoding="utf-8").read().splitlines()[1:]]
columns = [f"sigma {s * 2.55:.4g} K {k}" for s in range(64) for k in range(100000, 100016)]
with open(path, "w", encoding="utf-8") as f:
    f.write("\t".join(["position", "source", "label"] + columns) + "\n")
    for row in rows:
        f.write("\t".join(row + [str(i % 99991) for i in range(len(columns))]) + "\n")
PY
report
check "a report over a hostile block name and sampler and a 1024-clustering last report is made" '[ "$(tail -1 "$work/log")" = "report: $page" ]' ||
  cat "$work/log"
check "gnuplot ran no command from stats.nc" '[ ! -e "$work/MARKER" ] && [ ! -e "$work/MARKER2" ] && [ ! -e "$work/MARKER3" ] && [ -z "$(find "$out" -name "MARKER*")" ]'
check "the block names are the plot's titles, quoted" 'grep -qF "title '"'"'enc1'"''"' ; system" "$out/report/plots/pr_0.gp"'
check "recon.nc's sampler is text in the page" \
  '! grep -q "<script>" "$page" && grep -qF "the &lt;script&gt;alert(3)&lt;/script&gt; sampler" "$page"'
check "phi.nc's images_computed is text in the page" \
  'grep -qF "phi was computed for &lt;img src=x onerror=alert(4)&gt; images" "$page"'
check "a last report with 1024 clusterings is read back, not taken for damaged" \
  '[ "$(tail -1 "$work/log")" = "report: $page" ] && grep -q "<b>0 added</b>, <b>0 removed</b>, 40 in both" "$page" && ! grep -q "damaged" "$page"'

# A damaged table of the last report is ignored, with a note, and replaced.
sed -i '2s/\t[0-9]*$/\t2147483647/' "$images"
report
check "a huge cluster number in the last report's images.tsv: a note, no crash" \
  '[ "$(tail -1 "$work/log")" = "report: $page" ] && grep -q "The last report.s image record (report-images.tsv) is damaged (line 2" "$page"'
report
check "the next report compares with the one that replaced it: all 75 clusterings" \
  '[ "$(wc -l <"$out/report/tables/changes.csv")" = 76 ] && ! grep -q "damaged" "$page"'
# A report from before the record moved beside the report folder kept it in
# report/tables/images.tsv: the next report compares with that one.
mv "$images" "$out/report/tables/images.tsv"
report
check "a record in an older report's tables/images.tsv is compared with: all 75 clusterings, 40 images in both" \
  '[ "$(wc -l <"$out/report/tables/changes.csv")" = 76 ] && grep -q "<b>0 added</b>, <b>0 removed</b>, 40 in both" "$page" &&
   [ -s "$images" ]'

# clusters.nc with cluster numbers it cannot hold: refused, naming the file.
cp "$out/clusters.nc" "$work/clusters.nc"
nc_edit "$out/clusters.nc" "f['assignment'][0, 0, 0] = 2000000000"
expect 1 "^semrep: error: $out/clusters.nc: assignment holds cluster 2000000000 where K is 2; make it again" -- \
  "$semrep" stage report "$conf" "${args[@]}"
cp "$work/clusters.nc" "$out/clusters.nc"
nc_edit "$out/clusters.nc" "f['k'][0] = 2000000000"
expect 1 "^semrep: error: $out/clusters.nc: k holds 2000000000, not a number of clusters from 1 to 6; make it again" -- \
  "$semrep" stage report "$conf" "${args[@]}"
# A variable larger than its dimensions say, and recon.nc without the errors its rows show.
cp "$work/clusters.nc" "$out/clusters.nc"
nc_edit "$out/clusters.nc" "f.renameVariable('nmi', 'nmi_was'); f.createVariable('nmi', 'f8', ('sigma', 'k', 'cluster'))[:] = 0"
expect 1 "^semrep: error: $out/clusters.nc: nmi holds 450 values where its dimensions say 75; make the file again" -- \
  "$semrep" stage report "$conf" "${args[@]}"
cp "$work/clusters.nc" "$out/clusters.nc"
nc_edit "$out/recon.nc" "f.renameVariable('phi_error', 'phi_error_was')"
expect 1 "^semrep: error: $out/recon.nc lacks the variable phi_error; .*make it again" -- \
  "$semrep" stage report "$conf" "${args[@]}"
finish
