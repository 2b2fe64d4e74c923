/* The samplers of SPEC.md section 6 over one batch of samples: the
 * fixed-schedule sampler, the adaptive one (Kadkhodaie and Simoncelli
 * 2021), conditional with the projection or unconditional without it, and
 * the projection P(y, phi*) they share. The reconstruct stage brings the
 * targets' phi through a callback; tests/unit/test_samplers.c runs them on
 * a tiny net against SPEC.md's formulas. Settings: conf->reconstruct and
 * conf->seed. */
#ifndef SEMREP_STAGES_SAMPLERS_H
#define SEMREP_STAGES_SAMPLERS_H

#include <stdbool.h>
#include <stddef.h>

#include "io/conf.h"
#include "nn/unet.h"

#define SR_REASON_LEN 160

/* What a sampler makes for a batch of b samples. */
typedef struct {
    int b;
    float *x;                       /* [b][per_image] the samples */
    int *steps, *failed;            /* [b] steps taken; 1: failed, with its reason */
    char (*reason)[SR_REASON_LEN];
} sr_samples;

typedef struct {
    const sr_unet *net;
    sr_unet_work *wk;               /* b images, gradient mode (sr_unet_work_init with grad) */
    int channels, size, kmid;
    size_t per_image;
    const float *mask;              /* [kmid] 1 for the channels the projection matches */
    int masked;                     /* how many */
    const float *mean_image;        /* [per_image] where samples start: the data's mean per colour channel */
    long p0;                        /* the batch's first (target, sample) pair: pair p is target p / S, sample p % S */
    /* Each sample's target phi, want[i][kmid], at its sigma[i], for the
     * samples not frozen; NULL: unconditional (the adaptive sampler only). */
    void (*target_phi)(void *ctx, const double *sigma, const bool *frozen, float *want);
    void *ctx;
} sr_sampler;

void sr_samples_alloc(sr_samples *o, int b, size_t per_image);
void sr_samples_free(sr_samples *o);

/* P(y, phi*): Adam on the pixels of every sample not frozen, the model
 * fixed, on L = mean over the masked channels of (abar_mid(y) - want)^2;
 * each sample stops when its L falls below reconstruct.stop_ratio of its
 * first, or after reconstruct.max_iter iterations. y: host, b images. */
void sr_project(const sr_sampler *s, const semrep_conf *conf, float *y, const float *want, const bool *frozen);

/* sigma_k from sigma_max to sigma_min over reconstruct.steps; from the mean
 * image, at each: y = x + sigma_k z, y = P(y, phi*_k), x = D(y). */
void sr_sample_fixed(const sr_sampler *s, const semrep_conf *conf, sr_samples *o);

/* From y = m + sigma0 z: h = h0 t / (1 + h0 (t - 1)); y = P(y, phi*_sigma)
 * (conditional); d = D(y) - y, sigma = |d| / sqrt(N); stop below sigma_l
 * with D(y); else y += h d + gamma z. A sample still going after
 * reconstruct.max_steps is failed, with its last y. */
void sr_sample_adaptive(const sr_sampler *s, const semrep_conf *conf, sr_samples *o);

#endif
