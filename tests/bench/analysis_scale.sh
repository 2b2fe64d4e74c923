#!/bin/bash
# The analysis at scale (issue 14): times `semrep stage stats` and
# `semrep stage cluster` on phi files of N images, with the peak memory of
# every rank (/usr/bin/time -v around each rank), and prints a table.
# A benchmark, not a test: it asserts nothing about speed.
#
#   tests/bench/analysis_scale.sh SEMREP [N ...]
#
# N: image counts of synthetic phi files (tests/bench/make_synthetic_phi.py:
# 256 channels, one sigma 0.2, a labelled mixture of sparse non-negative
# clusters); default "60000 250000 1000000". A real phi.nc (Fashion-MNIST's
# training images at one sigma, for instance) joins the table with
# REAL_PHI=path; its sigma must be 0.2 unless SIGMA says another.
# Environment: RANKS (default "1 2"), KS (the cluster.k list, default
# "10, 100, 1000"), RESTARTS (3), MAX_ITER (20), STAGES ("stats cluster"),
# WORK (where the phi files and runs go; default /tmp/semrep-bench-analysis,
# kept between runs so the phi files are made once), EXTRA (more --set
# arguments for both stages, e.g. "cluster.exact_max=1000").
# cluster's pixel baseline is off (no images behind synthetic phi). Exit 1
# when a stage failed (its row says so), after the table.
set -euo pipefail
semrep=$(realpath "${1:?usage: analysis_scale.sh SEMREP [N ...]}")
shift
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(60000 250000 1000000)
here=$(cd "$(dirname "$0")" && pwd)
conf=$(cd "$here/../../conf" && pwd)/fashion-mnist.conf
work=${WORK:-/tmp/semrep-bench-analysis}
ranks=${RANKS:-1 2}
ks=${KS:-10, 100, 1000}
sigma=${SIGMA:-0.2}
mkdir -p "$work"
for tool in /usr/bin/time /usr/bin/python3 mpirun; do
  command -v "$tool" >/dev/null || { echo "analysis_scale.sh: needs $tool (apt-get install time python3-netcdf4 openmpi-bin)" >&2; exit 1; }
done

# phi files: name, path
phis=()
if [ -n "${REAL_PHI:-}" ]; then
  [ -r "$REAL_PHI" ] || { echo "analysis_scale.sh: REAL_PHI=$REAL_PHI is not a readable file" >&2; exit 1; }
  phis+=("real" "$(realpath "$REAL_PHI")")
fi
for n in "${sizes[@]}"; do
  [[ "$n" =~ ^[0-9]+$ ]] || { echo "analysis_scale.sh: image count '$n' is not a number" >&2; exit 1; }
  phi="$work/synthetic-$n.nc"
  if [ ! -s "$phi" ]; then
    echo "making $phi" >&2
    /usr/bin/python3 "$here/make_synthetic_phi.py" "$phi.part" "$n" 256 "$sigma"
    mv "$phi.part" "$phi"
  fi
  phis+=("synthetic" "$phi")
done

sets=(--set "cluster.k=[$ks]" --set "cluster.restarts=${RESTARTS:-3}" --set "cluster.max_iter=${MAX_ITER:-20}"
      --set cluster.pixels=false --set "cluster.sigmas=[$sigma]")
for e in ${EXTRA:-}; do sets+=(--set "$e"); done

# From the ranks' /usr/bin/time reports: the CPU seconds of all ranks (on a
# shared machine the wall time also counts other people's work), and the
# peak resident memory (MB), the largest and every rank's.
cpu() { grep -h "User time\|System time" "$@" | awk '{s += $NF} END {printf "%.1f s", s}'; }
peak() {
  local all
  all=$(grep -h "Maximum resident set size" "$@" | awk '{printf "%.0f ", $NF / 1024}')
  echo "$(echo "$all" | tr ' ' '\n' | sort -n | tail -1) MB (ranks: ${all% })"
}

rows=() status=0
for ((p = 0; p < ${#phis[@]}; p += 2)); do
  kind=${phis[p]} phi=${phis[p + 1]}
  n=$(/usr/bin/python3 -c "import netCDF4,sys; print(len(netCDF4.Dataset(sys.argv[1]).dimensions['image']))" "$phi")
  for r in $ranks; do
    run="$work/run-$kind-$n-np$r"
    rm -rf "$run" && mkdir -p "$run"
    ln -s "$phi" "$run/phi.nc" # the folder is adopted: semrep never touches this link or the timings
    for stage in ${STAGES:-stats cluster}; do
      start=$(date +%s.%N)
      if ! mpirun --oversubscribe --allow-run-as-root -np "$r" \
           sh -c 'exec /usr/bin/time -v -o "$0.$OMPI_COMM_WORLD_RANK" "$@"' "$run/time-$stage" \
           "$semrep" stage "$stage" "$conf" --adopt --set "output_dir=\"$run\"" "${sets[@]}" >"$run/$stage.log" 2>&1; then
        echo "analysis_scale.sh: $stage failed on $n images, $r rank(s); see $run/$stage.log" >&2
        grep "semrep: error" "$run/$stage.log" >&2 || tail -5 "$run/$stage.log" >&2
        rows+=("| $n ($kind) | $r | $stage | failed | - | - |")
        status=1
        continue
      fi
      secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
      rows+=("| $n ($kind) | $r | $stage | $secs s | $(cpu "$run/time-$stage".*) | $(peak "$run/time-$stage".*) |")
    done
  done
done

echo
echo "Analysis at scale: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%F), K = [$ks], ${RESTARTS:-3} restarts, max_iter ${MAX_ITER:-20}, no pixel baseline${EXTRA:+, $EXTRA}"
echo
echo "| images | ranks | stage | wall time | CPU time, all ranks | peak memory per rank |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
exit $status
