#include "nn/bench.h"

#include <stdlib.h>

#include "core/arena.h"
#include "core/check.h"
#include "core/clock.h"
#include "core/rng.h"
#include "nn/adam.h"

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
    sr_be_gemm(c->net->be, false, false, n, n, n, 1.0f, a, n, b, n, 0.0f, out, n);
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
    sr_be_axpby(be, count, scale, sr_unet_output(wk), 0.0f, wk->d_output);
    sr_be_axpby(be, count, -scale, c->clean, 1.0f, wk->d_output);
    sr_be_zero(be, c->grad, c->net->param_floats * sizeof(float));
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
    sr_be_sync(ctx->net->be);
    int calls = 0;
    const double start = sr_seconds();
    double elapsed;
    do {
        pass(ctx);
        sr_be_sync(ctx->net->be);
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
    sr_be_to_device(be, dev, host, count * sizeof(float));
    free(host);
}

void sr_bench_run(sr_unet *net, const sr_backend *be, int batch, int size, double seconds, sr_bench_result *out)
{
    sr_unet_alloc(net, be);
    sr_unet_init_weights(net, 1);
    sr_unet_work wk;
    sr_unet_work_init(&wk, net, batch, size, size, true);
    sr_adam adam;
    sr_adam_init(&adam, net, 1e-3f);
    sr_arena scratch;
    const size_t images = sr_unet_image_floats(&wk);
    const int gemm_n = 2048;
    const size_t gemm_floats = 3 * (size_t)gemm_n * gemm_n;
    sr_arena_init(&scratch, be, (net->param_floats + images + gemm_floats) * sizeof(float) + 256,
                  "the benchmark's buffers");
    float *grad = sr_arena_floats(&scratch, net->param_floats);
    float *clean = sr_arena_floats(&scratch, images);
    float *gemm = sr_arena_floats(&scratch, gemm_floats);
    fill_uniform(be, gemm, gemm_floats, 1, -1.0f, 1.0f);
    fill_uniform(be, clean, images, 2, 0.0f, 1.0f);
    fill_uniform(be, wk.staging, images, 3, 0.0f, 1.0f);
    sr_be_nchw_to_cnhw(be, wk.staging, batch, net->shape.in_channels, size * size, sr_unet_input(&wk));
    fill_uniform(be, wk.d_means, sr_unet_means_count(&wk), 4, -0.01f, 0.01f);
    bench_ctx ctx = {.net = net, .wk = &wk, .adam = &adam, .grad = grad, .clean = clean,
                     .gemm = gemm, .gemm_n = gemm_n};

    const double fwd_mid = sr_unet_forward_flops(net, size, size, SR_UPTO_MID);
    const double fwd_all = sr_unet_forward_flops(net, size, size, SR_UPTO_OUTPUT);
    /* Nominal counts: a backward costs two forwards (weights and input); the
     * projection needs the input half only. */
    const struct {
        const char *name;
        pass_fn pass;
        double flops_per_image;
    } passes[SR_BENCH_PASSES] = {
        {"encoder+mid forward (phi)", pass_encoder_mid, fwd_mid},
        {"full forward D(y)", pass_full, fwd_all},
        {"training step (fwd+bwd+Adam)", pass_train, 3.0 * fwd_all},
        {"projection step (input grad)", pass_projection, 2.0 * fwd_mid},
    };
    out->gemm_n = gemm_n;
    out->sgemm_gflops = 2.0 * gemm_n * (double)gemm_n * gemm_n / time_pass(pass_sgemm, &ctx, seconds / 2) * 1e-9;
    for (int p = 0; p < SR_BENCH_PASSES; p++) {
        out->pass[p].name = passes[p].name;
        out->pass[p].flops_per_image = passes[p].flops_per_image;
        out->pass[p].images_per_s = batch / time_pass(passes[p].pass, &ctx, seconds);
    }
    sr_arena_release(&scratch);
    sr_adam_free(&adam);
    sr_unet_work_free(&wk);
    sr_unet_free(net);
}
