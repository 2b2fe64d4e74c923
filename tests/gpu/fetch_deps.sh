#!/bin/bash
# Downloads, here, the Debian packages that tests/gpu/check.sh needs on the
# GPU machine, which has the CUDA toolkit, CMake and a compiler but no
# OpenBLAS, Random123, CUnit or pkg-config, and cannot download anything.
# They land in .gpu-deps/ (git-ignored); name it in the device tool's carry.
#   tests/gpu/fetch_deps.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
# libquadmath0: libgfortran5 (OpenBLAS's LAPACK) needs it, and the image may lack it
packages=(libopenblas0-openmp libopenblas-openmp-dev libgfortran5 libquadmath0 librandom123-dev
          libcunit1 libcunit1-dev pkgconf pkgconf-bin libpkgconf3)
rm -rf .gpu-deps
mkdir -p .gpu-deps
apt-get update -qq
(cd .gpu-deps && apt-get download "${packages[@]}")
du -sh .gpu-deps
