#!/usr/bin/env bash
# Builds and runs tests/bench/onednn_conv.c against build/ (the libraries of
# a Release build) and Debian's oneDNN (libdnnl-dev):
#   tests/bench/onednn_conv.sh [N] [SECONDS] [all]
# N images per convolution (512: phi's batch of 64 images x 8 draws).
set -euo pipefail
cd "$(dirname "$0")/../.."
. job_scripts/env.sh
out=build/onednn_conv
blas=/usr/lib/x86_64-linux-gnu/openblas-openmp
cc -std=c11 -O2 -march=native -fopenmp -Wall -Wextra -Ipipeline tests/bench/onednn_conv.c \
   build/pipeline/nn/libsemrep_nn.a build/pipeline/core/libsemrep_core.a \
   -L"$blas" -Wl,-rpath,"$blas" -lopenblas -ldnnl -lm -o "$out"
"$out" "${1:-512}" "${2:-0.5}" "${3:-}"
