#!/usr/bin/env bash
# An output folder is semrep's alone (docs/usage.md): a run writes and deletes
# only the files it owns, listed in OUTPUT/.semrep-owned. Files that semrep
# did not write survive every run (a thesis in report/, a picture in
# reconstruct/), a same-named output is refused by name and left as it was, a
# foreign folder is refused unless --adopt, an older folder without a record
# keeps working, an output_dir inside the PNG folder is refused, and
# `semrep info` writes nothing.
#   test_folder.sh SEMREP
set -u
semrep=$(realpath "$1")
conf=$(cd "$(dirname "$0")/../../conf" && pwd)/tiny-test.conf
. "$(dirname "$0")/../lib.sh"
run() { local dir=$1; shift; "$semrep" run "$conf" --set "output_dir=\"$dir\"" "$@"; }
report() { "$semrep" stage report "$conf" --set "output_dir=\"$1\""; }
# every file under a folder with its checksum: "unchanged" means byte for byte
listing() { (cd "$1" && find . -type f -exec sha1sum {} + | sort); }
owns() { grep -qxF "$2" "$1/.semrep-owned"; }

# A new folder: the record lists what the run wrote.
out=$work/night
expect 0 "report: .*/night/report/index.html" -- run "$out"
check "the record lists stats.nc, a target picture, a skip record and the report's page" \
  'owns "$out" stats.nc && owns "$out" reconstruct/target-001.png && owns "$out" .semrep-done-stats &&
   owns "$out" report/index.html'

# The report replaces its own files only: a thesis beside it stays, a file
# of an older report (owned, not in the new one) goes.
echo "my thesis" >"$out/report/thesis.tex"
echo old >"$out/report/plots/gone.png"
echo report/plots/gone.png >>"$out/.semrep-owned"
expect 0 "report: .*/night/report/index.html" -- report "$out"
check "report/thesis.tex survives a new report" '[ "$(cat "$out/report/thesis.tex")" = "my thesis" ]'
check "report/thesis.tex is not semrep's" '! owns "$out" report/thesis.tex'
check "the older report's own file is removed and unregistered" \
  '[ ! -e "$out/report/plots/gone.png" ] && ! owns "$out" report/plots/gone.png'
check "the new report is complete" '[ -s "$out/report/index.html" ] && [ -s "$out/report/tables/run.tsv" ]'

# Fewer targets (recon.nc of other targets is moved away first, as the
# reconstruct stage asks): semrep's stale target picture goes, one it did not write stays.
echo "not semrep's" >"$out/reconstruct/target-002.png"
rm "$out/recon.nc"
expect 0 "reconstruct: 1 target\(s\)" -- run "$out" --set 'reconstruct.targets=[0]'
check "semrep's target-001.png past the targets is removed" \
  '[ ! -e "$out/reconstruct/target-001.png" ] && ! owns "$out" reconstruct/target-001.png'
check "target-002.png, which semrep did not write, survives" \
  '[ "$(cat "$out/reconstruct/target-002.png")" = "not semrep'"'"'s" ]'

# A folder that is not semrep's is refused and left as it was ...
foreign=$work/foreign
mkdir -p "$foreign/report"
echo notes >"$foreign/notes.txt"
echo "my thesis" >"$foreign/report/thesis.tex"
before=$(listing "$foreign")
expect 1 "the output folder .*/foreign holds files semrep did not write \((notes.txt|report/thesis.tex), ...\).*--adopt" \
  -- run "$foreign"
check "the refused folder is unchanged" '[ "$(listing "$foreign")" = "$before" ] && [ -z "$(ls -A "$foreign" | grep semrep)" ]'
# ... and shared with --adopt, without losing or taking its files.
expect 0 "report: .*/foreign/report/index.html" -- run "$foreign" --adopt
check "adopted: notes.txt and report/thesis.tex are kept" \
  '[ "$(cat "$foreign/notes.txt")" = notes ] && [ "$(cat "$foreign/report/thesis.tex")" = "my thesis" ]'
check "adopted: neither is in the record" '! owns "$foreign" notes.txt && ! owns "$foreign" report/thesis.tex'
expect 2 "unknown option --adopt" -- "$semrep" bench --adopt

