/* The engine's benchmark passes, on any backend: images/s of the encoder +
 * middle forward (phi), the full forward, a training step and a projection
 * step at one batch size, beside one large sgemm through the same backend.
 * Used by `semrep bench` (with ranks and a conf) and by the GPU check
 * (tests/gpu/, which builds without MPI). */
#ifndef SEMREP_NN_BENCH_H
#define SEMREP_NN_BENCH_H

#include "nn/unet.h"

enum { SR_BENCH_PASSES = 4 };

typedef struct {
    int gemm_n;
    double sgemm_gflops;
    struct {
        const char *name;
        double flops_per_image; /* the convolutions', two per multiply-add; a backward as two forwards */
        double images_per_s;
    } pass[SR_BENCH_PASSES];
} sr_bench_result;

/* net is planned, not yet allocated: gives it random weights on be, times
 * each pass for at least `seconds` (after a warm-up) on batch images of
 * size x size, and frees what it allocated (the net too). */
void sr_bench_run(sr_unet *net, const sr_backend *be, int batch, int size, double seconds, sr_bench_result *out);

#endif
