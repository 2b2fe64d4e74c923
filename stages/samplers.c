#include "stages/samplers.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/rng.h"

void sr_samples_alloc(sr_samples *o, int b, size_t per_image)
{
    o->b = b;
    o->x = SR_MALLOC(sizeof(float) * per_image * (size_t)b, "a batch's samples");
    o->steps = SR_CALLOC((size_t)b, sizeof(int), "the samples' steps");
    o->failed = SR_CALLOC((size_t)b, sizeof(int), "the samples' failures");
    o->reason = SR_CALLOC((size_t)b, SR_REASON_LEN, "the samples' reasons");
}

void sr_samples_free(sr_samples *o)
{
    free(o->x), free(o->steps), free(o->failed), free(o->reason);
    memset(o, 0, sizeof *o);
}

/* ---- the projection ------------------------------------------------------ */

/* One iteration's losses, on the host: each active sample's L and the
 * gradient of L by its middle-block means (zero for the others), which
 * stops (and drops out) when L falls below stop_ratio of its first. True
 * when a sample stopped. */
static bool mid_gradient(const sr_sampler *s, const semrep_conf *conf, int it, const float *abar_all,
                         const float *want_all, uint8_t *active, double *first, int *nactive, float *dmeans)
{
    const int K = s->kmid;
    bool stopped = false;
    for (int i = 0; i < s->wk->n; i++) {
        float *dm = dmeans + (size_t)i * K;
        const float *abar = abar_all + (size_t)i * K, *want = want_all + (size_t)i * K;
        double loss = 0.0;
        for (int ch = 0; ch < K; ch++) {
            const double e = (double)abar[ch] - want[ch];
            loss += s->mask[ch] * e * e / s->masked;
            dm[ch] = active[i] ? (float)(2.0 * s->mask[ch] * e / s->masked) : 0.0f;
        }
        if (!active[i]) continue;
        if (it == 0) first[i] = loss;
        else if (loss < conf->reconstruct.stop_ratio * first[i]) {
            active[i] = 0, stopped = true;
            (*nactive)--;
            memset(dm, 0, sizeof(float) * K);
        }
    }
    return stopped;
}

/* Adam starts afresh at every call. y and Adam's moments stay where the
 * engine runs (the input buffer holds y); each iteration brings back only
 * the middle block's means and sends back their gradient. */
void sr_project(const sr_sampler *s, const semrep_conf *conf, float *y, const float *want, const bool *frozen)
{
    const sr_backend *be = s->net->be;
    sr_unet_work *wk = s->wk;
    const int b = wk->n;
    const size_t count = s->per_image * b, nmid = (size_t)b * s->kmid;
    const size_t mid_at = (size_t)b * s->net->block_offset[s->net->shape.levels];
    float *moments = sr_be_alloc(be, 2 * sizeof(float) * count);
    uint8_t *d_active = sr_be_alloc(be, (size_t)b);
    if (!moments || !d_active)
        SR_FAIL("the %s backend has no room for the projection's Adam moments (%zu bytes); lower reconstruct.batch",
                sr_be_name(be), 2 * sizeof(float) * count);
    sr_be_zero(be, moments, 2 * sizeof(float) * count);
    sr_be_zero(be, wk->d_means, sizeof(float) * sr_unet_means_count(wk)); /* only the middle block's are sent */
    float *abar = SR_MALLOC(sizeof(float) * nmid, "the projection's means");
    float *dmeans = SR_MALLOC(sizeof(float) * nmid, "the projection's means");
    double *first = SR_MALLOC(sizeof(double) * b, "the projection");
    uint8_t *active = SR_MALLOC((size_t)b, "the projection");
    int nactive = 0;
    for (int i = 0; i < b; i++) nactive += active[i] = !frozen[i];
    sr_be_to_device(be, d_active, active, (size_t)b);
    float *x = sr_unet_input(wk);
    sr_unet_put_images(wk, y, x);
    for (int it = 0; it < conf->reconstruct.max_iter && nactive; it++) {
        sr_unet_forward(s->net, wk, SR_UPTO_MID);
        sr_be_to_host(be, abar, wk->means + mid_at, sizeof(float) * nmid);
        const bool stopped = mid_gradient(s, conf, it, abar, want, active, first, &nactive, dmeans);
        if (!nactive) break;
        sr_be_to_device(be, wk->d_means + mid_at, dmeans, sizeof(float) * nmid);
        if (stopped) sr_be_to_device(be, d_active, active, (size_t)b);
        sr_unet_backward(s->net, wk, SR_UPTO_MID, NULL, wk->d_means, NULL, true);
        sr_be_adam_masked(be, x, sr_unet_input_grad(wk), moments, moments + count, s->channels, b, s->size * s->size,
                        d_active, conf->reconstruct.lr, 0.9f, 0.999f, 1e-8f, it + 1);
    }
    sr_unet_get_images(wk, x, y);
    sr_be_release(be, moments), sr_be_release(be, d_active);
    free(abar), free(dmeans), free(first), free(active);
}

