#!/bin/bash
# The paper's open choices side by side (issue 19, docs/results.md): phi of
# the full analysis images at one or two sigmas with 1, 5, 20 and 50 draws
# (every block's means with 20), then tests/bench/open_choices.py on them.
#
#   tests/bench/open_choices.sh SEMREP OUTPUT_DIR [SIGMAS] [CONF]
#
# SIGMAS is a conf list in pixel units (default [0.196078], 50 of 255); CONF
# defaults to conf/fashion-mnist-full.conf (all 10,000 test images, the
# shipped model). Each phi run resumes from its chunks when stopped; the
# table goes to OUTPUT_DIR/open_choices.tsv.
set -euo pipefail
semrep=$(realpath "$1"); out=$(realpath -m "$2"); sigmas=${3:-[0.196078]}
here=$(cd "$(dirname "$0")" && pwd)
conf=${4:-$here/../../conf/fashion-mnist-full.conf}
mkdir -p "$out"
files=()
for draws in 1 5 20 50; do
    blocks=false; [ "$draws" = 20 ] && blocks=true
    "$semrep" stage phi "$conf" --set "output_dir=\"$out/draws$draws\"" --set "phi.sigmas=$sigmas" \
        --set "phi.draws=$draws" --set "phi.block_means=$blocks"
    files+=("$out/draws$draws/phi.nc")
done
images=$(sed -n 's/^ *images *= *"\(.*\)";.*/\1/p' "$conf" | head -1)
/usr/bin/python3 "$here/open_choices.py" --pixels "$images" "${files[@]}" | tee "$out/open_choices.tsv"
