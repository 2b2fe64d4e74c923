# Sourced by the job scripts: the environment a semrep run needs.
#
# Debian's OpenBLAS 0.3.21 does not recognise the newest Xeons and falls back
# to its slowest (Prescott) kernels; its AVX-512 (SkylakeX) kernels are not
# trusted on them either (docs/performance.md). Haswell's AVX2 kernels are
# correct and fast. A value set by the caller wins.
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
# Open MPI refuses to run as root unless told; jobs here run as root.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
