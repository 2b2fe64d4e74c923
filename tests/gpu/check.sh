#!/bin/bash
# The GPU check: one script for a lent GPU machine, within 10 minutes on one
# H200 (start-up not counted: SEMREP_CHECK_SECONDS, 480 by default, is the
# script's own budget). That machine has the CUDA toolkit, CMake, a compiler
# and PyTorch, but not OpenBLAS, Random123, CUnit, MPI or NetCDF, and reaches
# no package registry: run tests/gpu/fetch_deps.sh here first and carry
# .gpu-deps.
#
#   tests/gpu/check.sh            (in the repository root)
#
# Logs go to $OUT (or /tmp/semrep-gpu-check) as the check goes, so a run cut
# short still brings back what it did: gpu-check.log (everything) and
# ctest.log (the tests in full). In order of value (docs/performance.md):
#   1. the build (core + CUDA backend for sm_90) and its libraries found;
#      an earlier build's binaries are removed first, so a failed build
#      fails the check instead of running stale ones;
#   2. the tests, every kernel waited for (SEMREP_CUDA_SYNC=1): the noise
#      bit for bit against the committed digest (rng_cuda), every backend op
#      against the CPU backend, the UNet against the PyTorch fixture on the
#      GPU, a broken driver failing rather than skipping, the CPU suites;
#   3. the engine's passes at both shapes in fp32 and bf16 beside PyTorch's;
#   4. each kernel's time (Nsight Compute, where the runtime allows it);
#   5. tf32, last: dropped first when the budget runs short.
#
# Not run here: `semrep stage phi` on the GPU against the CPU's phi.nc needs
# the MPI/NetCDF build, whose libraries this machine lacks (docs/performance.md).
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-/tmp/semrep-gpu-check}
mkdir -p "$out" || exit 1
budget=${SEMREP_CHECK_SECONDS:-480}
failed=0
step() { printf '\n== %s (%ds)\n' "$*" "$SECONDS"; }
fail() { echo "FAILED: $*"; failed=1; }
# time_left SECONDS: whether a step that takes about that long still fits
time_left() { [ $((budget - SECONDS)) -ge "$1" ] || { echo "DROPPED for time ($SECONDS of ${budget}s used): $2"; false; }; }

