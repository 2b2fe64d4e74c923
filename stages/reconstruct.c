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
#include "stages/recon_file.h"
#include "stages/recon_inputs.h"
#include "stages/recon_measures.h"
#include "stages/samplers.h"
#include "stages/model.h"
#include "stages/phi_compute.h"
#include "stages/phi_file.h"
#include "stages/stage.h"

#define BATCH_FORMAT "semrep-recon-batch"
#define SAMPLE_KEY 0x80000000u /* samples' own phi draws: keys no image index takes */


/* What one batch gives: its samples and their phi [nanalysis][b][kmid]. */
typedef struct {
    sr_samples s;
    float *phi;
} batch_out;

typedef struct {
    const semrep_conf *conf;
    semrep_comm *comm;
    sr_unet net;
    sr_dataset *ds;
    sr_recon_target *targets;
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
    /* workspaces made once, at their largest, laid out again for each use
     * (sr_unet_work_resize; capacity 0: not made yet): the targets' phi, the
     * sampler's batch, the samples' phi (all draws; one copy at sigma 0) */
    sr_unet_work target_wk, sample_wk, many, one;
    float **target_pixels;       /* [ntargets] each target's images, read once (NULL until needed) */
    batch_out out;               /* the batch being computed */
    long p0;                     /* its first (target, sample) pair */
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
        const sr_recon_target *tg = &r->targets[which[t]];
        const int m = tg->nimages;
        if (!r->target_wk.capacity) { /* for the largest target's draws */
            int most = 1;
            for (int q = 0; q < r->ntargets; q++) most = r->targets[q].nimages > most ? r->targets[q].nimages : most;
            sr_unet_work_init(&r->target_wk, &r->net, most * draws, r->size, r->size, false);
        }
        sr_unet_work *wk = &r->target_wk;
        sr_unet_work_resize(wk, m * n);
        float *clean = r->target_pixels[which[t]]; /* every sampler step asks again */
        if (!clean) {
            clean = r->target_pixels[which[t]] = SR_MALLOC(sizeof(float) * r->per_image * m, "the target's images");
            if (sr_dataset_read_list(r->ds, tg->images, m, clean, err, sizeof err)) SR_FAIL("%s", err);
        }
        float *means = SR_MALLOC(sizeof(float) * sr_unet_means_count(wk), "the target's block means");
        float *mid = SR_MALLOC(sizeof(float) * (size_t)m * r->kmid, "the target's phi");
        uint32_t keys[SR_RECON_MAX_MEMBERS];
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
    sr_unet_work *made[] = {&r->target_wk, &r->sample_wk, &r->many, &r->one};
    for (size_t w = 0; w < sizeof made / sizeof *made; w++)
        if (made[w]->capacity) sr_unet_work_free(made[w]);
    for (int t = 0; r->target_pixels && t < r->ntargets; t++) free(r->target_pixels[t]);
    free(r->target_pixels), free(r->targets), free(r->mask), free(r->mean_image);
    if (r->net.params) sr_unet_free(&r->net);
    sr_dataset_close(r->ds);
}

/* The sampler's target_phi: sample i of the batch wants its target's phi
 * at sigma[i]; samples of one target at one sigma share one computation. */
static void batch_target_phi(void *ctx, const double *sigma, const bool *frozen, float *want)
{
    recon_run *r = ctx;
    const int b = r->out.s.b, K = r->kmid, S = r->conf->reconstruct.samples;
    for (int i = 0; i < b; i++) {
        const int t = (int)((r->p0 + i) / S);
        int same = -1;
        for (int j = 0; j < i && same < 0; j++)
            if (!frozen[j] && (int)((r->p0 + j) / S) == t && sigma[j] == sigma[i]) same = j;
        if (frozen[i]) continue;
        if (same >= 0) memcpy(want + (size_t)i * K, want + (size_t)same * K, sizeof(float) * K);
        else targets_phi(r, &t, 1, (float)sigma[i], r->conf->reconstruct.draws, want + (size_t)i * K);
    }
}