/* ---- the samplers ---------------------------------------------------------- */

/* The noise of a sample at a step: a pure function of (seed, target, sample, step). */
static sr_rng_stream noise(const semrep_conf *conf, long pair, uint32_t step)
{
    const int S = conf->reconstruct.samples;
    return (sr_rng_stream){.seed = (uint32_t)conf->seed, .domain = SR_RNG_RECON, .i0 = (uint32_t)(pair / S),
                           .i1 = (uint32_t)(pair % S), .i2 = step};
}

static bool finite_image(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return false;
    return true;
}

/* A test hook (tests/stages/test_reconstruct.sh): SEMREP_TEST_NAN=PAIR:STEP
 * puts a NaN into sample PAIR as step STEP begins, to show that a sample
 * that goes wrong stops alone, the others go on, and it is reported. */
static void inject_test_nan(long p0, int b, int step, float *y, size_t per_image)
{
    const char *hook = getenv("SEMREP_TEST_NAN");
    long pair;
    int at;
    if (hook && sscanf(hook, "%ld:%d", &pair, &at) == 2 && at == step && pair >= p0 && pair < p0 + b)
        y[(size_t)(pair - p0) * per_image] = NAN;
}

void sr_sample_fixed(const sr_sampler *s, const semrep_conf *conf, sr_samples *o)
{
    const int b = o->b, steps = conf->reconstruct.steps;
    const size_t n = s->per_image;
    float *y = SR_MALLOC(sizeof(float) * n * b, "the samples");
    float *want = SR_MALLOC(sizeof(float) * (size_t)b * s->kmid, "the samples' targets");
    double *sigmas = SR_MALLOC(sizeof(double) * b, "the samples' sigma");
    bool *frozen = SR_CALLOC((size_t)b, sizeof(bool), "the samples' frozen marks");
    for (int i = 0; i < b; i++) memcpy(o->x + (size_t)i * n, s->mean_image, sizeof(float) * n);
    for (int k = 0; k < steps; k++) {
        const double sigma = steps == 1 ? conf->reconstruct.sigma_max
                                        : conf->reconstruct.sigma_max +
                                              (conf->reconstruct.sigma_min - conf->reconstruct.sigma_max) * k / (steps - 1);
        for (int i = 0; i < b; i++) sigmas[i] = sigma;
        s->target_phi(s->ctx, sigmas, frozen, want);
        for (int i = 0; i < b; i++) {
            const sr_rng_stream st = noise(conf, s->p0 + i, (uint32_t)k);
            sr_rng_add_gaussian(&st, o->x + (size_t)i * n, (float)sigma, n, y + (size_t)i * n);
        }
        inject_test_nan(s->p0, b, k + 1, y, n);
        sr_project(s, conf, y, want, frozen);
        sr_unet_denoise(s->net, s->wk, y, o->x);
        for (int i = 0; i < b; i++) {
            if (frozen[i] || finite_image(o->x + (size_t)i * n, n)) continue;
            frozen[i] = true;
            o->failed[i] = 1;
            snprintf(o->reason[i], SR_REASON_LEN, "not finite after step %d (sigma %.3g)", k + 1, sigma);
        }
    }
    for (int i = 0; i < b; i++) o->steps[i] = steps;
    free(y), free(want), free(sigmas), free(frozen);
}

