#!/usr/bin/env bash
# The error paths the docs promise, each by its exit status and its message:
# docs/cli.md's exit 2 cases (an option without a value, a wrong argument
# count, a number that is not one, out-of-range bench values, unknown
# options) and COMMAND --help; docs/conf.md's refusals (list lengths, types,
# ranges, the checks across keys) and --set's relative paths; and
# docs/datasets.md's data-set errors (NetCDF labels, missing index and
# class files, labelled or not, an empty class folder) and the PNG folder's rules (hidden
# files ignored, a mixed top level unlabelled). `semrep info` reads the
# conf and opens the data sets, and writes nothing.
set -u
semrep=$(realpath "$1")
top=$(cd "$(dirname "$0")/../.." && pwd)
conf=$top/conf/fashion-mnist.conf
. "$top/tests/lib.sh"
. "$top/job_scripts/env.sh"
cd "$work" || exit 1

# --- docs/cli.md: the command line itself is wrong: exit 2, the usage
for cmd in "bench --batch" "bench --threads" "bench --seconds" "info $conf --set" "run $conf --set"; do
  opt=${cmd##* }
  # shellcheck disable=SC2086
  expect 2 "semrep ${cmd%% *}: $opt needs a value" -- "$semrep" $cmd
done
check "an option without a value prints the command's usage" 'grep -q "^usage: semrep run CONF" "$work/out"'
expect 2 "semrep info: takes 1 to 1 arguments besides options, not 0" -- "$semrep" info
expect 2 "semrep info: takes 1 to 1 arguments besides options, not 2" -- "$semrep" info a b
expect 2 "semrep run: takes 1 to 1 arguments besides options, not 0" -- "$semrep" run
expect 2 "semrep run: takes 1 to 1 arguments besides options, not 2" -- "$semrep" run a b
expect 2 "semrep stage: takes 2 to 2 arguments besides options, not 1" -- "$semrep" stage phi
expect 2 "semrep stage: takes 2 to 2 arguments besides options, not 3" -- "$semrep" stage phi a b
expect 2 "semrep bench: takes 0 to 1 arguments besides options, not 2" -- "$semrep" bench a b
expect 2 "semrep bench: --threads abc is not an integer" -- "$semrep" bench --threads abc
expect 2 "semrep bench: --batch 99999999999 is out of range" -- "$semrep" bench --batch 99999999999
for bad in "--batch 0" "--batch 65537" "--threads -1" "--seconds 0" "--seconds 3600" "--seconds -1"; do
  # shellcheck disable=SC2086
  expect 2 "semrep bench: --batch 1\.\.65536, --threads >= 0, --seconds in \(0, 3600\)" -- "$semrep" bench $bad
done
expect 2 "semrep run: unknown option --bogus" -- "$semrep" run "$conf" --bogus
expect 2 "semrep stage: unknown option --bogus" -- "$semrep" stage phi "$conf" --bogus
expect 2 "semrep info: unknown option --frob" -- "$semrep" info "$conf" --frob
# COMMAND --help: the usage on stdout, exit 0, nothing run
expect 0 "^usage: semrep run CONF \[--adopt\]" -- "$semrep" run --help
expect 0 "^usage: semrep stage NAME CONF" -- "$semrep" stage --help
expect 0 "^  NAME: train, denoise-eval, phi, stats, cluster, reconstruct or report" -- "$semrep" stage phi --help
expect 0 "^usage: semrep info CONF\|FILE" -- "$semrep" info --help
expect 0 "^usage: semrep bench \[CONF\]" -- "$semrep" bench --help
check "--help wrote nothing here" '[ -z "$(ls -A "$work" | grep -v "^out$")" ]'

# --- docs/conf.md: refused with exit 1 and the key's name
info() { "$semrep" info "$conf" "$@"; }
expect 1 "phi.sigmas needs 1 to 64 entries \(has 65\)" -- info --set "phi.sigmas=[$(seq -s, 1 65 | sed 's/[0-9]*/0.1/g')]"
expect 1 "cluster.k needs 1 to 16 entries \(has 0\)" -- info --set "cluster.k=[]"
expect 1 "model.kernels needs 1 to 7 entries \(has 8\)" -- info --set "model.kernels=[1,2,3,4,5,6,7,8]"
expect 1 "phi.draws must be an integer" -- info --set 'phi.draws="4"'
expect 1 "phi.draws must be an integer" -- info --set phi.draws=4.5
expect 1 "cluster.k must be a list of integers" -- info --set 'cluster.k=["a"]'
expect 1 "model.dec_convs has 2 entries; model.kernels implies 3 decoder blocks" -- info --set "model.dec_convs=[1,1]"
expect 1 "model.enc_convs has 2 entries; model.kernels implies 3 encoder blocks" -- info --set "model.enc_convs=[2,2]"
expect 1 "model.dec_convs = 0 is out of range \[1, 16\]" -- info --set "model.dec_convs=[0,2,2]"
expect 1 "dataset.channels = 3 but model.in_channels = 1" -- info --set dataset.channels=3
expect 1 "train.dataset.channels = 3 but model.in_channels = 1" -- info --set train.dataset.channels=3
expect 1 "dataset.size: images of 36x36 do not fit a UNet with 3 poolings: .*multiples of 8" -- info --set dataset.size=36
expect 1 "dataset.size = 4 is out of range \[8, 4096\]" -- info --set dataset.size=4
expect 1 "train.sigma_min = 0.5 is above train.sigma_max = 0.2" -- info --set train.sigma_min=0.5 --set train.sigma_max=0.2
expect 1 'dataset.file is empty: kind "netcdf" needs the file' -- info --set 'dataset.kind="netcdf"'
# docs/architecture.md: training a batch-norm model is refused before any step
expect 1 'model.norm = "batch": training a batch-norm model is not built yet' -- \
  "$semrep" stage train "$top/conf/tiny-test.conf" --set "output_dir=\"$work/bn\"" --set 'model.norm="batch"'
check "the refused training left no model, state or curve" \
  '! ls "$work/bn" 2>/dev/null | grep -Eq "checkpoint|train-state|train-curve"'
# a relative path given with --set starts in the folder the command ran in
cp "$top/conf/models/fashion-mnist.nc" "$work/m.nc"
expect 0 "checkpoint: $work/m.nc, matches the conf, verified" -- info --set 'model.checkpoint="m.nc"'
mkdir -p "$work/elsewhere"
expect 0 "checkpoint: none yet at $work/elsewhere/m.nc" -- sh -c 'cd "$1/elsewhere" && shift && "$@"' sh "$work" \
  "$semrep" info "$conf" --set 'model.checkpoint="m.nc"'

# --- docs/datasets.md
/usr/bin/python3 - "$work" <<'PY'
import sys
import netCDF4
import numpy as np
w = sys.argv[1]
for name in ("ok", "negative", "float", "short"):
    ds = netCDF4.Dataset("%s/%s.nc" % (w, name), "w")
    for d, n in (("image", 6), ("channel", 1), ("y", 8), ("x", 8)):
        ds.createDimension(d, n)
    ds.createVariable("images", "u1", ("image", "channel", "y", "x"))[:] = np.arange(384).reshape(6, 1, 8, 8) % 256
    if name == "short":
        ds.createDimension("few", 4)
        ds.createVariable("labels", "i4", ("few",))[:] = [0, 1, 2, 0]
    elif name == "float":
        ds.createVariable("labels", "f4", ("image",))[:] = [0.5, 1, 2, 0, 1, 2]
    else:
        ds.createVariable("labels", "i4", ("image",))[:] = [0, 1, 2, 0, 1, -7 if name == "negative" else 2]
    ds.close()
PY
nc=(--set 'dataset.kind="netcdf"' --set dataset.size=8 --set "model.kernels=[4,8]" --set "model.enc_convs=[1]"
    --set "model.dec_convs=[1]" --set 'model.checkpoint="none.nc"' --set 'dataset.label_variable="labels"')
expect 0 "6 images used, 8x8, 1 channel\(s\), 3 classes" -- info "${nc[@]}" --set 'dataset.file="ok.nc"'
expect 1 "ok.nc has no label variable nolabels \(dataset.label_variable\)" -- \
  info "${nc[@]}" --set 'dataset.file="ok.nc"' --set 'dataset.label_variable="nolabels"'
expect 1 "negative.nc: label -7 of image 5 is not a class number" -- info "${nc[@]}" --set 'dataset.file="negative.nc"'
expect 1 "float.nc: labels must be one integer per image \(6\)" -- info "${nc[@]}" --set 'dataset.file="float.nc"'
expect 1 "short.nc: labels must be one integer per image \(6\)" -- info "${nc[@]}" --set 'dataset.file="short.nc"'
expect 1 "cannot open $work/noindex.txt \(dataset.index_file\): No such file or directory" -- \
  info --set 'dataset.index_file="noindex.txt"'
expect 1 "cannot open $work/noclasses.txt \(dataset.classes\): No such file or directory" -- \
  info --set 'dataset.classes="noclasses.txt"'
# also where the data set has no labels for the names (datasets.md, "Class names")
expect 1 "analysis data: cannot open $work/noclasses.txt \(dataset.classes\): No such file or directory" -- \
  info --set 'dataset.labels=""' --set 'dataset.classes="noclasses.txt"'
expect 1 "analysis data: $work \(dataset.classes\) is a folder; semrep reads only regular files" -- \
  info --set 'dataset.labels=""' --set "dataset.classes=\"$work\""
expect 0 "2000 images used, 32x32, 1 channel\(s\), unlabelled" -- info --set 'dataset.labels=""'
# PNG folders: class sub-folders label; hidden files and folders are not
# images; a top level with files beside the folders is unlabelled; an
# empty class folder is an error
/usr/bin/python3 "$top/tests/fixtures/write_pngs.py" "$work/lab" --classes 0 1 2 3 4 5
/usr/bin/python3 "$top/tests/fixtures/write_pngs.py" "$work/lab/.hidden" 6
cp "$work/lab/9/img-000.png" "$work/lab/9/.img-000.png"
png=(--set 'dataset.kind="png"' --set 'dataset.classes=""')
expect 0 "6 images used, 32x32, 1 channel\(s\), 4 classes \(1, 2, 6, 9\)" -- info "${png[@]}" --set 'dataset.path="lab"'
cp -r "$work/lab" "$work/mixed" && cp "$work/lab/9/img-000.png" "$work/mixed/top.png"
expect 0 "7 images used, 32x32, 1 channel\(s\), unlabelled" -- info "${png[@]}" --set 'dataset.path="mixed"'
expect 1 "cannot open $work/noclasses.txt \(dataset.classes\): No such file or directory" -- \
  info "${png[@]}" --set 'dataset.path="mixed"' --set 'dataset.classes="noclasses.txt"'
cp -r "$work/lab" "$work/emptyc" && mkdir "$work/emptyc/zzz"
expect 1 "the class folder $work/emptyc/zzz holds no PNG file; remove it or add its images" -- \
  info "${png[@]}" --set 'dataset.path="emptyc"'
check "semrep info wrote nothing (no runs/ folder here)" '[ ! -e "$work/runs" ]'
finish