/* The samples' phi at the analysis sigmas: all draws of the batch at once (one copy at sigma 0). */
static void samples_phi(recon_run *r, batch_out *o)
{
    const semrep_conf *c = r->conf;
    const int b = o->s.b;
    sr_unet_work_resize(&r->many, b * c->reconstruct.draws);
    sr_unet_work_resize(&r->one, b);
    float *means = SR_MALLOC(sizeof(float) * sr_unet_means_count(&r->many), "the samples' block means");
    uint32_t *keys = SR_MALLOC(sizeof(uint32_t) * b, "the samples' keys");
    for (int i = 0; i < b; i++) keys[i] = SAMPLE_KEY | (uint32_t)(r->p0 + i);
    for (int a = 0; a < r->nanalysis; a++) {
        const float sigma = (float)c->reconstruct.analysis_sigmas[a];
        sr_phi_compute(&r->net, sigma == 0.0f ? &r->one : &r->many, (uint32_t)c->seed, keys, o->s.x, b, sigma,
                       c->reconstruct.draws, means, o->phi + (size_t)a * b * r->kmid, NULL);
    }
    free(means), free(keys);
}

/* A batch: its samples, then their phi at the analysis sigmas. */
static void run_batch(recon_run *r, long batch, batch_out *o)
{
    r->p0 = batch * r->conf->reconstruct.batch;
    if (!r->sample_wk.capacity) { /* once, for a whole batch */
        const int most = (int)(r->pairs < r->conf->reconstruct.batch ? r->pairs : r->conf->reconstruct.batch);
        sr_unet_work_init(&r->sample_wk, &r->net, most, r->size, r->size, true);
        sr_unet_work_init(&r->many, &r->net, most * r->conf->reconstruct.draws, r->size, r->size, false);
        sr_unet_work_init(&r->one, &r->net, most, r->size, r->size, false);
    }
    sr_unet_work_resize(&r->sample_wk, o->s.b);
    const sr_sampler sampler = {.net = &r->net, .wk = &r->sample_wk, .channels = r->channels, .size = r->size, .kmid = r->kmid,
                                .per_image = r->per_image, .mask = r->mask, .masked = r->masked,
                                .mean_image = r->mean_image, .p0 = r->p0,
                                .target_phi = r->conditional ? batch_target_phi : NULL, .ctx = r};
    if (r->fixed) sr_sample_fixed(&sampler, r->conf, &o->s);
    else sr_sample_adaptive(&sampler, r->conf, &o->s);
    samples_phi(r, o);
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
    SR_NC(nc_def_dim(ncid, "sample", (size_t)o->s.b, &d), file);
    SR_NC(nc_def_dim(ncid, "pixel", r->per_image, &d), file);
    SR_NC(nc_def_dim(ncid, "asigma", (size_t)r->nanalysis, &d), file);
    SR_NC(nc_def_dim(ncid, "feature", (size_t)r->kmid, &d), file);
    SR_NC(nc_def_dim(ncid, "reason_len", SR_REASON_LEN, &d), file);
    sr_nc_define_vars(ncid, batch_vars, BATCH_NVARS, "", v, file);
    SR_NC(nc_enddef(ncid), file);
    SR_NC(nc_put_var_float(ncid, v[BATCH_SAMPLES], o->s.x), file);
    SR_NC(nc_put_var_float(ncid, v[BATCH_PHI], o->phi), file);
    SR_NC(nc_put_var_int(ncid, v[BATCH_STEPS], o->s.steps), file);
    SR_NC(nc_put_var_int(ncid, v[BATCH_FAILED], o->s.failed), file);
    SR_NC(nc_put_var_text(ncid, v[BATCH_REASON], &o->s.reason[0][0]), file);
}

static void read_batch(const recon_run *r, long batch, batch_out *o)
{
    char path[SR_PATH_MAX + 128], err[SR_PATH_MAX + 256];
    sr_job_unit_path(&r->job, r->conf, batch, path, sizeof path);
    int ncid, v[BATCH_NVARS];
    SR_NC(nc_open(path, NC_NOWRITE, &ncid), path);
    if (sr_nc_find_vars(ncid, batch_vars, BATCH_NVARS, "samples phi steps failed reason", v, path, err, sizeof err))
        SR_FAIL("%s", err); /* checked when found, so changed since: not the user's doing */
    SR_NC(nc_get_var_float(ncid, v[BATCH_SAMPLES], o->s.x), path);
    SR_NC(nc_get_var_float(ncid, v[BATCH_PHI], o->phi), path);
    SR_NC(nc_get_var_int(ncid, v[BATCH_STEPS], o->s.steps), path);
    SR_NC(nc_get_var_int(ncid, v[BATCH_FAILED], o->s.failed), path);
    SR_NC(nc_get_var_text(ncid, v[BATCH_REASON], &o->s.reason[0][0]), path);
    SR_NC(nc_close(ncid), path);
}

