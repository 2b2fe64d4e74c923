/* The engine's passes on the CUDA backend, for tests/gpu/check.sh: a
 * one-process program that needs neither MPI nor NetCDF (the GPU machine
 * has neither), timing what `semrep bench` times.
 *
 *   bench_gpu [default|paper] [batch] [fp32|tf32|bf16] [seconds] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/bench.h"

int main(int argc, char **argv)
{
    const bool paper = argc > 1 && !strcmp(argv[1], "paper");
    const int batch = argc > 2 ? atoi(argv[2]) : 256;
    const char *math = argc > 3 ? argv[3] : "fp32";
    const double seconds = argc > 4 ? atof(argv[4]) : 2.0;
    if (batch < 1) {
        fprintf(stderr, "bench_gpu: batch must be a positive number, not \"%s\"\n", argv[2]);
        return 2;
    }
    char err[256];
    const sr_backend_request request = {.name = "cuda", .gpu_math = math};
    sr_backend *be = sr_backend_select(&request, err, sizeof err);
    if (!be) {
        fprintf(stderr, "bench_gpu: %s\n", err);
        return 1;
    }
    const sr_unet_shape shape = paper ? sr_unet_shape_paper() : sr_unet_shape_default();
    const int size = paper ? 64 : 32;
    sr_unet net;
    if (sr_unet_plan(&net, &shape, err, sizeof err)) {
        fprintf(stderr, "bench_gpu: %s\n", err);
        sr_backend_free(be);
        return 1;
    }
    const size_t params = net.trainable_count;
    sr_bench_result r;
    sr_bench_run(&net, be, batch, size, seconds, &r);
    char text[256];
    sr_be_describe(be, text, sizeof text);
    printf("semrep bench_gpu: %s shape %dx%dx%d, %zu parameters, batch %d\n  %s\n", paper ? "paper" : "default",
           shape.in_channels, size, size, params, batch, text);
    printf("  sgemm %d^3: %.1f TFLOP/s\n", r.gemm_n, r.sgemm_gflops * 1e-3);
    for (int p = 0; p < SR_BENCH_PASSES; p++)
        printf("  %-30s %12.1f images/s %8.2f TFLOP/s\n", r.pass[p].name, r.pass[p].images_per_s,
               r.pass[p].images_per_s * r.pass[p].flops_per_image * 1e-12);
    sr_backend_free(be);
    return 0;
}
