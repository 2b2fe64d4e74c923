#!/usr/bin/env bash
# Installs the Debian packages semrep needs (only those missing), and any
# extra packages named as arguments, then builds semrep into build/. Used by
# job_scripts/local.sh and tests/run.sh; on a cluster whose nodes cannot
# install packages, build once with the same cmake lines.
#   job_scripts/build.sh [EXTRA_PACKAGE]...
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config
          libopenmpi-dev openmpi-bin libopenblas-openmp-dev libdnnl-dev
          libnetcdf-mpi-dev libpng-dev zlib1g-dev libconfig-dev librandom123-dev
          libxxhash-dev libcunit1-dev dataset-fashion-mnist gnuplot-nox "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "semrep: installing ${missing[*]}"
  if [ "$(id -u)" != 0 ]; then
    echo "semrep: error: packages missing and not root; install them: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The CUDA backend is built when a CUDA toolkit is found: nvcc on PATH, or
# NVIDIA's /usr/local/cuda. With SEMREP_INSTALL_CUDA=1 and neither there,
# Debian's toolkit (non-free, about 1.5 GB) is installed first, so that the
# backend always compiles where that is asked for (tests/run.sh, CI).
if ! command -v nvcc >/dev/null && [ -z "${CUDACXX:-}" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDACXX=/usr/local/cuda/bin/nvcc
fi
if ! command -v nvcc >/dev/null && [ -z "${CUDACXX:-}" ] && [ "${SEMREP_INSTALL_CUDA:-0}" = 1 ]; then
  echo "semrep: installing Debian's CUDA toolkit (nvidia-cuda-toolkit, non-free) for the CUDA backend"
  cat > /etc/apt/sources.list.d/semrep-non-free.sources <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: contrib non-free
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends nvidia-cuda-toolkit >/dev/null
fi

jobs=$(nproc)
cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs" >/dev/null