static void batch_alloc(const recon_run *r, int b, batch_out *o)
{
    sr_samples_alloc(&o->s, b, r->per_image);
    o->phi = SR_MALLOC(sizeof(float) * (size_t)r->nanalysis * b * r->kmid, "a batch's phi");
}

static void batch_free(batch_out *o)
{
    sr_samples_free(&o->s);
    free(o->phi);
    o->phi = NULL;
}

/* Target t's picture in the output folder. */
/* Rank 0, before any work: recon.nc and the targets' pictures are absent or semrep's. */
static int outputs_ours(const recon_run *r, char *err, size_t errlen)
{
    const int T = r->conditional ? r->ntargets : 1;
    const char **names = sr_recon_target_names(T);
    int rc = sr_outdir_check(r->conf->output_dir, "recon.nc", err, errlen);
    for (int t = 0; t < T && !rc; t++) rc = sr_outdir_check(r->conf->output_dir, names[t], err, errlen);
    free(names);
    return rc;
}

/* One PNG row per target: its images (up to 4), a gap, its samples. */
static void png_row(const recon_run *r, int t, const float *samples, char *err, size_t errlen)
{
    const sr_recon_target *tg = &r->targets[t];
    const int S = r->conf->reconstruct.samples, shown = tg->kind == SR_TARGET_NONE ? 0 : tg->nimages < 4 ? tg->nimages : 4;
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
    char name[SR_RECON_NAME_LEN], path[SR_PATH_MAX + 96];
    sr_recon_target_name(t, name);
    snprintf(path, sizeof path, "%s/%s", r->conf->output_dir, name);
    if (sr_outdir_check(r->conf->output_dir, name, err, errlen)) SR_FAIL("%s", err);
    sr_outdir_register(r->conf->output_dir, (const char *[]){name}, 1); /* before the file: never one of ours unowned */
    if (sr_png_write(path, row, C, s, w, err, errlen)) SR_FAIL("%s", err);
    free(row), free(img);
}

/* Every batch's samples, gathered for recon.nc (all T * S pairs). */
typedef struct {
    float *x, *phi, *target_phi, *error; /* [pairs][per_image], [A][pairs][kmid], [A][T][kmid], [A][pairs] */
    int *steps, *failed;
    char (*reason)[SR_REASON_LEN];
} gathered;

static void gather(recon_run *r, gathered *g)
{
    const int A = r->nanalysis, K = r->kmid, T = r->conditional ? r->ntargets : 1;
    const size_t pairs = (size_t)r->pairs;
    g->x = SR_MALLOC(sizeof(float) * r->per_image * pairs, "the samples");
    g->phi = SR_MALLOC(sizeof(float) * (size_t)A * pairs * K, "the samples' phi");
    g->target_phi = SR_CALLOC((size_t)A * T * K, sizeof(float), "the targets' phi");
    g->error = SR_MALLOC(sizeof(float) * (size_t)A * pairs, "the errors");
    g->steps = SR_MALLOC(sizeof(int) * pairs, "steps"), g->failed = SR_MALLOC(sizeof(int) * pairs, "failed");
    g->reason = SR_CALLOC(pairs, SR_REASON_LEN, "the samples' reasons");
    for (long batch = 0; batch < r->job.units; batch++) {
        batch_out o = {0};
        const size_t p0 = (size_t)batch * r->conf->reconstruct.batch, b = (size_t)batch_size(r, batch);
        batch_alloc(r, (int)b, &o);
        read_batch(r, batch, &o);
        memcpy(g->x + p0 * r->per_image, o.s.x, sizeof(float) * r->per_image * b);
        for (int a = 0; a < A; a++)
            memcpy(g->phi + ((size_t)a * pairs + p0) * K, o.phi + (size_t)a * b * K, sizeof(float) * b * K);
        memcpy(g->steps + p0, o.s.steps, sizeof(int) * b);
        memcpy(g->failed + p0, o.s.failed, sizeof(int) * b);
        memcpy(g->reason + p0, o.s.reason, b * SR_REASON_LEN);
        batch_free(&o);
    }
}

