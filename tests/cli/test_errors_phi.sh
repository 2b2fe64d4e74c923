#!/usr/bin/env bash
# The error paths of a rerun into an existing output folder, each by its
# exit status and its message:
# - phi never mixes rows (docs/formats.md, "Fingerprints"; docs/usage.md,
#   section 4): a phi.nc made with another phi.* setting, seed,
#   dataset.size, checkpoint or model shape, data set or channel count is
#   refused by name and left as it was (same inode, time and bytes); a grown
#   or shrunk selection of the same data reuses the rows it holds, copied
#   exactly, and computes only the others; phi.run_chunks and, on the CPU,
#   gpu_math are outside the fingerprint and leave phi.nc up to date;
# - a damaged manifest, or one of another version (docs/datasets.md), is
#   built again with a note and never stops the run.
set -u
semrep=$(realpath "$1")
top=$(cd "$(dirname "$0")/../.." && pwd)
conf=$top/conf/tiny-test.conf
. "$top/tests/lib.sh"
. "$top/job_scripts/env.sh"
cd "$work" || exit 1

"$semrep" stage train "$conf" --set "output_dir=\"$work/model\"" >"$work/log" 2>&1
model=(--set "model.checkpoint=\"$work/model/checkpoint.nc\"")
phi() { "$semrep" stage phi "$conf" "${model[@]}" --set "output_dir=\"$work/run\"" --set dataset.limit=32 "$@"; }
# what must not change: the file (inode, modification time) and its bytes
state() { stat -c '%i %Y.%y' "$work/run/phi.nc" && sha256sum <"$work/run/phi.nc"; }

expect 0 "phi: wrote $work/run/phi.nc" -- phi
before=$(state)
unchanged() { check "$1: phi.nc left as it was, no chunks begun" \
  '[ "$(state)" = "$before" ] && [ ! -e "$work/run/phi-chunks" ]'; }

# every phi.* key but phi.run_chunks, the seed and dataset.size: the provenance
settings="phi.nc was made with other phi settings or on another backend; move it away or use another output_dir"
for change in "phi.draws=3" "phi.sigmas=[0.0, 0.1]" "phi.sigmas=[0.0, 0.2, 0.4]" "phi.batch=8" \
              "phi.block_means=false" "seed=2" "dataset.size=24"; do
  expect 1 "semrep: error: $work/run/$settings" -- phi --set "$change"
  unchanged "$change"
done
# another model: the shipped default (another shape, another checksum)
checksum() { "$semrep" info "$1" | sed -n 's/^ *checksum \([0-9a-f]*\) .*/\1/p'; }
sum=$(checksum "$work/model/checkpoint.nc") shipped=$(checksum "$top/conf/models/fashion-mnist.nc")
expect 1 "phi.nc was made from the checkpoint with checksum $sum, not this run's $shipped; move it away" -- \
  "$semrep" stage phi "$top/conf/fashion-mnist.conf" --set "output_dir=\"$work/run\"" --set dataset.limit=32
unchanged "the default model"
# the same checkpoint under another model shape, or with 3 channels, is refused before phi.nc is read
expect 1 "has kernels = \[4, 8, 16\] but the conf's model.kernels is \[4, 8, 8\]" -- phi --set "model.kernels=[4, 8, 8]"
unchanged "model.kernels"
expect 1 "has in_channels = 1 but the conf's model.in_channels is 3" -- \
  phi --set model.in_channels=3 --set dataset.channels=3 --set train.dataset.channels=3
unchanged "dataset.channels"
# another data set: the training split
expect 1 "phi.nc was made from another data set \(IDX .*t10k-images-idx3-ubyte.gz \(10000 images of 28x28\)\); move it away" -- \
  phi --set 'dataset.images="/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"' \
      --set 'dataset.labels="/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz"'
unchanged "the training split"

# outside the fingerprint: up to date
expect 0 "phi: $work/run/phi.nc is up to date" -- phi --set phi.run_chunks=1
expect 0 "phi: $work/run/phi.nc is up to date" -- phi --set 'gpu_math="bf16"'
unchanged "phi.run_chunks, gpu_math on the CPU"

# the same data set, more or fewer images: the rows it holds are copied
cp "$work/run/phi.nc" "$work/phi-32.nc"
expect 0 "holds 32 of these 48 images \(same model and settings\); computing the other 16" -- phi --set dataset.limit=48
cp "$work/run/phi.nc" "$work/phi-48.nc"
expect 0 "holds 16 of these 16 images \(same model and settings\); computing the other 0" -- phi --set dataset.limit=16
rows=$(/usr/bin/python3 - "$work" <<'PY'
import sys, numpy as np, netCDF4
w = sys.argv[1]
a, b, c = (netCDF4.Dataset(f"{w}/{f}") for f in ("phi-32.nc", "phi-48.nc", "run/phi.nc"))
n = [len(d["index"][:]) for d in (a, b, c)]
same = all(np.array_equal(d[v][:, :16], a[v][:, :16]) for d in (b, c) for v in ("phi", "block_mean"))
same = same and np.array_equal(b["phi"][:, :32], a["phi"][:, :32]) and np.array_equal(b["index"][:], np.arange(48))
print(*n, int(same), b.images_reused, b.images_computed, c.images_reused, c.images_computed)
PY
)
check "32, then 48 (32 copied, 16 computed), then 16 images (16 copied): $rows" '[ "$rows" = "32 48 16 1 32 16 16 0" ]'

# --- docs/datasets.md: a damaged manifest is built again, with a note
/usr/bin/python3 "$top/tests/fixtures/write_pngs.py" "$work/png" --classes 0 1 2 3 4 5 6 7
pngs=(--set 'dataset.kind="png"' --set "dataset.path=\"$work/png\"" --set 'dataset.labels=""' --set dataset.limit=0)
pphi() { "$semrep" stage phi "$conf" "${model[@]}" --set "output_dir=\"$work/pout\"" "${pngs[@]}" "$@"; }
expect 0 "phi: wrote $work/pout/phi.nc" -- pphi
manifest=$(ls "$work"/pout/manifest-*.tsv)
cp "$manifest" "$work/manifest-good.tsv"
check "the manifest lists the 8 images" '[ "$(grep -c "	ok$" "$manifest")" = 8 ]'
rebuilt() { # CASE PATTERN: the note, phi.nc up to date, the manifest as it was
  check "$1: the manifest built again, as it was" 'cmp -s "$manifest" "$work/manifest-good.tsv"'
}
line=$(grep -n "	ok$" "$manifest" | sed -n 3p | cut -d: -f1)
for damage in "cut" "class" "version"; do
  cp "$work/manifest-good.tsv" "$manifest"
  case $damage in
    cut) sed -i "${line}s/	[^	]*	[^	]*$//" "$manifest"; want="line $line is damaged" ;;
    class) sed -i "${line}s/	[0-9]*	ok$/	7	ok/" "$manifest"; want="line $line is damaged" ;;
    version) sed -i "1s/.*/# semrep-manifest 1/" "$manifest"; want="is not a semrep manifest of version 2" ;;
  esac
  expect 0 "^semrep: note: $manifest $want; building it again: every file of the folder is decoded once more$" -- pphi
  check "$damage: phi.nc is up to date after the note" 'grep -q "phi: $work/pout/phi.nc is up to date" "$work/out"'
  rebuilt "$damage"
done
finish
