/* semrep bench: images/s and GFLOP/s of the engine's four passes at one
 * batch size, beside the GFLOP/s of one large sgemm in the same run, so the
 * figures read as a share of what the machine's GEMM can do. Every rank
 * measures its own copy; rank 0 prints the sum over ranks and the slowest. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "core/arena.h"
#include "core/check.h"
#include "core/clock.h"
#include "core/rng.h"
#include "nn/adam.h"
#include "io/checkpoint.h"
#include "nn/unet.h"
#include "stages/model.h"

typedef struct {
    sr_unet *net;
    sr_unet_work *wk;
    sr_adam *adam;
    float *grad, *clean;
    float *gemm; /* three gemm_n x gemm_n matrices */
    int gemm_n;
} bench_ctx;

typedef void (*pass_fn)(bench_ctx *ctx);

static void pass_sgemm(bench_ctx *c)
{
    const int n = c->gemm_n;
    float *a = c->gemm, *b = a + (size_t)n * n, *out = b + (size_t)n * n;
    c->net->be->gemm(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, out, n);
}

static void pass_encoder_mid(bench_ctx *c) { sr_unet_forward(c->net, c->wk, SR_UPTO_MID); }
static void pass_full(bench_ctx *c) { sr_unet_forward(c->net, c->wk, SR_UPTO_OUTPUT); }

/* forward, d loss / d output of sum (D(y) - x)^2 / n, backward, Adam */
static void pass_train(bench_ctx *c)
{
    const sr_backend *be = c->net->be;
    sr_unet_work *wk = c->wk;
    const size_t count = sr_unet_image_floats(wk);
    const float scale = 2.0f / (float)wk->n;
    sr_unet_forward(c->net, wk, SR_UPTO_OUTPUT);
    be->axpby(count, scale, sr_unet_output(wk), 0.0f, wk->d_output);
    be->axpby(count, -scale, c->clean, 1.0f, wk->d_output);
    be->zero(c->grad, c->net->param_floats * sizeof(float));
    sr_unet_backward(c->net, wk, SR_UPTO_OUTPUT, wk->d_output, NULL, c->grad, false);
    sr_adam_step(c->adam, c->net, c->grad);
}

/* the reconstruction's inner step: abar_mid and its input gradient */
static void pass_projection(bench_ctx *c)
{
    sr_unet_forward(c->net, c->wk, SR_UPTO_MID);
    sr_unet_backward(c->net, c->wk, SR_UPTO_MID, NULL, c->wk->d_means, NULL, true);
}

/* Seconds per call: one warm-up, then calls until `least` seconds and 3 calls. */
static double time_pass(pass_fn pass, bench_ctx *ctx, double least)
{
    pass(ctx);
    ctx->net->be->sync();
    int calls = 0;
    const double start = sr_seconds();
    double elapsed;
    do {
        pass(ctx);
        ctx->net->be->sync();
        calls++;
        elapsed = sr_seconds() - start;
    } while (elapsed < least || calls < 3);
    return elapsed / calls;
}