# An output of the same name that another tool wrote is refused by name.
shared=$work/shared
mkdir -p "$shared"
printf 'stats by another tool\n' >"$shared/stats.nc"
cp "$shared/stats.nc" "$work/stats.orig"
expect 1 "error: .*/shared/stats.nc is there and semrep did not write it.*move it away or use another output_dir" \
  -- run "$shared" --adopt
check "the foreign stats.nc is byte-identical" 'cmp -s "$shared/stats.nc" "$work/stats.orig"'
check "the run stopped there: no clusters.nc, no report" '[ ! -e "$shared/clusters.nc" ] && [ ! -e "$shared/report" ]'

# A folder of an older semrep (outputs, skip records, no ownership record)
# keeps working: semrep's own files are adopted, the others are not.
old=$work/old
expect 0 "report: " -- run "$old"
rm "$old/.semrep-owned" "$old/.semrep-owned.lock"
echo "my thesis" >"$old/report/thesis.tex"
echo notes >"$old/notes.txt"
expect 0 "stats: up to date \(same conf and inputs\)" -- run "$old"
check "the older folder's outputs are adopted" \
  'owns "$old" stats.nc && owns "$old" phi.nc && owns "$old" .semrep-done-report && owns "$old" report/index.html &&
   owns "$old" report/plots/channels_0.png && owns "$old" reconstruct/target-001.png'
check "its other files are not" '! owns "$old" report/thesis.tex && ! owns "$old" notes.txt'
expect 0 "report: .*/old/report/index.html" -- report "$old"
check "the older folder's report/thesis.tex survives a new report" '[ "$(cat "$old/report/thesis.tex")" = "my thesis" ]'

# An output_dir inside (or equal to) the PNG folder is refused; nothing is made there.
/usr/bin/python3 "$(dirname "$0")/../fixtures/write_pngs.py" "$work/png" --classes $(seq 0 15)
pngset=(--set 'dataset.kind="png"' --set "dataset.path=\"$work/png\"" --set 'dataset.labels=""')
expect 1 "output_dir .*/png/out is inside the data folder .*/png; .*choose an output_dir outside it" -- \
  run "$work/png/out" "${pngset[@]}"
check "nothing was made in the data folder" '[ ! -e "$work/png/out" ]'
expect 1 "output_dir .*/png is inside the data folder" -- run "$work/png" "${pngset[@]}"
expect 1 "output_dir .*/png/x/y is inside the data folder" -- \
  "$semrep" stage phi "$conf" --set "output_dir=\"$work/png/x/y\"" "${pngset[@]}"

# semrep info writes nothing: an absent output_dir stays absent, an existing
# one unchanged, and its scratch folder (in TMPDIR) is gone afterwards.
export TMPDIR=$work/tmp
mkdir "$TMPDIR"
expect 0 "64 images used" -- "$semrep" info "$conf" --adopt --set "output_dir=\"$work/info\""
check "info leaves an absent output_dir absent" '[ ! -e "$work/info" ]'
expect 0 "16 images used" -- "$semrep" info "$conf" --set "output_dir=\"$work/info\"" "${pngset[@]}"
check "info on a PNG folder leaves output_dir absent" '[ ! -e "$work/info" ]'
run "$out" "${pngset[@]}" >/dev/null 2>&1  # a manifest and a cache that info may read
before=$(listing "$out")
touch "$work/mark"
class=$(ls "$work/png" | head -1)
echo 99 >"$work/png/$class/bad.png"  # a change to the folder: info must not bring output_dir's manifest up to date
expect 0 "1 bad images left out" -- "$semrep" info "$conf" --set "output_dir=\"$out\"" "${pngset[@]}" \
  --set 'dataset.on_bad_image="skip"' --set dataset.max_bad_share=0.5
check "info leaves an existing output_dir unchanged" \
  '[ "$(listing "$out")" = "$before" ] && [ -z "$(find "$out" -newer "$work/mark")" ]'
rm "$work/png/$class/bad.png"
check "info removed its scratch folders" '[ -z "$(ls -A "$TMPDIR")" ]'

finish
