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
#include "nn/unet.h"

typedef struct {
    const char *shape_name;
    int batch, threads, size;
    double seconds; /* least time per measurement */
} bench_opts;

typedef struct {
    sr_unet *net;
    sr_unet_work *wk;
    sr_adam *adam;
    float *grad, *clean;
    sr_arena *gemm;
    int gemm_n;
} bench_ctx;

typedef void (*pass_fn)(bench_ctx *ctx);

static void pass_sgemm(bench_ctx *c)
{
    const int n = c->gemm_n;
    float *a = (float *)c->gemm->base, *b = a + (size_t)n * n, *out = b + (size_t)n * n;
    c->net->be->gemm(false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, out, n);
}

static void pass_encoder_mid(bench_ctx *c) { sr_unet_forward(c->net, c->wk, SR_UPTO_MID); }
static void pass_full(bench_ctx *c) { sr_unet_forward(c->net, c->wk, SR_UPTO_OUTPUT); }

/* forward, d loss / d output of sum (D(y) - x)^2 / n, backward, Adam */
static void pass_train(bench_ctx *c)
{
    const sr_backend *be = c->net->be;
    sr_unet_work *wk = c->wk;
    const size_t count = (size_t)wk->n * c->net->shape.in_channels * wk->h * wk->w;
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

void sr_cmd_bench_help(void)
{
    puts("usage: semrep bench [--shape default|paper] [--batch N] [--threads N] [--seconds S]\n"
         "  --shape    SPEC.md's default (1x32x32) or paper (3x64x64) UNet   [default]\n"
         "  --batch    images per pass                                        [64]\n"
         "  --threads  threads per rank (0: the node's cores shared by its ranks) [0]\n"
         "  --seconds  least time per measurement                             [2]");
}

static int parse(int argc, char **argv, bench_opts *o)
{
    for (int i = 1; i < argc; i++) {
        const char *key = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(key, "--help")) return 1;
        if (!val) return fprintf(stderr, "semrep bench: error: %s needs a value\n", key), -1;
        i++;
        if (!strcmp(key, "--shape")) o->shape_name = val;
        else if (!strcmp(key, "--batch")) o->batch = (int)strtol(val, &end, 10);
        else if (!strcmp(key, "--threads")) o->threads = (int)strtol(val, &end, 10);
        else if (!strcmp(key, "--seconds")) o->seconds = strtod(val, &end);
        else return fprintf(stderr, "semrep bench: error: unknown option %s\n", key), -1;
        if (end && *end) return fprintf(stderr, "semrep bench: error: %s %s is not a number\n", key, val), -1;
    }
    if (strcmp(o->shape_name, "default") && strcmp(o->shape_name, "paper"))
        return fprintf(stderr, "semrep bench: error: --shape must be default or paper\n"), -1;
    if (o->batch < 1 || o->batch > 4096 || o->threads < 0 || o->seconds <= 0)
        return fprintf(stderr, "semrep bench: error: --batch 1..4096, --threads >= 0, --seconds > 0\n"), -1;
    return 0;
}

int sr_cmd_bench(int argc, char **argv, semrep_comm *comm)
{
    bench_opts o = {.shape_name = "default", .batch = 64, .threads = 0, .seconds = 2.0};
    const int parsed = parse(argc, argv, &o);
    if (parsed) {
        if (comm->rank == 0) sr_cmd_bench_help();
        return parsed > 0 ? SR_EXIT_OK : SR_EXIT_USAGE;
    }
    const sr_unet_shape shape = strcmp(o.shape_name, "paper") ? sr_unet_shape_default() : sr_unet_shape_paper();
    const int size = strcmp(o.shape_name, "paper") ? 32 : 64;
    const int threads = o.threads ? o.threads : sr_comm_default_threads(comm);
    const sr_backend *be = sr_backend_cpu(threads);

    sr_unet net;
    char err[256];
    if (sr_unet_plan(&net, &shape, err, sizeof err)) SR_FAIL("%s", err);
    sr_unet_alloc(&net, be);
    sr_unet_init_weights(&net, 1);
    sr_unet_work wk;
    sr_unet_work_init(&wk, &net, o.batch, size, size, true);
    sr_adam adam;
    sr_adam_init(&adam, &net, 1e-3f);
    sr_arena scratch;
    const size_t images = (size_t)o.batch * shape.in_channels * size * size;
    const int gemm_n = 2048;
    const size_t gemm_floats = 3 * (size_t)gemm_n * gemm_n;
    sr_arena_init(&scratch, be, (net.param_floats + images + gemm_floats) * sizeof(float) + 256,
                  "the benchmark's buffers");
    float *grad = sr_arena_floats(&scratch, net.param_floats);
    float *clean = sr_arena_floats(&scratch, images);
    sr_arena gemm = {.be = be, .base = (char *)sr_arena_floats(&scratch, gemm_floats)};
    fill_uniform(be, (float *)gemm.base, gemm_floats, 1, -1.0f, 1.0f);
    fill_uniform(be, clean, images, 2, 0.0f, 1.0f);
    fill_uniform(be, wk.staging, images, 3, 0.0f, 1.0f);
    be->nchw_to_cnhw(wk.staging, o.batch, shape.in_channels, size * size, sr_unet_input(&wk));
    fill_uniform(be, wk.d_means, sr_unet_means_count(&wk), 4, -0.01f, 0.01f);
    bench_ctx ctx = {.net = &net, .wk = &wk, .adam = &adam, .grad = grad, .clean = clean,
                     .gemm = &gemm, .gemm_n = gemm_n};

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
    mine[0] = gemm_flops / time_pass(pass_sgemm, &ctx, o.seconds / 2) * 1e-9;
    for (int p = 0; p < NPASS; p++) mine[1 + p] = o.batch / time_pass(passes[p].pass, &ctx, o.seconds);
    memcpy(sum, mine, sizeof mine);
    memcpy(slowest, mine, sizeof mine);
    sr_comm_sum(comm, sum, 1 + NPASS);
    sr_comm_min(comm, slowest, 1 + NPASS);

    if (comm->rank == 0) {
        char blas[256];
        be->describe(blas, sizeof blas);
        const char *coretype = getenv("OPENBLAS_CORETYPE");
        printf("semrep bench: shape %s (%dx%dx%d, %zu parameters), batch %d\n", o.shape_name,
               shape.in_channels, size, size, net.trainable_count, o.batch);
        printf("  %d rank(s) x %d thread(s); backend %s: %s; OPENBLAS_CORETYPE=%s\n", comm->size, threads,
               be->name, blas, coretype ? coretype : "(unset)");
        printf("  sgemm %d^3: %.1f GFLOP/s per rank (slowest rank %.1f)\n", gemm_n, sum[0] / comm->size, slowest[0]);
        printf("  %-30s %12s %10s %10s %14s\n", "pass", "images/s", "GFLOP/s", "of sgemm", "slowest rank");
        for (int p = 0; p < NPASS; p++) {
            const double gflops = sum[1 + p] * passes[p].flops_per_image * 1e-9;
            printf("  %-30s %12.1f %10.1f %9.0f%% %12.1f/s\n", passes[p].name, sum[1 + p], gflops,
                   100.0 * gflops / sum[0], slowest[1 + p]);
        }
        printf("  (images/s and GFLOP/s summed over ranks; GFLOP counts the convolutions' multiply-adds,\n"
               "   a backward as two forwards)\n");
    }
    sr_arena_release(&scratch);
    sr_adam_free(&adam);
    sr_unet_work_free(&wk);
    sr_unet_free(&net);
    return SR_EXIT_OK;
}
