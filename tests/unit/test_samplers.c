/* The samplers of stages/samplers.h against SPEC.md section 6's formulas,
 * composed here from the engine (tested against PyTorch elsewhere) and the
 * documented noise streams, on a tiny random net:
 *   - one step of the fixed sampler is x = D(P(m + sigma z)), P's first
 *     Adam step being y - lr g / (|g| + eps), g the gradient of
 *     mean_c (abar_mid(y)_c - phi*_c)^2 by the pixels;
 *   - one step of the adaptive sampler is y + h d + gamma z, d = D(y) - y,
 *     sigma = |d| / sqrt(N), gamma = sigma sqrt((1 - beta h)^2 - (1 - h)^2),
 *     and it stops with D(y) once sigma is below sigma_l. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "io/conf.h"
#include "stages/samplers.h"
#include "test_util.h"

#define B 2
static char err[1024];
static semrep_conf conf;
static sr_unet net;
static sr_unet_work wk;
static int size, kmid;
static size_t per_image;
static float *mean_image, *mask, *want;

static void setup(char *const *sets, int nsets)
{
    CU_ASSERT_FATAL(sr_conf_load(&conf, SEMREP_FIXTURES "/../../conf/tiny-test.conf", nsets, sets, err,
                                 sizeof err) == 0);
    const sr_unet_shape shape = sr_conf_shape(&conf);
    CU_ASSERT_FATAL(sr_unet_plan(&net, &shape, err, sizeof err) == 0);
    static sr_backend *cpu; /* one for every test, kept while the program runs */
    if (!cpu) cpu = sr_backend_cpu_new(1);
    sr_unet_alloc(&net, cpu);
    sr_unet_init_weights(&net, 7);
    size = conf.dataset.size;
    per_image = (size_t)size * size;
    kmid = sr_unet_block_channels(&net.shape, net.shape.levels);
    sr_unet_work_init(&wk, &net, B, size, size, true);
    mean_image = malloc(sizeof(float) * per_image);
    mask = malloc(sizeof(float) * kmid);
    want = malloc(sizeof(float) * B * kmid);
    for (size_t p = 0; p < per_image; p++) mean_image[p] = 0.3f + 0.2f * (float)(p % 7) / 7.0f;
    for (int c = 0; c < kmid; c++) mask[c] = 1.0f;
    for (int i = 0; i < B * kmid; i++) want[i] = 0.05f * (float)(i % 5);
}

static void teardown(void)
{
    sr_unet_work_free(&wk);
    sr_unet_free(&net);
    free(mean_image), free(mask), free(want);
    sr_conf_free(&conf);
}

static void fixed_targets(void *ctx, const double *sigma, const bool *frozen, float *out)
{
    (void)ctx, (void)sigma, (void)frozen;
    memcpy(out, want, sizeof(float) * B * kmid);
}

static sr_sampler sampler(bool conditional)
{
    return (sr_sampler){.net = &net, .wk = &wk, .channels = 1, .size = size, .kmid = kmid, .per_image = per_image,
                        .mask = mask, .masked = kmid, .mean_image = mean_image, .p0 = 0,
                        .target_phi = conditional ? fixed_targets : NULL};
}

/* The batch of B samples the sampler under test makes. */
static void sample(bool adaptive, bool conditional, sr_samples *o)
{
    const sr_sampler s = sampler(conditional);
    sr_samples_alloc(o, B, per_image);
    if (adaptive) sr_sample_adaptive(&s, &conf, o);
    else sr_sample_fixed(&s, &conf, o);
}

static sr_rng_stream stream(long pair, uint32_t step)
{
    const int S = conf.reconstruct.samples;
    return (sr_rng_stream){.seed = (uint32_t)conf.seed, .domain = SR_RNG_RECON, .i0 = (uint32_t)(pair / S),
                           .i1 = (uint32_t)(pair % S), .i2 = step};
}

static double max_difference(const float *a, const float *b, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) worst = fmax(worst, fabs((double)a[i] - b[i]));
    return worst;
}

/* g: the gradient by y's pixels of mean_c (abar_mid(y)_c - want_c)^2, for each image. */
static void projection_gradient(const float *y, float *g)
{
    const int mid = net.shape.levels;
    const size_t at = (size_t)B * net.block_offset[mid];
    sr_unet_put_images(&wk, y, sr_unet_input(&wk));
    sr_unet_forward(&net, &wk, SR_UPTO_MID);
    memset(wk.d_means, 0, sizeof(float) * sr_unet_means_count(&wk));
    for (int i = 0; i < B * kmid; i++) wk.d_means[at + i] = 2.0f * (wk.means[at + i] - want[i]) / (float)kmid;
    sr_unet_backward(&net, &wk, SR_UPTO_MID, NULL, wk.d_means, NULL, true);
    sr_unet_get_images(&wk, sr_unet_input_grad(&wk), g);
}