check() {
    step "machine"
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || fail "nvidia-smi"
    local nvcc
    nvcc=$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)
    [ -x "$nvcc" ] || { fail "no nvcc on the PATH or in /usr/local/cuda/bin"; return; }
    "$nvcc" --version | tail -2
    cmake --version | head -1
    nproc

    step "dependencies from .gpu-deps"
    local deps=/tmp/semrep-deps f
    if ! ls .gpu-deps/*.deb >/dev/null 2>&1; then
        fail "no .gpu-deps/*.deb: run tests/gpu/fetch_deps.sh where packages can be downloaded, and carry .gpu-deps"
        return
    fi
    mkdir -p "$deps"
    for f in .gpu-deps/*.deb; do
        if command -v dpkg >/dev/null; then dpkg -x "$f" "$deps"
        else (cd "$deps" && ar p "$OLDPWD/$f" data.tar.xz | tar xJ); fi || fail "unpacking $f"
    done
    local lib=$deps/usr/lib/x86_64-linux-gnu
    # the carried libraries, and the toolkit's beside nvcc (the binaries' RUNPATH names it too)
    export LD_LIBRARY_PATH=$lib:$lib/openblas-openmp:$(dirname "$nvcc")/../lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
    export PKG_CONFIG_SYSROOT_DIR=$deps PKG_CONFIG_LIBDIR=$lib/pkgconfig:$deps/usr/share/pkgconfig
    export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}

    step "build (core + CUDA backend, sm_90)"
    cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DSEMREP_WITH_MPI_IO=OFF -DCMAKE_CUDA_ARCHITECTURES=90 \
          -DCMAKE_CUDA_COMPILER="$nvcc" -DPKG_CONFIG_EXECUTABLE="$deps/usr/bin/pkgconf" \
          -DSEMREP_OPENBLAS="$lib/openblas-openmp/libopenblas.so" \
          -DSEMREP_CBLAS_INCLUDE="$deps/usr/include/x86_64-linux-gnu/openblas-openmp" \
          -DSEMREP_RANDOM123_INCLUDE="$deps/usr/include" >"$out/cmake.log" 2>&1 ||
        { fail "cmake (its output: cmake.log)"; tail -20 "$out/cmake.log"; return; }
    # A failed build must not leave an earlier build's binaries to be run:
    # every executable and library under build-gpu/tests (what ctest and the
    # benchmarks run) goes first, so that each one there afterwards was
    # linked by this build (their objects stay: only linking is redone), and
    # the build's own status counts.
    local stamp=$out/build-started
    find build-gpu/tests -type f \( -name 'test_*' -o -name 'bench_*' -o -name '*.so*' \) -perm -u+x -delete 2>/dev/null
    touch "$stamp"
    if ! cmake --build build-gpu -j "$(nproc)" >"$out/build.log" 2>&1; then
        grep -E "error|warning" "$out/build.log"
        fail "build (its output: build.log)"; tail -20 "$out/build.log"; return
    fi
    grep -E "error|warning" "$out/build.log"
    local stale
    stale=$(find build-gpu/tests -type f \( -name 'test_*' -o -name 'bench_*' -o -name '*.so*' \) -perm -u+x ! -newer "$stamp")
    [ -z "$stale" ] || { fail "binaries older than this build: $stale"; return; }
    [ -x build-gpu/tests/test_cuda_backend ] && [ -x build-gpu/tests/bench_gpu ] ||
        { fail "build: no test_cuda_backend or bench_gpu (its output: build.log)"; tail -20 "$out/build.log"; return; }
    readelf -d build-gpu/tests/test_cuda_backend | grep -E "RUNPATH|RPATH"
    if ldd build-gpu/tests/test_cuda_backend | grep "not found"; then fail "libraries not found"; return; fi

    step "tests: the noise and every op against the CPU, the UNet against PyTorch on the GPU, the CPU suites"
    # every test of this build: rng, rng_O0, layers, unet_fixture, unet_model and
    # their GPU runs, cuda_backend, cuda_broken_driver
    (cd build-gpu && ctest --output-on-failure -V --timeout 240) >"$out/ctest.log" 2>&1 || fail "ctest"
    grep -E "digests|max error|max rel diff|dot of|backend|Test +#|tests passed|Failed|SKIPPED|GPU:|semrep: error" \
        "$out/ctest.log"
    grep -q "(Skipped)" "$out/ctest.log" && fail "GPU tests were skipped: no GPU seen"

    step "semrep on the GPU beside PyTorch: fp32 and bf16 at both shapes"
    local shape batch math
    for shape_batch in "default 1024" "paper 256"; do
        read -r shape batch <<<"$shape_batch"
        for math in fp32 bf16; do
            time_left 30 "bench_gpu $shape $math" &&
                { build-gpu/tests/bench_gpu "$shape" "$batch" "$math" 2 || fail "bench_gpu $shape $batch $math"; }
            local flag=; [ "$math" = bf16 ] && flag=--bf16
            time_left 40 "torch $shape $math" &&
                { python3 tests/bench/torch_unet.py --device cuda --shape "$shape" --batch "$batch" --seconds 2 $flag ||
                      fail "torch $shape $math"; }
        done
    done

    step "each kernel's time, from Nsight Compute (where the runtime lets it read the GPU)"
    # the idle-SM question (docs/performance.md): which kernels take the time of
    # a training step and a phi pass at the default shape; one metric, no replay
    if command -v ncu >/dev/null && time_left 130 "ncu"; then
        timeout 120 ncu --metrics gpu__time_duration.sum --clock-control none --launch-skip 40 --launch-count 6000 \
            --print-summary per-kernel build-gpu/tests/bench_gpu default 1024 fp32 0.05 >"$out/ncu.log" 2>&1 ||
            echo "ncu did not finish (rc $?; its output: ncu.log)"
        wc -l "$out/ncu.log"
        tail -5 "$out/ncu.log"
    fi

    step "semrep in tf32 (dropped first)"
    for shape_batch in "default 1024" "paper 256"; do
        read -r shape batch <<<"$shape_batch"
        time_left 30 "bench_gpu $shape tf32" &&
            { build-gpu/tests/bench_gpu "$shape" "$batch" tf32 2 || fail "bench_gpu $shape $batch tf32"; }
    done
}

# The pipeline's exit waits for tee, so the log's last lines are never lost.
{
    check
    step "result"
    [ "$failed" = 0 ] && echo "GPU CHECK PASSED" || echo "GPU CHECK FAILED"
    exit "$failed"
} 2>&1 | tee "$out/gpu-check.log"
exit "${PIPESTATUS[0]}"