static void fill_uniform(const sr_backend *be, float *dev, size_t count, unsigned stream, float lo, float hi)
{
    float *host = SR_MALLOC(count * sizeof(float), "benchmark data");
    const sr_rng_stream s = {.seed = 1, .domain = SR_RNG_TEST, .i0 = stream};
    sr_rng_uniform(&s, 0, count, host);
    for (size_t i = 0; i < count; i++) host[i] = lo + (hi - lo) * host[i];
    be->to_device(dev, host, count * sizeof(float));
    free(host);
}

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
    if (batch < 1 || batch > 65536 || threads < -1 || !(seconds > 0 && seconds < 3600))
        return sr_comm_error(comm, SR_EXIT_USAGE, "semrep bench: --batch 1..65536, --threads >= 0, --seconds in (0, 3600)");
    semrep_conf conf;
    if ((status = sr_cli_conf(args.npositional ? args.positional[0] : NULL, &args, comm, &conf))) return status;
    if (threads < 0) threads = conf.threads;
    if (threads == 0) threads = sr_comm_default_threads(comm);
    const sr_backend *be = sr_backend_select(conf.backend, threads, err, sizeof err);
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
    sr_unet_alloc(&net, be);
    sr_unet_init_weights(&net, 1);
    sr_unet_work wk;
    sr_unet_work_init(&wk, &net, batch, size, size, true);
    sr_adam adam;
    sr_adam_init(&adam, &net, 1e-3f);
    sr_arena scratch;
    const size_t images = sr_unet_image_floats(&wk);
    const int gemm_n = 2048;
    const size_t gemm_floats = 3 * (size_t)gemm_n * gemm_n;
    sr_arena_init(&scratch, be, (net.param_floats + images + gemm_floats) * sizeof(float) + 256,
                  "the benchmark's buffers");
    float *grad = sr_arena_floats(&scratch, net.param_floats);
    float *clean = sr_arena_floats(&scratch, images);
    float *gemm = sr_arena_floats(&scratch, gemm_floats);
    fill_uniform(be, gemm, gemm_floats, 1, -1.0f, 1.0f);
    fill_uniform(be, clean, images, 2, 0.0f, 1.0f);
    fill_uniform(be, wk.staging, images, 3, 0.0f, 1.0f);
    be->nchw_to_cnhw(wk.staging, batch, shape.in_channels, size * size, sr_unet_input(&wk));
    fill_uniform(be, wk.d_means, sr_unet_means_count(&wk), 4, -0.01f, 0.01f);
    bench_ctx ctx = {.net = &net, .wk = &wk, .adam = &adam, .grad = grad, .clean = clean,
                     .gemm = gemm, .gemm_n = gemm_n};

    const double fwd_mid = sr_unet_forward_flops(&net, size, size, SR_UPTO_MID);
    const double fwd_all = sr_unet_forward_flops(&net, size, size, SR_UPTO_OUTPUT);
    /* Nominal counts: a backward costs two forwards (weights and input); the
     * projection needs the input half only. */
    const struct {
        const char *name;
        pass_fn pass;
        double flops_per_image;
    } passes[] = {
        {"encoder+mid forward (phi)", pass_encoder_mid, fwd_mid},
        {"full forward D(y)", pass_full, fwd_all},
        {"training step (fwd+bwd+Adam)", pass_train, 3.0 * fwd_all},
        {"projection step (input grad)", pass_projection, 2.0 * fwd_mid},
    };
    enum { NPASS = sizeof passes / sizeof *passes };

    /* per rank: [0] sgemm GFLOP/s, [1 + p] images/s of pass p */
    double mine[1 + NPASS], sum[1 + NPASS], slowest[1 + NPASS];
    const double gemm_flops = 2.0 * gemm_n * (double)gemm_n * gemm_n;
    mine[0] = gemm_flops / time_pass(pass_sgemm, &ctx, seconds / 2) * 1e-9;
    for (int p = 0; p < NPASS; p++) mine[1 + p] = batch / time_pass(passes[p].pass, &ctx, seconds);
    memcpy(sum, mine, sizeof mine);
    memcpy(slowest, mine, sizeof mine);
    sr_comm_sum(comm, sum, 1 + NPASS);
    sr_comm_min(comm, slowest, 1 + NPASS);

    if (comm->rank == 0) {
        char blas[256];
        be->describe(blas, sizeof blas);
        const char *coretype = getenv("OPENBLAS_CORETYPE");
        char kernels[128];
        sr_format_ints(shape.kernels, shape.levels + 1, kernels, sizeof kernels);
        printf("semrep bench: %s: %dx%dx%d images, kernels %s, %zu parameters, batch %d\n", model_name,
               shape.in_channels, size, size, kernels, net.trainable_count, batch);
        printf("  %d rank(s) x %d thread(s); backend %s: %s; OPENBLAS_CORETYPE=%s\n", comm->size, threads,
               be->name, blas, coretype ? coretype : "(unset)");
        printf("  sgemm %d^3: %.1f GFLOP/s per rank (slowest rank %.1f)\n", gemm_n, sum[0] / comm->size, slowest[0]);
        printf("  %-30s %12s %10s %10s %14s\n", "pass", "images/s", "GFLOP/s", "of sgemm", "slowest rank");
        for (int p = 0; p < NPASS; p++) {
            const double gflops = sum[1 + p] * passes[p].flops_per_image * 1e-9;
            printf("  %-30s %12.1f %10.1f %9.0f%% %12.1f/s\n", passes[p].name, sum[1 + p], gflops,
                   100.0 * gflops / sum[0], slowest[1 + p]);
        }
        printf("  (images/s and GFLOP/s summed over ranks; GFLOP counts the convolutions, two per multiply-add;\n"
               "   a backward as two forwards)\n");
    }
    sr_arena_release(&scratch);
    sr_adam_free(&adam);
    sr_unet_work_free(&wk);
    sr_unet_free(&net);
    return SR_EXIT_OK;
}
