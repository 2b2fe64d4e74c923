#!/bin/bash
# The GPU check: one script for a lent GPU machine (about 3 minutes on one
# H200). That machine has the CUDA toolkit, CMake, a compiler and PyTorch,
# but not OpenBLAS, Random123, CUnit, MPI or NetCDF, and reaches no package
# registry: run tests/gpu/fetch_deps.sh here first and carry .gpu-deps.
#
#   tests/gpu/check.sh            (in the repository root; logs to $OUT when set)
#
# It prints the driver and toolkit, builds the core (no MPI, no NetCDF) with
# the CUDA backend for sm_90, runs every backend op against the CPU backend
# and the UNet (output, block means, input and parameter gradients) against
# the PyTorch fixture on the GPU, then times the engine's passes at the
# paper's shape (3x64x64, kernels 64..512) in FP32, TF32 and BF16 beside
# PyTorch's FP32 and BF16 autocast on the same GPU.
#
# Not run here: `semrep stage phi` on the GPU against the CPU's phi.nc needs
# the MPI/NetCDF build, whose libraries this machine lacks (docs/performance.md).
set -uo pipefail
cd "$(dirname "$0")/../.."
log=${OUT:-/tmp}/gpu-check.log
exec > >(tee "$log") 2>&1
failed=0
step() { printf '\n== %s\n' "$*"; }
fail() { echo "FAILED: $*"; failed=1; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv || fail "nvidia-smi"
nvcc --version | tail -2
cmake --version | head -1
nproc

step "dependencies from .gpu-deps"
deps=/tmp/semrep-deps
if ! ls .gpu-deps/*.deb >/dev/null 2>&1; then
    echo "no .gpu-deps/*.deb: run tests/gpu/fetch_deps.sh where packages can be downloaded, and carry .gpu-deps"
    exit 1
fi
mkdir -p "$deps"
for f in .gpu-deps/*.deb; do
    if command -v dpkg >/dev/null; then dpkg -x "$f" "$deps"
    else (cd "$deps" && ar p "$OLDPWD/$f" data.tar.xz | tar xJ); fi || fail "unpacking $f"
done
lib=$deps/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$lib:$lib/openblas-openmp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export PKG_CONFIG_SYSROOT_DIR=$deps PKG_CONFIG_LIBDIR=$lib/pkgconfig:$deps/usr/share/pkgconfig
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}

step "build (core + CUDA backend, sm_90)"
cmake -S . -B build-gpu -DCMAKE_BUILD_TYPE=Release -DSEMREP_WITH_MPI_IO=OFF -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DPKG_CONFIG_EXECUTABLE="$deps/usr/bin/pkgconf" \
      -DSEMREP_OPENBLAS="$lib/openblas-openmp/libopenblas.so" \
      -DSEMREP_CBLAS_INCLUDE="$deps/usr/include/x86_64-linux-gnu/openblas-openmp" \
      -DSEMREP_RANDOM123_INCLUDE="$deps/usr/include" >/dev/null || { fail "cmake"; exit 1; }
cmake --build build-gpu -j "$(nproc)" 2>&1 | grep -E "error|warning" ; [ -x build-gpu/tests/test_cuda_backend ] || { fail "build"; exit 1; }

step "tests: every op against the CPU backend, the UNet against PyTorch on the GPU, the CPU suites"
(cd build-gpu && ctest --output-on-failure -V -R 'cuda_backend|unet_fixture|layers|rng|unet_model') >build-gpu/ctest.log 2>&1 ||
    fail "ctest"
grep -E "max rel diff|dot of|backend|Test +#|tests passed|Failed|SKIPPED|GPU:" build-gpu/ctest.log
grep -q "(Skipped)" build-gpu/ctest.log && fail "GPU tests were skipped: no GPU seen"

step "semrep on the GPU: the engine's passes"
for shape_batch in "default 1024" "paper 256"; do
    set -- $shape_batch
    for math in fp32 tf32 bf16; do
        build-gpu/tests/bench_gpu "$1" "$2" "$math" 2 || fail "bench_gpu $1 $2 $math"
    done
done

step "PyTorch on the same GPU"
for shape_batch in "default 1024" "paper 256"; do
    set -- $shape_batch
    python3 tests/bench/torch_unet.py --device cuda --shape "$1" --batch "$2" --seconds 2 || fail "torch $1 fp32"
    python3 tests/bench/torch_unet.py --device cuda --shape "$1" --batch "$2" --seconds 2 --bf16 || fail "torch $1 bf16"
done

step "result"
[ "$failed" = 0 ] && echo "GPU CHECK PASSED" || echo "GPU CHECK FAILED"
exit "$failed"