/* The targets' phi at the analysis sigmas, and each sample's relative error (NaN unconditional). */
static void phi_errors(recon_run *r, gathered *g)
{
    const semrep_conf *c = r->conf;
    const int A = r->nanalysis, K = r->kmid, T = r->conditional ? r->ntargets : 1, S = c->reconstruct.samples;
    for (int a = 0; a < A; a++)
        for (int t = 0; t < T; t++) {
            float *want = g->target_phi + ((size_t)a * T + t) * K;
            if (r->conditional) targets_phi(r, &t, 1, (float)c->reconstruct.analysis_sigmas[a], c->reconstruct.draws, want);
            for (int j = 0; j < S; j++) {
                const float *got = g->phi + ((size_t)a * r->pairs + t * S + j) * K;
                double num = 0.0, den = 0.0;
                for (int ch = 0; ch < K; ch++) {
                    num += ((double)got[ch] - want[ch]) * ((double)got[ch] - want[ch]);
                    den += (double)want[ch] * want[ch];
                }
                g->error[(size_t)a * r->pairs + t * S + j] = r->conditional && den > 0 ? (float)sqrt(num / den) : NAN;
            }
        }
}

/* What the samples share with their target, at the analysis sigma nearest
 * the clusters' (recon_measures.h); that sigma's index. */
static int measure(recon_run *r, const gathered *g, sr_recon_measures *m)
{
    const semrep_conf *c = r->conf;
    const int A = r->nanalysis, T = r->conditional ? r->ntargets : 1;
    int am = 0;
    for (int a = 1; a < A; a++)
        if (fabs(c->reconstruct.analysis_sigmas[a] - c->reconstruct.cluster_sigma) <
            fabs(c->reconstruct.analysis_sigmas[am] - c->reconstruct.cluster_sigma))
            am = a;
    long *timage = SR_MALLOC(sizeof(long) * (size_t)T, "the targets"), *tcluster = SR_MALLOC(sizeof(long) * (size_t)T, "the targets");
    for (int t = 0; t < T; t++) {
        const sr_recon_target *tg = &r->targets[t];
        timage[t] = r->conditional && tg->kind == SR_TARGET_IMAGE ? tg->id : -1;
        tcluster[t] = r->conditional && tg->kind == SR_TARGET_CLUSTER ? tg->id : -1;
    }
    const sr_recon_samples in = {.targets = T, .samples = c->reconstruct.samples, .kmid = r->kmid,
                                 .per_image = r->per_image, .x = g->x, .phi = g->phi + (size_t)am * r->pairs * r->kmid,
                                 .failed = g->failed, .target_image = timage, .target_cluster = tcluster,
                                 .sigma = c->reconstruct.analysis_sigmas[am], .cluster_k = c->reconstruct.cluster_k,
                                 .cluster_sigma_differs = fabs(c->reconstruct.analysis_sigmas[am] -
                                                               c->reconstruct.cluster_sigma) > 1e-9};
    sr_recon_measure(c->output_dir, r->ds, &in, m);
    free(timage), free(tcluster);
    return am;
}

static void write_file(const recon_run *r, const gathered *g, const sr_recon_measures *m, int am, const char *tmp)
{
    const semrep_conf *c = r->conf;
    const int T = r->conditional ? r->ntargets : 1;
    int *kinds = SR_MALLOC(sizeof(int) * (size_t)T, "the targets");
    long long *ids = SR_MALLOC(sizeof(long long) * (size_t)T, "the targets");
    for (int t = 0; t < T; t++) kinds[t] = r->targets[t].kind, ids[t] = r->targets[t].id;
    const sr_recon_content content = {
        .targets = T, .samples = c->reconstruct.samples, .channels = r->channels, .size = r->size,
        .nanalysis = r->nanalysis, .kmid = r->kmid, .target_kind = kinds, .target_id = ids, .x = g->x,
        .asigma = c->reconstruct.analysis_sigmas, .target_phi = g->target_phi, .sample_phi = g->phi,
        .phi_error = g->error, .channel_mask = r->mask, .steps = g->steps, .failed = g->failed,
        .reason = (const char(*)[SR_REASON_LEN])g->reason,
        .measures = m, .measures_sigma = c->reconstruct.analysis_sigmas[am], .sampler = c->reconstruct.sampler,
        .mask = c->reconstruct.mask, .conf_text = c->text};
    sr_recon_write(tmp, &content, &r->id);
    free(kinds), free(ids);
}