static void test_fixed_one_step(void)
{
    char *sets[] = {"reconstruct.steps=1", "reconstruct.sigma_max=0.3", "reconstruct.max_iter=1",
                    "reconstruct.stop_ratio=0.0", "reconstruct.samples=2", "reconstruct.lr=0.01"};
    setup(sets, 6);
    const size_t n = per_image * B;
    float *y = malloc(sizeof(float) * n), *g = malloc(sizeof(float) * n), *x = malloc(sizeof(float) * n);
    for (int i = 0; i < B; i++) {
        const sr_rng_stream st = stream(i, 0);
        sr_rng_add_gaussian(&st, mean_image, 0.3f, per_image, y + i * per_image);
    }
    projection_gradient(y, g);
    for (size_t p = 0; p < n; p++) y[p] -= (float)(0.01 * g[p] / (fabs(g[p]) + 1e-8));
    sr_unet_denoise(&net, &wk, y, x);

    sr_samples o;
    sample(false, true, &o);
    const double d = max_difference(o.x, x, n);
    printf("\n    fixed sampler, one step: largest difference from D(P(m + sigma z)) %.3g\n", d);
    CU_ASSERT(d < 1e-5);
    CU_ASSERT(o.steps[0] == 1 && o.failed[0] == 0 && o.failed[1] == 0);
    sr_samples_free(&o);
    free(y), free(g), free(x);
    teardown();
}

/* y0 = m + sigma0 z (step 0), d = D(y0) - y0: the reference's first step. */
static double adaptive_start(float *y, float *d)
{
    const size_t n = per_image * B;
    for (int i = 0; i < B; i++) {
        const sr_rng_stream st = stream(i, 0);
        sr_rng_add_gaussian(&st, mean_image, (float)conf.reconstruct.sigma0, per_image, y + i * per_image);
    }
    sr_unet_denoise(&net, &wk, y, d);
    for (size_t p = 0; p < n; p++) d[p] -= y[p];
    double sq = 0.0;
    for (size_t p = 0; p < per_image; p++) sq += (double)d[p] * d[p];
    return sqrt(sq / per_image); /* sample 0's sigma */
}

static void test_adaptive_one_step(void)
{
    char *sets[] = {"reconstruct.sampler=\"unconditional\"", "reconstruct.sigma0=0.5", "reconstruct.h0=0.2",
                    "reconstruct.beta_unconditional=0.5", "reconstruct.max_steps=1", "reconstruct.sigma_l=1e-9",
                    "reconstruct.samples=2"};
    setup(sets, 7);
    const size_t n = per_image * B;
    float *y = malloc(sizeof(float) * n), *d = malloc(sizeof(float) * n), *z = malloc(sizeof(float) * per_image);
    adaptive_start(y, d);
    const double h = 0.2, beta = 0.5;
    for (int i = 0; i < B; i++) {
        double sq = 0.0;
        for (size_t p = 0; p < per_image; p++) sq += (double)d[i * per_image + p] * d[i * per_image + p];
        const double sigma = sqrt(sq / per_image);
        const double gamma = sigma * sqrt((1 - beta * h) * (1 - beta * h) - (1 - h) * (1 - h));
        const sr_rng_stream st = stream(i, 1);
        sr_rng_gaussian(&st, 0, per_image, z);
        for (size_t p = 0; p < per_image; p++) y[i * per_image + p] += (float)(h * d[i * per_image + p] + gamma * z[p]);
    }
    sr_samples o;
    sample(true, false, &o);
    const double diff = max_difference(o.x, y, n);
    printf("\n    adaptive sampler, one step: largest difference from y + h d + gamma z %.3g\n", diff);
    CU_ASSERT(diff < 1e-6);
    CU_ASSERT(o.failed[0] == 1 && o.steps[0] == 1 && strstr(o.reason[0], "reconstruct.max_steps"));
    sr_samples_free(&o);
    free(y), free(d), free(z);
    teardown();
}

/* With sigma_l above the first sigma the sampler stops at once with D(y0). */
static void test_adaptive_stops(void)
{
    char *sets[] = {"reconstruct.sampler=\"unconditional\"", "reconstruct.sigma0=0.5", "reconstruct.sigma_l=10.0",
                    "reconstruct.samples=2"};
    setup(sets, 4);
    const size_t n = per_image * B;
    float *y = malloc(sizeof(float) * n), *d = malloc(sizeof(float) * n);
    adaptive_start(y, d);
    for (size_t p = 0; p < n; p++) y[p] += d[p];
    sr_samples o;
    sample(true, false, &o);
    CU_ASSERT(max_difference(o.x, y, n) < 1e-6);
    CU_ASSERT(o.failed[0] == 0 && o.failed[1] == 0 && o.steps[0] == 1 && o.steps[1] == 1);
    sr_samples_free(&o);
    free(y), free(d);
    teardown();
}

int main(void)
{
    const sr_test tests[] = {
        {"one step of the fixed sampler is D(P(m + sigma z)) with one Adam step", test_fixed_one_step},
        {"one step of the adaptive sampler is y + h d + gamma z", test_adaptive_one_step},
        {"the adaptive sampler stops with D(y) below sigma_l", test_adaptive_stops},
        {NULL, NULL},
    };
    return sr_test_run("samplers", tests);
}
