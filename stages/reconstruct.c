/* Stage reconstruct (SPEC.md section 6): samples of p(x | phi) from the
 * unconditional denoiser, self-guided by the representation extracted from
 * that very model: denoising steps alternate with a projection that pulls
 * abar_mid of the noisy image towards the target's phi.
 *
 * The (target, sample) pairs are cut into batches of reconstruct.batch, the
 * unit of work, of crash safety (one file per finished batch) and of sharing
 * among ranks and SLURM array tasks; a sample's noise is a pure function of
 * (seed, target, sample, step) and a batch is always computed together, so
 * the samples do not depend on how many ranks or tasks ran. The run that finds
 * every batch done writes recon.nc and one PNG row per target. */
#include <math.h>
#include <netcdf.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/shard.h"
#include "core/check.h"
#include "core/rng.h"
#include "io/files.h"
#include "io/nc.h"
#include "io/outdir.h"
#include "io/png_image.h"
#include "stages/data.h"
#include "stages/job.h"
#include "stages/recon_measures.h"
#include "stages/model.h"
#include "stages/phi_compute.h"
#include "stages/phi_file.h"
#include "stages/stage.h"

#define RECON_FORMAT "semrep-recon"
#define BATCH_FORMAT "semrep-recon-batch"
#define MAX_MEMBERS 64
#define REASON_LEN 160
#define SAMPLE_KEY 0x80000000u /* samples' own phi draws: keys no image index takes */

enum { TARGET_IMAGE = 0, TARGET_CLUSTER = 1, TARGET_NONE = 2 };

typedef struct {
    int kind;
    long id;                     /* image position or cluster number */
    int nimages;
    long images[MAX_MEMBERS];    /* positions of the images whose mean phi is the target */
} target;

/* What one batch gives. */
typedef struct {
    int b;
    float *x;                    /* [b][per_image] the samples */
    float *phi;                  /* [nanalysis][b][kmid] their phi */
    int *steps, *failed;
    char (*reason)[REASON_LEN];
} batch_out;

typedef struct {
    const semrep_conf *conf;
    semrep_comm *comm;
    sr_unet net;
    sr_dataset *ds;
    target *targets;
    int ntargets, kmid, channels, size, nanalysis;
    long pairs;
    size_t per_image;
    float *mask;                 /* [kmid] 1 for the channels the projection matches */
    int masked;
    float *mean_image;           /* [per_image] the data set's mean value per colour channel */
    sr_job job;
    sr_job_identity id;
    char path[SR_PATH_MAX + 32];
    bool conditional, fixed;
    sr_unet_work target_wk;      /* the targets' phi: kept while the size stays (n = 0: none yet) */
    float **target_pixels;       /* [ntargets] each target's images, read once (NULL until needed) */
    batch_out out;               /* the batch being computed */
} recon_run;


/* ---- targets' phi ---------------------------------------------------------- */

/* The mean over each target's images of their phi at sigma: out[t][kmid].
 * One target at a time: its images' draws go through the engine together,
 * in a workspace kept from call to call (every step of a sampler calls). */
static void targets_phi(recon_run *r, const int *which, int count, float sigma, int draws, float *out)
{
    const int n = sigma == 0.0f ? 1 : draws;
    char err[1024];
    for (int t = 0; t < count; t++) {
        const target *tg = &r->targets[which[t]];
        const int m = tg->nimages;
        if (r->target_wk.n != m * n) {
            if (r->target_wk.n) sr_unet_work_free(&r->target_wk);
            sr_unet_work_init(&r->target_wk, &r->net, m * n, r->size, r->size, false);
        }
        sr_unet_work *wk = &r->target_wk;
        float *clean = r->target_pixels[which[t]]; /* every sampler step asks again */
        if (!clean) {
            clean = r->target_pixels[which[t]] = SR_MALLOC(sizeof(float) * r->per_image * m, "the target's images");
            if (sr_dataset_read_list(r->ds, tg->images, m, clean, err, sizeof err)) SR_FAIL("%s", err);
        }
        float *means = SR_MALLOC(sizeof(float) * sr_unet_means_count(wk), "the target's block means");
        float *mid = SR_MALLOC(sizeof(float) * (size_t)m * r->kmid, "the target's phi");
        uint32_t keys[MAX_MEMBERS];
        for (int i = 0; i < m; i++) keys[i] = sr_dataset_noise_key(r->ds, tg->images[i]);
        sr_phi_compute(&r->net, wk, (uint32_t)r->conf->seed, keys, clean, m, sigma, draws, means, mid, NULL);
        for (int c = 0; c < r->kmid; c++) {
            double sum = 0.0;
            for (int i = 0; i < m; i++) sum += mid[(size_t)i * r->kmid + c];
            out[(size_t)t * r->kmid + c] = (float)(sum / m);
        }
        free(means), free(mid);
    }
}

/* What the stage holds, on every way out: whatever was made so far. */
static void batch_free(batch_out *o);

static void release(recon_run *r)
{
    batch_free(&r->out);
    if (r->target_wk.n) sr_unet_work_free(&r->target_wk);
    for (int t = 0; r->target_pixels && t < r->ntargets; t++) free(r->target_pixels[t]);
    free(r->target_pixels), free(r->targets), free(r->mask), free(r->mean_image);
    if (r->net.params) sr_unet_free(&r->net);
    sr_dataset_close(r->ds);
}

/* ---- the projection ------------------------------------------------------ */

/* P(y, phi*): Adam on the pixels of every sample not `frozen`, the model
 * fixed, on L = mean over the masked channels of (abar_mid(y) - phi*)^2;
 * each sample stops when its L falls below stop_ratio of its first. Adam
 * starts afresh at every call. y and Adam's moments stay where the engine
 * runs (the input buffer holds y); each iteration brings back only the
 * middle block's means and sends back their gradient. */
