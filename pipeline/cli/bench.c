/* semrep bench: images/s and GFLOP/s of the engine's four passes at one
 * batch size, beside the GFLOP/s of one large sgemm in the same run, so the
 * figures read as a share of what the machine's GEMM can do. Every rank
 * measures its own copy; rank 0 prints the sum over ranks and the slowest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "io/checkpoint.h"
#include "nn/bench.h"
#include "stages/model.h"

int sr_cmd_bench(int argc, char **argv, semrep_comm *comm)
{
    static const char usage[] =
        "usage: semrep bench [CONF] [--set KEY=VALUE]... [--batch N] [--threads N] [--seconds S]\n"
        "  CONF       the model to measure (its shape and image size); none: the embedded default\n"
        "  --batch    images per pass                                     [64]\n"
        "  --threads  threads per rank (0: the node's cores shared by its ranks) [the conf's threads]\n"
        "  --seconds  least time per measurement                          [2]\n";
    static const char *const options[] = {"--batch", "--threads", "--seconds", NULL};
    sr_args args;
    int done, status = sr_cli_args(argc, argv, options, 0, 1, usage, comm, &args, &done);
    if (status || done) return status;
    char err[1024];
    int batch, threads;
    double seconds;
    if (sr_args_int(&args, "--batch", 64, &batch, err, sizeof err) ||
        sr_args_int(&args, "--threads", -1, &threads, err, sizeof err) ||
        sr_args_double(&args, "--seconds", 2.0, &seconds, err, sizeof err))
        return sr_comm_error(comm, SR_EXIT_USAGE, "semrep bench: %s", err);
    if (batch < 1 || batch > 65536 || (sr_args_get(&args, "--threads") && threads < 0) || !(seconds > 0 && seconds < 3600))
        return sr_comm_error(comm, SR_EXIT_USAGE, "semrep bench: --batch 1..65536, --threads >= 0, --seconds in (0, 3600)");
    semrep_conf conf;
    if ((status = sr_cli_conf(args.npositional ? args.positional[0] : NULL, &args, comm, &conf))) return status;
    const sr_backend *be = sr_stage_backend(&conf, comm, threads < 0 ? 0 : threads, err, sizeof err);
    if (!be) return sr_comm_error(comm, SR_EXIT_FAILED, "%s", err);
    const sr_unet_shape shape = sr_conf_shape(&conf);
    const int size = conf.dataset.size;
    const char *model_name = conf.source[0] ? conf.source : "the embedded default";

    sr_unet net;
    if (sr_model_plan(&conf, be, batch, true, &net, err, sizeof err)) {
        sr_conf_free(&conf);
        return sr_comm_error(comm, SR_EXIT_FAILED, "%s", err);
    }
    sr_conf_free(&conf);
    const size_t trainable = net.trainable_count;
    sr_bench_result result;
    sr_bench_run(&net, be, batch, size, seconds, &result);

    /* per rank: [0] sgemm GFLOP/s, [1 + p] images/s of pass p */
    enum { NPASS = SR_BENCH_PASSES };
    double mine[1 + NPASS], sum[1 + NPASS], slowest[1 + NPASS];
    mine[0] = result.sgemm_gflops;
    for (int p = 0; p < NPASS; p++) mine[1 + p] = result.pass[p].images_per_s;
    memcpy(sum, mine, sizeof mine);
    memcpy(slowest, mine, sizeof mine);
    sr_comm_sum(comm, sum, 1 + NPASS);
    sr_comm_min(comm, slowest, 1 + NPASS);

    if (comm->rank == 0) {
        char blas[256];
        sr_be_describe(be, blas, sizeof blas);
        const char *coretype = getenv("OPENBLAS_CORETYPE");
        char kernels[128];
        sr_format_ints(shape.kernels, shape.levels + 1, kernels, sizeof kernels);
        printf("semrep bench: %s: %dx%dx%d images, kernels %s, %zu parameters, batch %d\n", model_name,
               shape.in_channels, size, size, kernels, trainable, batch);
        printf("  %d rank(s); backend %s: %s; OPENBLAS_CORETYPE=%s\n", comm->size,
               sr_be_name(be), blas, coretype ? coretype : "(unset)");
        printf("  sgemm %d^3: %.1f GFLOP/s per rank (slowest rank %.1f)\n", result.gemm_n, sum[0] / comm->size,
               slowest[0]);
        printf("  %-30s %12s %10s %10s %14s\n", "pass", "images/s", "GFLOP/s", "of sgemm", "slowest rank");
        for (int p = 0; p < NPASS; p++) {
            const double gflops = sum[1 + p] * result.pass[p].flops_per_image * 1e-9;
            printf("  %-30s %12.1f %10.1f %9.0f%% %12.1f/s\n", result.pass[p].name, sum[1 + p], gflops,
                   100.0 * gflops / sum[0], slowest[1 + p]);
        }
        printf("  (images/s and GFLOP/s summed over ranks; GFLOP counts the convolutions as direct ones, two per\n"
               "   multiply-add, a backward as two forwards: Winograd's fewer products can pass 100%% of sgemm)\n");
    }
    return SR_EXIT_OK;
}