static void summary(const recon_run *r, const gathered *g, const sr_recon_measures *m, int am)
{
    const semrep_conf *c = r->conf;
    const int T = r->conditional ? r->ntargets : 1, S = c->reconstruct.samples;
    long nfailed = 0;
    for (long p = 0; p < r->pairs; p++) nfailed += g->failed[p];
    printf("reconstruct: %d target(s) x %d sample(s), %s sampler, %ld failed\n", T, S, c->reconstruct.sampler, nfailed);
    for (int t = 0; t < T && r->conditional; t++) {
        printf("  target %d (%s %ld): relative phi error", t, r->targets[t].kind == SR_TARGET_IMAGE ? "image" : "cluster",
               r->targets[t].id);
        for (int a = 0; a < r->nanalysis; a++) {
            double mean = 0.0;
            int good = 0;
            for (int j = 0; j < S; j++)
                if (!g->failed[t * S + j]) mean += g->error[(size_t)a * r->pairs + t * S + j], good++;
            printf("  %.3f at sigma %.4g", good ? mean / good : NAN, c->reconstruct.analysis_sigmas[a] * 255.0);
        }
        printf("\n    in its own cluster %.2f, nearest image of its label %.2f, diversity %.3f\n", m->own_cluster[t],
               m->nn_label[t], m->diversity[t]);
    }
    printf("  at sigma %.4g: K = %d; diversity between data-set images %.3f; participation ratio of phi %.3f "
           "(data set %.3f), |phi| %.3f (data set %.3f)\n",
           c->reconstruct.analysis_sigmas[am] * 255.0, m->k, m->diversity_data, m->pr_samples, m->pr_data,
           m->norm_samples, m->norm_data);
    if (m->note[0]) printf("  not measured: %s\n", m->note);
    printf("  written to %s and %s/reconstruct/target-*.png\n", r->path, c->output_dir);
}

/* The job's assembly, on rank 0: recon.nc into tmp, and the targets' rows
 * in place before the job renames recon.nc. */
static int assemble(void *ctx, const char *tmp, char *err, size_t errlen)
{
    recon_run *r = ctx;
    if (r->comm->rank != 0) return 0;
    const int T = r->conditional ? r->ntargets : 1, S = r->conf->reconstruct.samples;
    char dir[SR_PATH_MAX + 48];
    snprintf(dir, sizeof dir, "%s/reconstruct", r->conf->output_dir);
    if (sr_make_dirs(dir, err, errlen)) SR_FAIL("%s", err);
    gathered g;
    gather(r, &g);
    phi_errors(r, &g);
    sr_recon_measures m;
    const int am = measure(r, &g, &m);
    write_file(r, &g, &m, am, tmp);
    /* rows of an earlier run with more targets go, if semrep made them */
    const char **names = sr_recon_target_names(T);
    sr_outdir_prune(r->conf->output_dir, "reconstruct/target-", names, (size_t)T);
    free(names);
    for (int t = 0; t < T; t++) png_row(r, t, g.x + (size_t)t * S * r->per_image, err, errlen);
    summary(r, &g, &m, am);
    sr_recon_measures_free(&m);
    free(g.x), free(g.phi), free(g.target_phi), free(g.error), free(g.steps), free(g.failed), free(g.reason);
    return 0;
}

/* ---- preparation ------------------------------------------------------------ */

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
        const sr_recon_target *tg = &r->targets[t];
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
    const int most = c->reconstruct.batch > SR_RECON_MAX_MEMBERS ? c->reconstruct.batch : SR_RECON_MAX_MEMBERS;
    if (sr_model_open(c, be, most * c->reconstruct.draws, true, &r->net, err, errlen)) return -1;
    r->kmid = sr_unet_block_channels(&r->net.shape, r->net.shape.levels);
    return sr_recon_mask(c, r->kmid, &r->mask, &r->masked, err, errlen);
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
    if (sr_comm_any(comm, sr_recon_targets(r->conf, r->ds, r->conditional, &r->targets, &r->ntargets, err, errlen)))
        return -1;
    r->target_pixels = SR_CALLOC((size_t)r->ntargets, sizeof(float *), "the targets' images");
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
    r.mean_image = sr_recon_mean_image(r.ds, comm);
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