static void project(recon_run *r, sr_unet_work *wk, float *y, const float *target_phi, const bool *frozen)
{
    const semrep_conf *c = r->conf;
    const sr_backend *be = r->net.be;
    const int b = wk->n, K = r->kmid, mid = r->net.shape.levels;
    const size_t count = r->per_image * b, nmid = (size_t)b * K;
    const size_t mid_at = (size_t)b * r->net.block_offset[mid];
    float *moments = be->alloc(2 * sizeof(float) * count);
    uint8_t *d_active = be->alloc((size_t)b);
    if (!moments || !d_active)
        SR_FAIL("the %s backend has no room for the projection's Adam moments (%zu bytes); lower reconstruct.batch",
                be->name, 2 * sizeof(float) * count);
    be->zero(moments, 2 * sizeof(float) * count);
    be->zero(wk->d_means, sizeof(float) * sr_unet_means_count(wk)); /* only the middle block's are sent */
    float *abar_all = SR_MALLOC(sizeof(float) * nmid, "the projection's means");
    float *dmeans = SR_MALLOC(sizeof(float) * nmid, "the projection's means");
    double *first = SR_MALLOC(sizeof(double) * b, "the projection");
    uint8_t *active_of = SR_MALLOC((size_t)b, "the projection");
    int active = 0;
    for (int i = 0; i < b; i++) {
        active_of[i] = !frozen[i];
        active += active_of[i];
    }
    be->to_device(d_active, active_of, (size_t)b);
    float *x = sr_unet_input(wk);
    sr_unet_put_images(wk, y, x);
    const float beta1 = 0.9f, beta2 = 0.999f, eps = 1e-8f;
    for (int it = 0; it < c->reconstruct.max_iter && active; it++) {
        sr_unet_forward(&r->net, wk, SR_UPTO_MID);
        be->to_host(abar_all, wk->means + mid_at, sizeof(float) * nmid);
        bool stopped = false;
        for (int i = 0; i < b; i++) {
            float *dm = dmeans + (size_t)i * K;
            const float *abar = abar_all + (size_t)i * K, *want = target_phi + (size_t)i * K;
            double loss = 0.0;
            for (int ch = 0; ch < K; ch++) {
                const double e = (double)abar[ch] - want[ch];
                loss += r->mask[ch] * e * e / r->masked;
                dm[ch] = active_of[i] ? (float)(2.0 * r->mask[ch] * e / r->masked) : 0.0f;
            }
            if (!active_of[i]) continue;
            if (it == 0) first[i] = loss;
            else if (loss < c->reconstruct.stop_ratio * first[i]) {
                active_of[i] = 0, stopped = true;
                active--;
                memset(dm, 0, sizeof(float) * K);
            }
        }
        if (!active) break;
        be->to_device(wk->d_means + mid_at, dmeans, sizeof(float) * nmid);
        if (stopped) be->to_device(d_active, active_of, (size_t)b);
        sr_unet_backward(&r->net, wk, SR_UPTO_MID, NULL, wk->d_means, NULL, true);
        be->adam_masked(x, sr_unet_input_grad(wk), moments, moments + count, r->channels, b, r->size * r->size,
                        d_active, c->reconstruct.lr, beta1, beta2, eps, it + 1);
    }
    sr_unet_get_images(wk, x, y);
    be->release(moments), be->release(d_active);
    free(abar_all), free(dmeans), free(first), free(active_of);
}

