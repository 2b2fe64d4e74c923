#!/usr/bin/env bash
# The whole test suite: installs what is missing, builds, runs every test with
# CTest (CUnit suites, MPI tests under mpirun -np 2, command-line tests).
# It also builds core/ and nn/ alone (SEMREP_WITH_MPI_IO=OFF), as a GPU
# machine without MPI, NetCDF or libpng would, and runs their tests.
set -euo pipefail
cd "$(dirname "$0")/.."
# First, as it takes a second: no raw allocation outside pipeline/core/.
tests/lint/raw_alloc.sh --self-test
tests/lint/raw_alloc.sh
# The tests also need PyTorch, netCDF4, xxhash and scikit-learn for Python
# (the converter's and the analysis fixtures' scripts), netcdf-bin (ncdump),
# SLURM with munge (the job scripts' test runs a one-node SLURM), and
# Chromium (the report's browser test), and clang with libFuzzer and its
# OpenMP (the fuzz targets).
# The CUDA backend is built too (installing a toolkit if none is here), so
# it always compiles; its tests skip, saying so, where no GPU is visible.
SEMREP_INSTALL_CUDA=1 job_scripts/build.sh python3-torch python3-netcdf4 python3-xxhash python3-sklearn netcdf-bin slurm-wlm munge chromium clang libclang-rt-dev libomp-dev
. job_scripts/env.sh
# What the tests need is installed now: a test that finds it missing fails
# instead of skipping (tests/convert/test_convert.py).
export SEMREP_TESTS_INSTALLED=1
if [ ! -x build/tests/test_cuda_backend ]; then
  echo "tests/run.sh: error: the CUDA backend was not built (no CUDA toolkit found by cmake); see job_scripts/build.sh" >&2
  exit 1
fi

# The core-only build also leaves oneDNN out (SEMREP_DNNL=OFF), so that the
# CPU backend's own convolutions (im2col, Winograd over OpenBLAS) stay tested
# beside the oneDNN path of build/.
cmake -S . -B build/core-only -DCMAKE_BUILD_TYPE=Release -DSEMREP_WITH_MPI_IO=OFF -DSEMREP_DNNL=OFF >/dev/null
cmake --build build/core-only -j "$(nproc)" >/dev/null

# One test at a time: each uses every core.
ctest --test-dir build/core-only --output-on-failure
ctest --test-dir build --output-on-failure

# The sanitizer pass: the suite again (less the SLURM and converter tests)
# on an AddressSanitizer + UndefinedBehaviorSanitizer build, build/asan.
tests/sanitizers/check.sh

# The readers' fuzz targets (clang's libFuzzer, build/fuzz): each replays
# its committed corpus, and most then try a few thousand fixed-seed inputs.
cmake -S . -B build/fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Sanitize -DSEMREP_CUDA=OFF -DSEMREP_FUZZ=ON >/dev/null
cmake --build build/fuzz -j "$(nproc)" >/dev/null
ctest --test-dir build/fuzz --output-on-failure