/* One adaptive step of sample i after the denoiser (d holds D(y)): its
 * sigma, and either its end (true) or y += h d + gamma z. */
static bool adaptive_step(const sr_sampler *s, const semrep_conf *conf, int i, int t, double h, float *y, float *d,
                          double *sigma, float *z, sr_samples *o)
{
    const size_t n = s->per_image;
    const double beta = s->target_phi ? conf->reconstruct.beta : conf->reconstruct.beta_unconditional;
    float *yi = y + (size_t)i * n, *di = d + (size_t)i * n;
    double sq = 0.0;
    for (size_t p = 0; p < n; p++) {
        di[p] -= yi[p];
        sq += (double)di[p] * di[p];
    }
    sigma[i] = sqrt(sq / n);
    if (!isfinite(sigma[i])) {
        o->failed[i] = 1, o->steps[i] = t;
        snprintf(o->reason[i], SR_REASON_LEN, "not finite at step %d", t);
        return true;
    }
    if (sigma[i] < conf->reconstruct.sigma_l) {
        o->steps[i] = t;
        for (size_t p = 0; p < n; p++) o->x[(size_t)i * n + p] = yi[p] + di[p];
        return true;
    }
    const double gamma = sigma[i] * sqrt(fmax((1 - beta * h) * (1 - beta * h) - (1 - h) * (1 - h), 0.0));
    const sr_rng_stream st = noise(conf, s->p0 + i, (uint32_t)t);
    sr_rng_gaussian(&st, 0, n, z);
    for (size_t p = 0; p < n; p++) yi[p] += (float)(h * di[p] + gamma * z[p]);
    return false;
}

void sr_sample_adaptive(const sr_sampler *s, const semrep_conf *conf, sr_samples *o)
{
    const int b = o->b;
    const size_t n = s->per_image;
    const double h0 = conf->reconstruct.h0;
    float *y = SR_MALLOC(sizeof(float) * n * b, "the samples");
    float *d = SR_MALLOC(sizeof(float) * n * b, "the samples' denoised");
    float *z = SR_MALLOC(sizeof(float) * n, "noise");
    float *want = SR_CALLOC((size_t)b * s->kmid, sizeof(float), "the samples' targets");
    double *sigma = SR_MALLOC(sizeof(double) * b, "the samples' sigma");
    bool *frozen = SR_CALLOC((size_t)b, sizeof(bool), "the samples' frozen marks");
    int active = b, t = 1;
    for (int i = 0; i < b; i++) {
        const sr_rng_stream st = noise(conf, s->p0 + i, 0);
        sr_rng_add_gaussian(&st, s->mean_image, (float)conf->reconstruct.sigma0, n, y + (size_t)i * n);
        sigma[i] = conf->reconstruct.sigma0;
    }
    for (; active && t <= conf->reconstruct.max_steps; t++) {
        const double h = h0 * t / (1.0 + h0 * (t - 1));
        if (s->target_phi) { /* each sample's target at its own sigma */
            s->target_phi(s->ctx, sigma, frozen, want);
            sr_project(s, conf, y, want, frozen);
        }
        inject_test_nan(s->p0, b, t, y, n);
        sr_unet_denoise(s->net, s->wk, y, d);
        for (int i = 0; i < b; i++)
            if (!frozen[i] && adaptive_step(s, conf, i, t, h, y, d, sigma, z, o)) frozen[i] = true, active--;
    }
    for (int i = 0; i < b; i++)
        if (!frozen[i]) {
            o->failed[i] = 1, o->steps[i] = t - 1;
            snprintf(o->reason[i], SR_REASON_LEN, "still at sigma %.3g after %d steps (reconstruct.max_steps)",
                     sigma[i], t - 1);
            memcpy(o->x + (size_t)i * n, y + (size_t)i * n, sizeof(float) * n);
        }
    free(y), free(d), free(z), free(want), free(sigma), free(frozen);
}