/* The noise of a sample at a step: a pure function of (seed, target, sample, step). */
static sr_rng_stream noise(const recon_run *r, long pair, uint32_t step)
{
    const int S = r->conf->reconstruct.samples;
    return (sr_rng_stream){.seed = (uint32_t)r->conf->seed, .domain = SR_RNG_RECON, .i0 = (uint32_t)(pair / S),
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

/* The fixed-schedule sampler: sigma_k from sigma_max to sigma_min; at each,
 * y = x + sigma_k z, y = P(y, phi*_k), x = D(y). */
static void fixed_sampler(recon_run *r, sr_unet_work *wk, long p0, batch_out *o, const int *tid, int ntid,
                          const int *row_of)
{
    const semrep_conf *c = r->conf;
    const int b = o->b, steps = c->reconstruct.steps;
    float *y = SR_MALLOC(sizeof(float) * r->per_image * b, "the samples");
    float *tphi = SR_MALLOC(sizeof(float) * (size_t)ntid * r->kmid, "the targets' phi");
    float *want = SR_MALLOC(sizeof(float) * (size_t)b * r->kmid, "the samples' targets");
    bool *frozen = SR_CALLOC((size_t)b, sizeof(bool), "the samples' frozen marks");
    for (int i = 0; i < b; i++) memcpy(o->x + (size_t)i * r->per_image, r->mean_image, sizeof(float) * r->per_image);
    for (int k = 0; k < steps; k++) {
        const double sigma = steps == 1 ? c->reconstruct.sigma_max
                                        : c->reconstruct.sigma_max +
                                              (c->reconstruct.sigma_min - c->reconstruct.sigma_max) * k / (steps - 1);
        targets_phi(r, tid, ntid, (float)sigma, c->reconstruct.draws, tphi);
        for (int i = 0; i < b; i++) {
            memcpy(want + (size_t)i * r->kmid, tphi + (size_t)row_of[i] * r->kmid, sizeof(float) * r->kmid);
            const sr_rng_stream st = noise(r, p0 + i, (uint32_t)k);
            sr_rng_add_gaussian(&st, o->x + (size_t)i * r->per_image, (float)sigma, r->per_image, y + (size_t)i * r->per_image);
        }
        inject_test_nan(p0, b, k + 1, y, r->per_image);
        project(r, wk, y, want, frozen);
        sr_unet_denoise(&r->net, wk, y, o->x);
        for (int i = 0; i < b; i++) {
            if (frozen[i] || finite_image(o->x + (size_t)i * r->per_image, r->per_image)) continue;
            frozen[i] = true;
            o->failed[i] = 1;
            snprintf(o->reason[i], REASON_LEN, "not finite after step %d (sigma %.3g)", k + 1, sigma);
        }
    }
    for (int i = 0; i < b; i++) o->steps[i] = steps;
    free(y), free(tphi), free(want), free(frozen);
}

/* The adaptive sampler (Kadkhodaie and Simoncelli 2021), conditional when
 * r->conditional (with the projection at the current sigma). */
static void adaptive_sampler(recon_run *r, sr_unet_work *wk, long p0, batch_out *o, const int *tid, const int *row_of)
{
    const semrep_conf *c = r->conf;
    const int b = o->b;
    const double beta = r->conditional ? c->reconstruct.beta : c->reconstruct.beta_unconditional;
    const double h0 = c->reconstruct.h0;
    float *y = SR_MALLOC(sizeof(float) * r->per_image * b, "the samples");
    float *d = SR_MALLOC(sizeof(float) * r->per_image * b, "the samples' denoised");
    float *z = SR_MALLOC(sizeof(float) * r->per_image, "noise");
    float *want = SR_CALLOC((size_t)b * r->kmid, sizeof(float), "the samples' targets");
    double *sigma = SR_MALLOC(sizeof(double) * b, "the samples' sigma");
    bool *frozen = SR_CALLOC((size_t)b, sizeof(bool), "the samples' frozen marks");
    int active = b;
    for (int i = 0; i < b; i++) {
        const sr_rng_stream st = noise(r, p0 + i, 0);
        sr_rng_add_gaussian(&st, r->mean_image, (float)c->reconstruct.sigma0, r->per_image, y + (size_t)i * r->per_image);
        sigma[i] = c->reconstruct.sigma0;
    }
    int t = 1;
    for (; active && t <= c->reconstruct.max_steps; t++) {
        const double h = h0 * t / (1.0 + h0 * (t - 1));
        if (r->conditional) {
            for (int i = 0; i < b; i++) /* each sample's target at its own sigma */
                if (!frozen[i]) targets_phi(r, &tid[row_of[i]], 1, (float)sigma[i], c->reconstruct.draws, want + (size_t)i * r->kmid);
            project(r, wk, y, want, frozen);
        }
        inject_test_nan(p0, b, t, y, r->per_image);
        sr_unet_denoise(&r->net, wk, y, d);
        for (int i = 0; i < b; i++) {
            if (frozen[i]) continue;
            float *yi = y + (size_t)i * r->per_image, *di = d + (size_t)i * r->per_image;
            double sq = 0.0;
            for (size_t p = 0; p < r->per_image; p++) {
                di[p] -= yi[p];
                sq += (double)di[p] * di[p];
            }
            sigma[i] = sqrt(sq / r->per_image);
            if (!isfinite(sigma[i])) {
                frozen[i] = true, active--, o->failed[i] = 1, o->steps[i] = t;
                snprintf(o->reason[i], REASON_LEN, "not finite at step %d", t);
                continue;
            }
            if (sigma[i] < c->reconstruct.sigma_l) {
                frozen[i] = true, active--, o->steps[i] = t;
                for (size_t p = 0; p < r->per_image; p++) o->x[(size_t)i * r->per_image + p] = yi[p] + di[p];
                continue;
            }
            const double gamma = sigma[i] * sqrt(fmax((1 - beta * h) * (1 - beta * h) - (1 - h) * (1 - h), 0.0));
            const sr_rng_stream st = noise(r, p0 + i, (uint32_t)t);
            sr_rng_gaussian(&st, 0, r->per_image, z);
            for (size_t p = 0; p < r->per_image; p++) yi[p] += (float)(h * di[p] + gamma * z[p]);
        }
    }
    for (int i = 0; i < b; i++)
        if (!frozen[i]) {
            o->failed[i] = 1, o->steps[i] = t - 1;
            snprintf(o->reason[i], REASON_LEN, "still at sigma %.3g after %d steps (reconstruct.max_steps)", sigma[i],
                     t - 1);
            memcpy(o->x + (size_t)i * r->per_image, y + (size_t)i * r->per_image, sizeof(float) * r->per_image);
        }
    free(y), free(d), free(z), free(want), free(sigma), free(frozen);
}

/* A batch: its samples, then their phi at the analysis sigmas. */
static void run_batch(recon_run *r, long batch, batch_out *o)
{
    const semrep_conf *c = r->conf;
    const long p0 = batch * c->reconstruct.batch;
    const int b = o->b;
    /* the distinct targets of the batch, and each sample's row among them */
    int *tid = SR_MALLOC(sizeof(int) * (size_t)b, "a batch's targets"), *row_of = SR_MALLOC(sizeof(int) * (size_t)b, "a batch's targets"), ntid = 0;
    for (int i = 0; i < b; i++) {
        const int t = r->conditional ? (int)((p0 + i) / c->reconstruct.samples) : 0;
        int row = -1;
        for (int q = 0; q < ntid; q++)
            if (tid[q] == t) row = q;
        if (row < 0) tid[row = ntid++] = t;
        row_of[i] = row;
    }
    sr_unet_work wk;
    sr_unet_work_init(&wk, &r->net, b, r->size, r->size, true);
    if (r->fixed) fixed_sampler(r, &wk, p0, o, tid, ntid, row_of);
    else adaptive_sampler(r, &wk, p0, o, tid, row_of);
    sr_unet_work_free(&wk);
    /* the samples' phi: all draws of the batch at once (one copy at sigma 0) */
    sr_unet_work many, one;
    sr_unet_work_init(&many, &r->net, b * c->reconstruct.draws, r->size, r->size, false);
    sr_unet_work_init(&one, &r->net, b, r->size, r->size, false);
    float *means = SR_MALLOC(sizeof(float) * sr_unet_means_count(&many), "the samples' block means");
    uint32_t *keys = SR_MALLOC(sizeof(uint32_t) * b, "the samples' keys");
    for (int i = 0; i < b; i++) keys[i] = SAMPLE_KEY | (uint32_t)(p0 + i);
    for (int a = 0; a < r->nanalysis; a++) {
        const float sigma = (float)c->reconstruct.analysis_sigmas[a];
        sr_phi_compute(&r->net, sigma == 0.0f ? &one : &many, (uint32_t)c->seed, keys, o->x, b, sigma,
                       c->reconstruct.draws, means, o->phi + (size_t)a * b * r->kmid, NULL);
    }
    free(means), free(keys), free(tid), free(row_of);
    sr_unet_work_free(&many);
    sr_unet_work_free(&one);
}

/* ---- batch files and recon.nc ---------------------------------------------- */

static int batch_size(const recon_run *r, long batch)
{
    const long b = r->conf->reconstruct.batch, left = r->pairs - batch * b;
    return (int)(left < b ? left : b);
}

/* A batch file's variables. */
enum { BATCH_SAMPLES, BATCH_PHI, BATCH_STEPS, BATCH_FAILED, BATCH_REASON, BATCH_NVARS };
static const sr_nc_var batch_vars[BATCH_NVARS] = {
    {"samples", NC_FLOAT, "sample pixel", NULL, "the batch's samples, NCHW flattened"},
    {"phi", NC_FLOAT, "asigma sample feature", NULL, "the samples' phi at the analysis sigmas"},
    {"steps", NC_INT, "sample", NULL, "sampler steps taken"},
    {"failed", NC_INT, "sample", NULL, "1: the sample failed (reason)"},
    {"reason", NC_CHAR, "sample reason_len", NULL, "why it failed"},
};

/* The batch now computed (r->out) into its open file: the job's write step. */
static void write_unit(void *ctx, long batch, int ncid, const char *file)
{
    const recon_run *r = ctx;
    const batch_out *o = &r->out;
    int d, v[BATCH_NVARS];
    (void)batch;
    SR_NC(nc_def_dim(ncid, "sample", (size_t)o->b, &d), file);
    SR_NC(nc_def_dim(ncid, "pixel", r->per_image, &d), file);
    SR_NC(nc_def_dim(ncid, "asigma", (size_t)r->nanalysis, &d), file);
    SR_NC(nc_def_dim(ncid, "feature", (size_t)r->kmid, &d), file);
    SR_NC(nc_def_dim(ncid, "reason_len", REASON_LEN, &d), file);
    sr_nc_define_vars(ncid, batch_vars, BATCH_NVARS, "", v, file);
    SR_NC(nc_enddef(ncid), file);
    SR_NC(nc_put_var_float(ncid, v[BATCH_SAMPLES], o->x), file);
    SR_NC(nc_put_var_float(ncid, v[BATCH_PHI], o->phi), file);
    SR_NC(nc_put_var_int(ncid, v[BATCH_STEPS], o->steps), file);
    SR_NC(nc_put_var_int(ncid, v[BATCH_FAILED], o->failed), file);
    SR_NC(nc_put_var_text(ncid, v[BATCH_REASON], &o->reason[0][0]), file);
}

static void read_batch(const recon_run *r, long batch, batch_out *o)
{
    char path[SR_PATH_MAX + 128], err[SR_PATH_MAX + 256];
    sr_job_unit_path(&r->job, r->conf, batch, path, sizeof path);
    int ncid, v[BATCH_NVARS];
    SR_NC(nc_open(path, NC_NOWRITE, &ncid), path);
    if (sr_nc_find_vars(ncid, batch_vars, BATCH_NVARS, "samples phi steps failed reason", v, path, err, sizeof err))
        SR_FAIL("%s", err); /* checked when found, so changed since: not the user's doing */
    SR_NC(nc_get_var_float(ncid, v[BATCH_SAMPLES], o->x), path);
    SR_NC(nc_get_var_float(ncid, v[BATCH_PHI], o->phi), path);
    SR_NC(nc_get_var_int(ncid, v[BATCH_STEPS], o->steps), path);
    SR_NC(nc_get_var_int(ncid, v[BATCH_FAILED], o->failed), path);
    SR_NC(nc_get_var_text(ncid, v[BATCH_REASON], &o->reason[0][0]), path);
    SR_NC(nc_close(ncid), path);
}

static void batch_alloc(const recon_run *r, int b, batch_out *o)
{
    o->b = b;
    o->x = SR_MALLOC(sizeof(float) * r->per_image * b, "a batch's samples");
    o->phi = SR_MALLOC(sizeof(float) * (size_t)r->nanalysis * b * r->kmid, "a batch's phi");
    o->steps = SR_CALLOC((size_t)b, sizeof(int), "the samples' steps");
    o->failed = SR_CALLOC((size_t)b, sizeof(int), "the samples' failures");
    o->reason = SR_CALLOC((size_t)b, REASON_LEN, "the samples' reasons");
}

static void batch_free(batch_out *o) { free(o->x), free(o->phi), free(o->steps), free(o->failed), free(o->reason); }

/* Target t's picture in the output folder. */
static void target_name(int t, char name[40]) { snprintf(name, 40, "reconstruct/target-%03d.png", t); }

/* The T targets' pictures' names (one malloc). */
static const char **target_names(int T)
{
    const char **names = SR_MALLOC((sizeof *names + 40) * (size_t)T, "the target pictures' names");
    for (int t = 0; t < T; t++) {
        char *name = (char *)(names + T) + 40 * (size_t)t;
        target_name(t, name);
        names[t] = name;
    }
    return names;
}

/* Rank 0, before any work: recon.nc and the targets' pictures are absent or semrep's. */
static int outputs_ours(const recon_run *r, char *err, size_t errlen)
{
    const int T = r->conditional ? r->ntargets : 1;
    const char **names = target_names(T);
    int rc = sr_outdir_check(r->conf->output_dir, "recon.nc", err, errlen);
    for (int t = 0; t < T && !rc; t++) rc = sr_outdir_check(r->conf->output_dir, names[t], err, errlen);
    free(names);
    return rc;
}

/* One PNG row per target: its images (up to 4), a gap, its samples. */
static void png_row(const recon_run *r, int t, const float *samples, char *err, size_t errlen)
{
    const target *tg = &r->targets[t];
    const int S = r->conf->reconstruct.samples, shown = tg->kind == TARGET_NONE ? 0 : tg->nimages < 4 ? tg->nimages : 4;
    const int tiles = shown + (shown ? 1 : 0) + S, w = tiles * r->size, C = r->channels, s = r->size;
    float *row = SR_CALLOC((size_t)C * s * w, sizeof(float), "a row of samples"), *img = SR_MALLOC(sizeof(float) * r->per_image, "an image");
    for (int k = 0; k < shown + S; k++) {
        const int tile = k < shown ? k : k + (shown ? 1 : 0); /* a gap between the targets and the samples */
        if (k < shown) {
            if (sr_dataset_read_list(r->ds, &tg->images[k], 1, img, err, errlen)) SR_FAIL("%s", err);
        } else {
            memcpy(img, samples + (size_t)(k - shown) * r->per_image, sizeof(float) * r->per_image);
        }
        for (int ch = 0; ch < C; ch++)
            for (int y = 0; y < s; y++)
                for (int x = 0; x < s; x++)
                    row[((size_t)ch * s + y) * w + tile * s + x] = img[((size_t)ch * s + y) * s + x];
    }
    char name[40], path[SR_PATH_MAX + 96];
    target_name(t, name);
    snprintf(path, sizeof path, "%s/%s", r->conf->output_dir, name);
    if (sr_outdir_check(r->conf->output_dir, name, err, errlen)) SR_FAIL("%s", err);
    sr_outdir_register(r->conf->output_dir, (const char *[]){name}, 1); /* before the file: never one of ours unowned */
    if (sr_png_write(path, row, C, s, w, err, errlen)) SR_FAIL("%s", err);
    free(row), free(img);
}

/* The job's assembly, on rank 0: recon.nc into tmp and the targets' rows. */
static int assemble(void *ctx, const char *tmp, char *err, size_t errlen)
{
    recon_run *r = ctx;
    if (r->comm->rank != 0) return 0;
    const semrep_conf *c = r->conf;
    const int T = r->conditional ? r->ntargets : 1, S = c->reconstruct.samples, A = r->nanalysis, K = r->kmid;
    char dir[SR_PATH_MAX + 48];
    snprintf(dir, sizeof dir, "%s/reconstruct", c->output_dir);
    if (sr_make_dirs(dir, err, errlen)) SR_FAIL("%s", err);
    float *samples = SR_MALLOC(sizeof(float) * r->per_image * r->pairs, "the samples");
    float *sphi = SR_MALLOC(sizeof(float) * (size_t)A * r->pairs * K, "the samples' phi");
    int *steps = SR_MALLOC(sizeof(int) * r->pairs, "steps"), *failed = SR_MALLOC(sizeof(int) * r->pairs, "failed");
    char (*reason)[REASON_LEN] = SR_CALLOC((size_t)r->pairs, REASON_LEN, "the samples' reasons");
    for (long batch = 0; batch < r->job.units; batch++) {
        batch_out o;
        const long p0 = batch * c->reconstruct.batch;
        batch_alloc(r, batch_size(r, batch), &o);
        read_batch(r, batch, &o);
        memcpy(samples + (size_t)p0 * r->per_image, o.x, sizeof(float) * r->per_image * o.b);
        for (int a = 0; a < A; a++)
            memcpy(sphi + ((size_t)a * r->pairs + p0) * K, o.phi + (size_t)a * o.b * K, sizeof(float) * (size_t)o.b * K);
        memcpy(steps + p0, o.steps, sizeof(int) * o.b);
        memcpy(failed + p0, o.failed, sizeof(int) * o.b);
        memcpy(reason + p0, o.reason, (size_t)o.b * REASON_LEN);
        batch_free(&o);
    }
    /* the targets' phi at the analysis sigmas, and the samples' relative error */
    float *tphi = SR_CALLOC((size_t)A * T * K, sizeof(float), "the targets' phi");
    float *error = SR_MALLOC(sizeof(float) * (size_t)A * r->pairs, "the errors");
    for (int a = 0; a < A; a++)
        for (int t = 0; t < T; t++) {
            if (r->conditional) targets_phi(r, &t, 1, (float)c->reconstruct.analysis_sigmas[a], c->reconstruct.draws, tphi + ((size_t)a * T + t) * K);
            for (int j = 0; j < S; j++) {
                const float *want = tphi + ((size_t)a * T + t) * K, *got = sphi + ((size_t)a * r->pairs + t * S + j) * K;
                double num = 0.0, den = 0.0;
                for (int ch = 0; ch < K; ch++) {
                    num += ((double)got[ch] - want[ch]) * ((double)got[ch] - want[ch]);
                    den += (double)want[ch] * want[ch];
                }
                error[(size_t)a * r->pairs + t * S + j] = r->conditional && den > 0 ? (float)sqrt(num / den) : NAN;
            }
        }
    /* what the samples share with their target, at the analysis sigma
     * nearest the clusters' (recon_measures.h) */
    int am = 0;
    for (int a = 1; a < A; a++)
        if (fabs(c->reconstruct.analysis_sigmas[a] - c->reconstruct.cluster_sigma) <
            fabs(c->reconstruct.analysis_sigmas[am] - c->reconstruct.cluster_sigma))
            am = a;
    long *timage = SR_MALLOC(sizeof(long) * (size_t)T, "the targets"), *tcluster = SR_MALLOC(sizeof(long) * (size_t)T, "the targets");
    for (int t = 0; t < T; t++) {
        const target *tg = &r->targets[t];
        timage[t] = r->conditional && tg->kind == TARGET_IMAGE ? tg->id : -1;
        tcluster[t] = r->conditional && tg->kind == TARGET_CLUSTER ? tg->id : -1;
    }
    const sr_recon_samples in = {.targets = T, .samples = S, .kmid = K, .per_image = r->per_image, .x = samples,
                                 .phi = sphi + (size_t)am * r->pairs * K, .failed = failed, .target_image = timage,
                                 .target_cluster = tcluster, .sigma = c->reconstruct.analysis_sigmas[am],
                                 .cluster_k = c->reconstruct.cluster_k,
                                 .cluster_sigma_differs = fabs(c->reconstruct.analysis_sigmas[am] -
                                                               c->reconstruct.cluster_sigma) > 1e-9};
    sr_recon_measures m;
    sr_recon_measure(c->output_dir, r->ds, &in, &m);
    free(timage), free(tcluster);

    int ncid, version = 1, dt, ds_, dc, dy, dx, da, df, dr;
    SR_NC(nc_create(tmp, NC_NETCDF4 | NC_CLOBBER, &ncid), tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "format", RECON_FORMAT, tmp);
    sr_nc_put_ints(ncid, NC_GLOBAL, "format_version", &version, 1, tmp);
    sr_job_put_identity(ncid, &r->id, tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "sampler", c->reconstruct.sampler, tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "mask", c->reconstruct.mask, tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "conf", c->text, tmp);
    SR_NC(nc_def_dim(ncid, "target", (size_t)T, &dt), tmp);
    SR_NC(nc_def_dim(ncid, "sample", (size_t)S, &ds_), tmp);
    SR_NC(nc_def_dim(ncid, "channel", (size_t)r->channels, &dc), tmp);
    SR_NC(nc_def_dim(ncid, "y", (size_t)r->size, &dy), tmp);
    SR_NC(nc_def_dim(ncid, "x", (size_t)r->size, &dx), tmp);
    SR_NC(nc_def_dim(ncid, "asigma", (size_t)A, &da), tmp);
    SR_NC(nc_def_dim(ncid, "feature", (size_t)K, &df), tmp);
    SR_NC(nc_def_dim(ncid, "reason_len", REASON_LEN, &dr), tmp);
    int v[11];
    SR_NC(nc_def_var(ncid, "target_kind", NC_INT, 1, &dt, &v[0]), tmp);
    sr_nc_put_text(ncid, v[0], "meaning", "0 an image, 1 a cluster of clusters.nc, 2 none (unconditional)", tmp);
    SR_NC(nc_def_var(ncid, "target_id", NC_INT64, 1, &dt, &v[1]), tmp);
    sr_nc_put_text(ncid, v[1], "meaning", "the image's position in the data set, or the cluster's number", tmp);
    SR_NC(nc_def_var(ncid, "samples", NC_FLOAT, 5, (int[]){dt, ds_, dc, dy, dx}, &v[2]), tmp);
    SR_NC(nc_def_var(ncid, "asigma", NC_DOUBLE, 1, &da, &v[3]), tmp);
    sr_nc_put_text(ncid, v[3], "meaning", "the analysis sigmas, pixel units", tmp);
    SR_NC(nc_def_var(ncid, "target_phi", NC_FLOAT, 3, (int[]){da, dt, df}, &v[4]), tmp);
    SR_NC(nc_def_var(ncid, "sample_phi", NC_FLOAT, 4, (int[]){da, dt, ds_, df}, &v[5]), tmp);
    SR_NC(nc_def_var(ncid, "phi_error", NC_FLOAT, 3, (int[]){da, dt, ds_}, &v[6]), tmp);
    sr_nc_put_text(ncid, v[6], "meaning", "|phi(sample) - phi(target)| / |phi(target)| at the analysis sigma", tmp);
    SR_NC(nc_def_var(ncid, "steps", NC_INT, 2, (int[]){dt, ds_}, &v[7]), tmp);
    SR_NC(nc_def_var(ncid, "failed", NC_INT, 2, (int[]){dt, ds_}, &v[8]), tmp);
    SR_NC(nc_def_var(ncid, "reason", NC_CHAR, 3, (int[]){dt, ds_, dr}, &v[9]), tmp);
    int mv[5];
    SR_NC(nc_def_var(ncid, "own_cluster_share", NC_FLOAT, 1, &dt, &mv[0]), tmp);
    sr_nc_put_text(ncid, mv[0], "meaning", "share of the target's samples whose phi is nearest the centre of the target's cluster (NaN: not measured)", tmp);
    SR_NC(nc_def_var(ncid, "nn_label_share", NC_FLOAT, 1, &dt, &mv[1]), tmp);
    sr_nc_put_text(ncid, mv[1], "meaning", "share whose nearest data-set image in phi has the target's label (a cluster's: its commonest)", tmp);
    SR_NC(nc_def_var(ncid, "diversity", NC_FLOAT, 1, &dt, &mv[2]), tmp);
    sr_nc_put_text(ncid, mv[2], "meaning", "mean RMS pixel distance between two samples of the target; attribute diversity_data: the same between data-set images", tmp);
    SR_NC(nc_def_var(ncid, "nearest_cluster", NC_INT, 2, (int[]){dt, ds_}, &mv[3]), tmp);
    SR_NC(nc_def_var(ncid, "nearest_image", NC_INT64, 2, (int[]){dt, ds_}, &mv[4]), tmp);
    SR_NC(nc_put_att_double(ncid, NC_GLOBAL, "measures_sigma", NC_DOUBLE, 1, &in.sigma), tmp);
    SR_NC(nc_put_att_int(ncid, NC_GLOBAL, "measures_k", NC_INT, 1, &m.k), tmp);
    SR_NC(nc_put_att_double(ncid, mv[2], "diversity_data", NC_DOUBLE, 1, &m.diversity_data), tmp);
    const double stats4[4] = {m.pr_samples, m.pr_data, m.norm_samples, m.norm_data};
    SR_NC(nc_put_att_double(ncid, NC_GLOBAL, "phi_pr_samples_data_norm_samples_data", NC_DOUBLE, 4, stats4), tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "measures_note", m.note, tmp);
    SR_NC(nc_enddef(ncid), tmp);
    int *kinds = SR_MALLOC(sizeof(int) * (size_t)T, "the targets");
    long long *ids = SR_MALLOC(sizeof(long long) * (size_t)T, "the targets");
    for (int t = 0; t < T; t++) kinds[t] = r->targets[t].kind, ids[t] = r->targets[t].id;
    SR_NC(nc_put_var_int(ncid, v[0], kinds), tmp);
    SR_NC(nc_put_var_longlong(ncid, v[1], ids), tmp);
    free(kinds), free(ids);
    SR_NC(nc_put_var_float(ncid, v[2], samples), tmp);
    SR_NC(nc_put_var_double(ncid, v[3], c->reconstruct.analysis_sigmas), tmp);
    SR_NC(nc_put_var_float(ncid, v[4], tphi), tmp);
    SR_NC(nc_put_var_float(ncid, v[5], sphi), tmp);
    SR_NC(nc_put_var_float(ncid, v[6], error), tmp);
    SR_NC(nc_put_var_int(ncid, v[7], steps), tmp);
    SR_NC(nc_put_var_int(ncid, v[8], failed), tmp);
    SR_NC(nc_put_var_text(ncid, v[9], &reason[0][0]), tmp);
    SR_NC(nc_put_var_float(ncid, mv[0], m.own_cluster), tmp);
    SR_NC(nc_put_var_float(ncid, mv[1], m.nn_label), tmp);
    SR_NC(nc_put_var_float(ncid, mv[2], m.diversity), tmp);
    SR_NC(nc_put_var_int(ncid, mv[3], m.nearest_cluster), tmp);
    long long *near = SR_MALLOC(sizeof(long long) * (size_t)r->pairs, "the nearest images");
    for (long p = 0; p < r->pairs; p++) near[p] = m.nearest_image[p];
    SR_NC(nc_put_var_longlong(ncid, mv[4], near), tmp);
    free(near);
    SR_NC(nc_close(ncid), tmp);
    /* rows of an earlier run with more targets go, if semrep made them */
    const char **names = target_names(T);
    sr_outdir_prune(c->output_dir, "reconstruct/target-", names, (size_t)T);
    free(names);
    for (int t = 0; t < T; t++) png_row(r, t, samples + (size_t)t * S * r->per_image, err, errlen);
    long nfailed = 0;
    for (long p = 0; p < r->pairs; p++) nfailed += failed[p];
    printf("reconstruct: %d target(s) x %d sample(s), %s sampler, %ld failed\n", T, S, c->reconstruct.sampler, nfailed);
    for (int t = 0; t < T && r->conditional; t++) {
        printf("  target %d (%s %ld): relative phi error", t, r->targets[t].kind == TARGET_IMAGE ? "image" : "cluster",
               r->targets[t].id);
        for (int a = 0; a < A; a++) {
            double mean = 0.0;
            int good = 0;
            for (int j = 0; j < S; j++)
                if (!failed[t * S + j]) mean += error[(size_t)a * r->pairs + t * S + j], good++;
            printf("  %.3f at sigma %.4g", good ? mean / good : NAN, c->reconstruct.analysis_sigmas[a] * 255.0);
        }
        printf("\n    in its own cluster %.2f, nearest image of its label %.2f, diversity %.3f\n", m.own_cluster[t],
               m.nn_label[t], m.diversity[t]);
    }
    printf("  at sigma %.4g: K = %d; diversity between data-set images %.3f; participation ratio of phi %.3f "
           "(data set %.3f), |phi| %.3f (data set %.3f)\n",
           in.sigma * 255.0, m.k, m.diversity_data, m.pr_samples, m.pr_data, m.norm_samples, m.norm_data);
    if (m.note[0]) printf("  not measured: %s\n", m.note);
    sr_recon_measures_free(&m);
    printf("  written to %s and %s/target-*.png\n", r->path, dir);
    free(samples), free(sphi), free(steps), free(failed), free(reason), free(tphi), free(error);
    return 0;
}

/* ---- preparation ------------------------------------------------------------ */

static int read_mask(recon_run *r, char *err, size_t errlen)
{
    const semrep_conf *c = r->conf;
    r->mask = SR_MALLOC(sizeof(float) * r->kmid, "the mask");
    for (int ch = 0; ch < r->kmid; ch++) r->mask[ch] = 1.0f;
    r->masked = r->kmid;
    if (!strcmp(c->reconstruct.mask, "all")) return 0;
    char path[SR_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/stats.nc", c->output_dir);
    int ncid, var, dim;
    size_t S = 0, K = 0;
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR)
        return sr_report(err, errlen, "reconstruct.mask = \"%s\" needs %s; run the stats stage first", c->reconstruct.mask, path);
    if (sr_made_from_phi(c->output_dir, "stats.nc", err, errlen)) return nc_close(ncid), -1;
    nc_inq_dimid(ncid, "sigma", &dim), nc_inq_dimlen(ncid, dim, &S);
    nc_inq_dimid(ncid, "channel", &dim), nc_inq_dimlen(ncid, dim, &K);
    double *sig = SR_CALLOC(S + 1, sizeof(double), "stats.nc's sigmas");
    signed char *kind = SR_CALLOC(S * K + 1, 1, "stats.nc's channel kinds");
    nc_inq_varid(ncid, "sigma", &var), nc_get_var_double(ncid, var, sig);
    nc_inq_varid(ncid, "kind", &var), nc_get_var_schar(ncid, var, kind);
    nc_close(ncid);
    int s = -1;
    for (size_t q = 0; q < S; q++)
        if (fabs(sig[q] - c->reconstruct.mask_sigma) < 1e-9) s = (int)q;
    const int want = !strcmp(c->reconstruct.mask, "selective") ? 0 : 1;
    int rc = 0;
    if (s < 0 || (int)K != r->kmid)
        rc = sr_report(err, errlen, "reconstruct.mask_sigma = %g is not a sigma of %s (or its channels are not the model's)",
                       c->reconstruct.mask_sigma, path);
    r->masked = 0;
    for (int ch = 0; !rc && ch < r->kmid; ch++) r->masked += (r->mask[ch] = kind[(size_t)s * K + ch] == want ? 1.0f : 0.0f) > 0;
    if (!rc && r->masked == 0)
        rc = sr_report(err, errlen, "reconstruct.mask = \"%s\": %s has no such channel at sigma %g", c->reconstruct.mask,
                       path, c->reconstruct.mask_sigma);
    free(sig), free(kind);
    return rc;
}

static int cluster_members(recon_run *r, target *tg, char *err, size_t errlen)
{
    const semrep_conf *c = r->conf;
    char path[SR_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/clusters.nc", c->output_dir);
    int ncid, var, dim, ks[64] = {0};
    size_t S = 0, nk = 0, kmax = 0, m = 0;
    double sig[SR_MAX_SIGMAS];
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR)
        return sr_report(err, errlen, "reconstruct.clusters needs %s; run the cluster stage first", path);
    if (sr_made_from_phi(c->output_dir, "clusters.nc", err, errlen)) return nc_close(ncid), -1;
    nc_inq_dimid(ncid, "sigma", &dim), nc_inq_dimlen(ncid, dim, &S);
    nc_inq_dimid(ncid, "k", &dim), nc_inq_dimlen(ncid, dim, &nk);
    nc_inq_dimid(ncid, "cluster", &dim), nc_inq_dimlen(ncid, dim, &kmax);
    nc_inq_dimid(ncid, "member", &dim), nc_inq_dimlen(ncid, dim, &m);
    nc_inq_varid(ncid, "sigma", &var), nc_get_var_double(ncid, var, sig);
    nc_inq_varid(ncid, "k", &var), nc_get_var_int(ncid, var, ks);
    int s = -1, q = c->reconstruct.cluster_k ? -1 : 0;
    for (size_t i = 0; i < S; i++)
        if (fabs(sig[i] - c->reconstruct.cluster_sigma) < 1e-9) s = (int)i;
    for (size_t i = 0; i < nk && q < 0; i++)
        if (ks[i] == c->reconstruct.cluster_k) q = (int)i;
    if (s < 0 || q < 0 || tg->id >= ks[q]) {
        nc_close(ncid);
        return sr_report(err, errlen, "%s has no cluster %ld at sigma %g with K = %d (reconstruct.clusters, cluster_sigma, cluster_k)",
                         path, tg->id, c->reconstruct.cluster_sigma, q < 0 ? c->reconstruct.cluster_k : ks[q]);
    }
    long long members[MAX_MEMBERS];
    const size_t start[4] = {(size_t)s, (size_t)q, (size_t)tg->id, 0}, count[4] = {1, 1, 1, m < MAX_MEMBERS ? m : MAX_MEMBERS};
    nc_inq_varid(ncid, "members", &var);
    const int rc = nc_get_vara_longlong(ncid, var, start, count, members);
    nc_close(ncid);
    if (rc != NC_NOERR) return sr_report(err, errlen, "%s: cannot read the members of cluster %ld", path, tg->id);
    tg->nimages = 0;
    for (size_t i = 0; i < count[3]; i++)
        if (members[i] >= 0 && members[i] < r->ds->count) tg->images[tg->nimages++] = members[i];
    if (!tg->nimages) return sr_report(err, errlen, "%s: cluster %ld has no members", path, tg->id);
    return 0;
}

static int choose_targets(recon_run *r, char *err, size_t errlen)
{
    const semrep_conf *c = r->conf;
    const int n = c->reconstruct.ntargets + c->reconstruct.random + c->reconstruct.nclusters;
    r->targets = SR_CALLOC((size_t)(n ? n : 1), sizeof(target), "the targets");
    r->target_pixels = SR_MALLOC(sizeof(float *) * (n ? n : 1), "the targets' images");
    for (int t = 0; t < (n ? n : 1); t++) r->target_pixels[t] = NULL;
    if (!r->conditional) {
        r->ntargets = 1;
        r->targets[0] = (target){.kind = TARGET_NONE, .id = -1};
        return 0;
    }
    if (n == 0) return sr_report(err, errlen, "the %s sampler needs targets: reconstruct.targets, random or clusters", c->reconstruct.sampler);
    for (int i = 0; i < c->reconstruct.ntargets; i++) {
        if (c->reconstruct.targets[i] >= r->ds->count)
            return sr_report(err, errlen, "reconstruct.targets: image %d is beyond the %ld images of the data set",
                             c->reconstruct.targets[i], r->ds->count);
        r->targets[r->ntargets++] = (target){.kind = TARGET_IMAGE, .id = c->reconstruct.targets[i], .nimages = 1,
                                             .images = {c->reconstruct.targets[i]}};
    }
    for (int i = 0; i < c->reconstruct.random; i++) {
        uint32_t word;
        const sr_rng_stream s = {.seed = (uint32_t)c->seed, .domain = SR_RNG_RECON, .i0 = 0xFFFFFFFFu};
        sr_rng_words(&s, (uint64_t)i, 1, &word);
        const long image = (long)(((uint64_t)word * (uint64_t)r->ds->count) >> 32);
        r->targets[r->ntargets++] = (target){.kind = TARGET_IMAGE, .id = image, .nimages = 1, .images = {image}};
    }
    for (int i = 0; i < c->reconstruct.nclusters; i++) {
        target *tg = &r->targets[r->ntargets++];
        *tg = (target){.kind = TARGET_CLUSTER, .id = c->reconstruct.clusters[i]};
        if (cluster_members(r, tg, err, errlen)) return -1;
    }
    return 0;
}

/* The data set's mean value per colour channel, as a constant image. The
 * sums of fixed chunks of 256 images meet on rank 0 and are added in chunk
 * order, so the image (and the fingerprint it enters) is the same on any
 * number of ranks. */
static void mean_image(recon_run *r)
{
    const long chunk = 256, chunks = (r->ds->count + chunk - 1) / chunk;
    long first, end;
    sr_shard(chunks, 1, r->comm->rank, r->comm->size, &first, &end);
    const int hw = r->size * r->size, C = r->channels;
    double *sums = SR_CALLOC((size_t)((end - first) * C + 1), sizeof(double), "the targets' sums");
    float *batch = SR_MALLOC(sizeof(float) * r->per_image * chunk, "images");
    char err[1024];
    for (long q = first; q < end; q++) {
        const long i0 = q * chunk, n = r->ds->count - i0 < chunk ? r->ds->count - i0 : chunk;
        if (sr_dataset_read(r->ds, i0, n, batch, err, sizeof err)) SR_FAIL("%s", err);
        for (long i = 0; i < n; i++)
            for (int ch = 0; ch < C; ch++)
                for (int p = 0; p < hw; p++) sums[(q - first) * C + ch] += batch[(size_t)i * r->per_image + (size_t)ch * hw + p];
    }
    free(batch);
    char *all;
    size_t bytes;
    sr_comm_gather(r->comm, sums, sizeof(double) * (size_t)(end - first) * C, &all, &bytes);
    double total[4] = {0};
    if (r->comm->rank == 0)
        for (long q = 0; q < chunks; q++)
            for (int ch = 0; ch < C; ch++) total[ch] += ((double *)all)[q * C + ch];
    sr_comm_bcast(r->comm, total, sizeof total, 0);
    free(all), free(sums);
    r->mean_image = SR_MALLOC(sizeof(float) * r->per_image, "the mean image");
    for (int ch = 0; ch < C; ch++)
        for (int p = 0; p < hw; p++) r->mean_image[(size_t)ch * hw + p] = (float)(total[ch] / ((double)r->ds->count * hw));
}

/* What the samples depend on: the model, the settings (every reconstruct
 * key but the task split and the run's length), then the images, the
 * targets, the mask and the mean image (sr_job_identity_begin). A recon.nc
 * of the same provenance and data source but other images (a folder that
 * grew) is made again, anything else refused. */
static void identify(recon_run *r)
{
    static const char *const skip[] = {"reconstruct.tasks", "reconstruct.task", "reconstruct.run_batches", NULL};
    sr_fingerprint fp;
    sr_job_identity_begin(&r->id, &fp, "reconstruct", r->conf, &r->net, r->ds);
    sr_fp_conf(&fp, r->conf, "reconstruct.", skip);
    sr_fp_digest(&fp, r->id.provenance);
    sr_fp_data(&fp, r->ds);
    for (int t = 0; t < r->ntargets; t++) {
        const target *tg = &r->targets[t];
        sr_fp_long(&fp, "target.kind", tg->kind);
        sr_fp_long(&fp, "target.id", tg->id);
        sr_fp_longs(&fp, "target.images", tg->images, (size_t)tg->nimages);
    }
    sr_fp_floats(&fp, "mask", r->mask, (size_t)r->kmid);
    sr_fp_floats(&fp, "mean_image", r->mean_image, r->per_image);
    sr_fp_digest(&fp, r->id.fingerprint);
    sr_fp_end(&fp);
}

static int prepare(recon_run *r, char *err, size_t errlen)
{
    const semrep_conf *c = r->conf;
    const sr_backend *be = sr_stage_backend(c, r->comm, 0, err, errlen);
    if (!be || sr_output_ready(c->output_dir, err, errlen)) return -1;
    if (c->reconstruct.task >= c->reconstruct.tasks)
        return sr_report(err, errlen, "reconstruct.task = %d must be below reconstruct.tasks = %d", c->reconstruct.task,
                         c->reconstruct.tasks);
    /* the largest batch: a batch's draws, or a cluster target's members' draws */
    const int most = c->reconstruct.batch > MAX_MEMBERS ? c->reconstruct.batch : MAX_MEMBERS;
    if (sr_model_open(c, be, most * c->reconstruct.draws, true, &r->net, err, errlen)) return -1;
    r->kmid = sr_unet_block_channels(&r->net.shape, r->net.shape.levels);
    return read_mask(r, err, errlen);
}

/* The job's compute step: batch u into r->out. */
static void compute_unit(void *ctx, long u)
{
    recon_run *r = ctx;
    batch_free(&r->out);
    batch_alloc(r, batch_size(r, u), &r->out);
    run_batch(r, u, &r->out);
}

static void progress(void *ctx, long u, long done, long mine)
{
    const recon_run *r = ctx;
    if (r->comm->rank == 0) printf("reconstruct: batch %ld done (%ld of rank 0's %ld)\n", u, done, mine), fflush(stdout);
}

/* Everything a run needs before its batches; 0, or -1 with err on some rank. */
static int start(recon_run *r, char *err, size_t errlen)
{
    const semrep_comm *comm = r->comm;
    if (sr_comm_any(comm, prepare(r, err, errlen))) return -1;
    if (sr_data_open(&r->conf->dataset, r->conf->output_dir, comm, &r->ds, err, errlen)) return -1;
    r->channels = r->ds->channels, r->size = r->ds->size;
    r->per_image = (size_t)r->channels * r->size * r->size;
    if (sr_comm_any(comm, choose_targets(r, err, errlen))) return -1;
    return sr_comm_any(comm, comm->rank == 0 && outputs_ours(r, err, errlen)) ? -1 : 0;
}

int stage_reconstruct(const semrep_conf *conf, semrep_comm *comm)
{
    recon_run r = {.conf = conf, .comm = comm, .nanalysis = conf->reconstruct.nanalysis};
    r.fixed = !strcmp(conf->reconstruct.sampler, "fixed");
    r.conditional = strcmp(conf->reconstruct.sampler, "unconditional") != 0;
    char err[2048] = "";
    snprintf(r.path, sizeof r.path, "%s/recon.nc", conf->output_dir);
    if (start(&r, err, sizeof err)) {
        release(&r);
        return sr_comm_error(comm, 1, "%s", err[0] ? err : "reconstruct: another rank could not start");
    }
    mean_image(&r);
    identify(&r);
    r.pairs = (long)(r.conditional ? r.ntargets : 1) * conf->reconstruct.samples;
    r.job = (sr_job){.stage = "reconstruct", .output = "recon.nc", .unit_dir = "recon-batches", .unit_name = "batch",
                     .unit_format = BATCH_FORMAT, .run_key = "reconstruct.run_batches",
                     .units = (r.pairs + conf->reconstruct.batch - 1) / conf->reconstruct.batch,
                     .task = conf->reconstruct.task, .tasks = conf->reconstruct.tasks,
                     .run_units = conf->reconstruct.run_batches, .ctx = &r, .compute = compute_unit,
                     .write_unit = write_unit, .progress = progress, .assemble = assemble};
    sr_output_state state = sr_job_output_state(&r.job, &r.id, conf, comm, err, sizeof err);
    if (state == SR_OUTPUT_REUSABLE && comm->rank == 0)
        printf("reconstruct: %s is from earlier images of this data set; computing it again\n", r.path);
    if (state == SR_OUTPUT_CURRENT && comm->rank == 0) printf("reconstruct: %s is up to date\n", r.path);
    if (state == SR_OUTPUT_CURRENT || state == SR_OUTPUT_REFUSED) {
        release(&r);
        return state == SR_OUTPUT_CURRENT ? 0 : sr_comm_error(comm, 1, "%s", err);
    }
    if (comm->rank == 0)
        printf("reconstruct: %s sampler, %ld sample(s) in %ld batch(es) of %d, task %d of %d, %d rank(s)\n",
               conf->reconstruct.sampler, r.pairs, r.job.units, conf->reconstruct.batch, conf->reconstruct.task + 1,
               conf->reconstruct.tasks, comm->size);
    const sr_job_result done = sr_job_run(&r.job, &r.id, conf, comm, err, sizeof err);
    release(&r);
    return done == SR_JOB_FAILED ? sr_comm_error(comm, 1, "%s", err[0] ? err : "reconstruct: rank 0 failed") : 0;
}
