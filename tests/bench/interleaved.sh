#!/usr/bin/env bash
# The engine against PyTorch 1.13 (Debian's; oneDNN 2.6.3 inside), interleaved
# in one run: for each round, `semrep bench` of every binary given, then
# tests/bench/torch_unet.py, all on the same threads and batch; then the
# median images/s of each pass and the ratios to PyTorch. Asserts nothing.
#   tests/bench/interleaved.sh [SEMREP]...      (default: build/semrep)
# Environment: ROUNDS (3), BENCH_SECONDS (2, least time per pass), THREADS (2),
# SHAPE (both: default then paper | default | paper: conf/paper-imagenet64.conf's
# model, BATCH 16), BATCH (64). Prints the protocol, lscpu's model and flags
# line, each raw output, and a table per shape.
set -euo pipefail
self=$(realpath "$0")
cd "$(dirname "$self")/../.."
if [ "${SHAPE:-both}" = both ]; then
  SHAPE=default "$self" "$@"
  echo
  SHAPE=paper exec "$self" "$@"
fi
. job_scripts/env.sh
rounds=${ROUNDS:-3} secs=${BENCH_SECONDS:-2} threads=${THREADS:-2} shape=$SHAPE
batch=${BATCH:-$([ "$shape" = paper ] && echo 16 || echo 64)}
bins=("$@"); ((${#bins[@]})) || bins=(build/semrep)
conf=(); [ "$shape" = paper ] && conf=(conf/paper-imagenet64.conf)
out=$(mktemp -d)
echo "protocol: $rounds rounds; each round runs, one after the other: ${bins[*]} (semrep bench), then PyTorch;"
echo "  $threads threads, batch $batch, $shape shape, at least $secs s a pass after one warm-up call; medians over rounds"
echo "  date $(date -u '+%F %T UTC'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
lscpu | grep -E "^Model name|^CPU\(s\)" | sed 's/^/  /'
echo "  AVX-512 flags: $(lscpu | grep -E '^Flags' | grep -o 'avx512[a-z0-9_]*' | tr '\n' ' ')"
for r in $(seq "$rounds"); do
  for i in "${!bins[@]}"; do
    "${bins[$i]}" bench "${conf[@]}" --threads "$threads" --batch "$batch" --seconds "$secs" > "$out/semrep$i.$r"
    cat "$out/semrep$i.$r"
  done
  /usr/bin/python3 tests/bench/torch_unet.py --threads "$threads" --batch "$batch" --seconds "$secs" \
    --shape "$shape" > "$out/torch.$r"
  cat "$out/torch.$r"
done
echo "  load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
/usr/bin/python3 - "$out" "$rounds" "${bins[@]}" <<'PY'
import re, statistics, sys
out, rounds, bins = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
passes = ["encoder+mid forward (phi)", "full forward D(y)", "training step (fwd+bwd+Adam)", "projection step (input grad)"]
def rates(path):
    text = open(path).read()
    return {p: float(re.search(re.escape(p) + r"\s+([0-9.]+)", text).group(1)) for p in passes}
runs = {f"semrep{i}": [rates(f"{out}/semrep{i}.{r}") for r in range(1, rounds + 1)] for i in range(len(bins))}
runs["torch"] = [rates(f"{out}/torch.{r}") for r in range(1, rounds + 1)]
med = {k: {p: statistics.median(x[p] for x in v) for p in passes} for k, v in runs.items()}
head = "| pass | " + " | ".join(f"{b} images/s" for b in bins) + " | PyTorch images/s | " + \
       " | ".join(f"{b} / PyTorch" for b in bins) + " | per-round ratios |"
print("\n" + head + "\n|" + "---|" * (head.count("|") - 1))
for p in passes:
    cells = [f"{med[f'semrep{i}'][p]:.1f}" for i in range(len(bins))] + [f"{med['torch'][p]:.1f}"]
    cells += [f"{med[f'semrep{i}'][p] / med['torch'][p]:.2f}" for i in range(len(bins))]
    per = "; ".join(" ".join(f"{runs[f'semrep{i}'][r][p] / runs['torch'][r][p]:.2f}" for r in range(rounds))
                    for i in range(len(bins)))
    print(f"| {p} | " + " | ".join(cells) + f" | {per} |")
PY
rm -rf "$out"
