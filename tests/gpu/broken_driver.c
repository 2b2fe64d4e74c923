/* A stand-in libcuda.so.1 for the cuda_broken_driver test: a driver that is
 * there but cannot start (every entry point fails), as a broken or
 * mismatched driver installation looks to the CUDA runtime. The GPU tests
 * must fail on it, not skip as on a machine without a GPU. */
int cuInit(unsigned flags);
int cuDriverGetVersion(int *version);

int cuInit(unsigned flags)
{
    (void)flags;
    return 999; /* CUDA_ERROR_UNKNOWN */
}

int cuDriverGetVersion(int *version)
{
    *version = 0;
    return 999;
}
