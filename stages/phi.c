/* Stage phi (SPEC.md section 3): phi_sigma(x) = (1/n) sum_k abar_mid(x + sigma z_k)
 * for every image of the analysis data and every sigma of phi.sigmas, with
 * every block's means when phi.block_means is on.
 *
 * The images are cut into chunks of phi.batch, the units of the job
 * skeleton (stages/job.h). All draws of a chunk's images go through the
 * engine as one batch, so an image is always computed in the same company,
 * and its noise is a pure function of (seed, the image's noise key, draw,
 * bits of sigma): phi is the same bit for bit on any number of ranks or
 * threads. The ranks write phi.nc together (parallel NetCDF-4), each a
 * contiguous range of images. A growing data set (nightly runs): the images
 * a phi.nc of the same model and settings holds, recognised by their
 * identity (a hash of pixels and noise key), are copied from it. */
#include <netcdf.h>
#include <netcdf_par.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "comm/shard.h"
#include "core/check.h"
#include "core/clock.h"
#include "io/nc.h"
#include "stages/data.h"
#include "stages/job.h"
#include "stages/model.h"
#include "stages/phi_compute.h"
#include "stages/phi_file.h"
#include "stages/stage.h"

#define CHUNK_FORMAT "semrep-phi-chunk"

typedef struct {
    const semrep_conf *conf;
    semrep_comm *comm;
    sr_unet net;
    sr_dataset *ds;
    int nsig, kmid, units;
    bool blocks;
    sr_job job;
    sr_job_identity id;
    /* the work: positions to compute, in order (all, or those the previous
     * phi.nc lacks); per position, its row in the previous phi.nc or -1, and
     * its index in todo or -1 (NULL without a previous file) */
    long *todo, ntodo, *reuse_row, *todo_index;
    char path[SR_PATH_MAX + 32];
    /* per chunk */
    sr_unet_work many, one; /* all draws of a chunk; one draw (sigma 0) */
    float *clean, *means, *phi, *unit_means;
    uint32_t *keys; /* the chunk's images' noise keys (sr_dataset_noise_key) */
    unsigned long long *chunk_ident; /* the chunk's images' identities, from the pixels phi was computed on */
    double started, printed; /* the progress lines' clock */
} phi_run;

/* A chunk file's variables (the chunk's rows of phi.nc's). */
enum { CHUNK_PHI, CHUNK_KEY, CHUNK_BLOCK_MEAN, CHUNK_NVARS };
static const sr_nc_var chunk_vars[CHUNK_NVARS] = {
    {"phi", NC_FLOAT, "sigma image channel", NULL, "phi.nc's phi, for the chunk's images"},
    {"image_key", NC_UINT64, "image", NULL, "phi.nc's image_key"},
    {"block_mean", NC_FLOAT, "sigma image unit", NULL, "phi.nc's block_mean"},
};

static int draws_at(const phi_run *r, int s) { return r->conf->phi.sigmas[s] == 0.0 ? 1 : r->conf->phi.draws; }

/* What phi depends on: the model, the settings, and then the images
 * (sr_job_identity_begin). Rows are reused only under the same provenance. */
static void identify(phi_run *r)
{
    sr_fingerprint fp;
    sr_job_identity_begin(&r->id, &fp, "phi", r->conf, &r->net, r->ds);
    sr_fp_conf(&fp, r->conf, "phi.", (const char *const[]){"phi.run_chunks", NULL});
    sr_fp_long(&fp, "dataset.size", r->ds->size);
    sr_fp_long(&fp, "noise keyed by name", r->ds->source->noise_key != NULL);
    sr_fp_digest(&fp, r->id.provenance);
    sr_fp_data(&fp, r->ds);
    sr_fp_digest(&fp, r->id.fingerprint);
    sr_fp_end(&fp);
}

/* An image's identity: its pixels and its noise key. */
static uint64_t identity(const float *pixels, size_t count, uint32_t noise_key)
{
    return XXH3_64bits_withSeed(pixels, sizeof(float) * count, noise_key);
}
/* The identities of every image: each rank hashes a share; rank 0 gets
 * them all (a malloc'd array), the other ranks NULL. */
static uint64_t *identify_all(phi_run *r)
{
    const long count = r->ds->count, batch = r->conf->phi.batch;
    const size_t per_image = (size_t)r->ds->channels * r->ds->size * r->ds->size;
    long first, end;
    sr_shard(count, batch, r->comm->rank, r->comm->size, &first, &end);
    uint64_t *mine = SR_MALLOC(sizeof(uint64_t) * (size_t)(end > first ? end - first : 1), "image identities");
    char err[1024];
    for (long i0 = first; i0 < end; i0 += batch) {
        const int b = (int)(end - i0 < batch ? end - i0 : batch);
        if (sr_dataset_read(r->ds, i0, b, r->clean, err, sizeof err)) SR_FAIL("%s", err);
        for (int i = 0; i < b; i++)
            mine[i0 - first + i] = identity(r->clean + (size_t)i * per_image, per_image, sr_dataset_noise_key(r->ds, i0 + i));
    }
    char *all;
    size_t total;
    sr_comm_gather(r->comm, mine, sizeof(uint64_t) * (size_t)(end - first), &all, &total);
    free(mine);
    return (uint64_t *)all;
}

static int by_key(const void *a, const void *b)
{
    const uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* reuse_row: each image's row in the previous phi.nc (its image_key
 * variable), matched by identity (ident, on rank 0) and sent to all. */
static void match_previous(phi_run *r, const uint64_t *ident)
{
    const long count = r->ds->count;
    r->reuse_row = SR_MALLOC(sizeof(long) * (size_t)count, "rows to reuse");
    if (r->comm->rank == 0) {
        sr_phi_file f;
        char err[SR_PATH_MAX + 256];
        if (sr_phi_open(r->path, &f, err, sizeof err)) SR_FAIL("%s", err); /* it was read just before */
        const size_t old = (size_t)f.images;
        uint64_t (*pairs)[2] = SR_MALLOC(sizeof *pairs * old, "the previous identities");
        unsigned long long *keys = SR_MALLOC(sizeof *keys * old, "the previous identities");
        sr_phi_read_keys(&f, 0, f.images, keys);
        sr_phi_close(&f);
        for (size_t j = 0; j < old; j++) pairs[j][0] = keys[j], pairs[j][1] = j;
        qsort(pairs, old, sizeof *pairs, by_key);
        for (long i = 0; i < count; i++) {
            const uint64_t want[2] = {ident[i], 0};
            const uint64_t(*hit)[2] = bsearch(want, pairs, old, sizeof *pairs, by_key);
            r->reuse_row[i] = hit ? (long)(*hit)[1] : -1;
        }
        free(pairs), free(keys);
    }
    sr_comm_bcast(r->comm, r->reuse_row, sizeof(long) * (size_t)count, 0);
}

/* The positions to compute: all, or those with no row to reuse. */
static void plan_work(phi_run *r)
{
    const long count = r->ds->count;
    r->todo = SR_MALLOC(sizeof(long) * (size_t)(count ? count : 1), "the images to compute");
    r->todo_index = SR_MALLOC(sizeof(long) * (size_t)(count ? count : 1), "the images to compute");
    r->ntodo = 0;
    for (long i = 0; i < count; i++) {
        r->todo_index[i] = r->reuse_row && r->reuse_row[i] >= 0 ? -1 : r->ntodo;
        if (r->todo_index[i] >= 0) r->todo[r->ntodo++] = i;
    }
}

/* Chunk j's images: todo[j * batch ..] */
static int chunk_images(const phi_run *r, long chunk, const long **positions)
{
    const long batch = r->conf->phi.batch, i0 = chunk * batch;
    *positions = r->todo + i0;
    return (int)(r->ntodo - i0 < batch ? r->ntodo - i0 : batch);
}

/* What names a chunk's images (their positions), for its file. */
static void positions_hash(const long *positions, int b, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)XXH3_64bits(positions, sizeof(long) * (size_t)b));
}

/* ---- one chunk -------------------------------------------------------------- */

/* The workspaces are made once, for a whole chunk, and laid out again for a short one. */
static void fit_workspaces(phi_run *r, int images)
{
    const int batch = r->conf->phi.batch, draws = r->conf->phi.draws;
    if (!r->one.capacity) {
        sr_unet_work_init(&r->one, &r->net, batch, r->ds->size, r->ds->size, false);
        sr_unet_work_init(&r->many, &r->net, batch * draws, r->ds->size, r->ds->size, false);
    }
    sr_unet_work_resize(&r->one, images);
    sr_unet_work_resize(&r->many, images * draws);
}

/* phi (and every block's means) of a chunk's images at every sigma. */
static void compute_chunk(phi_run *r, const long *positions, int b)
{
    const semrep_conf *c = r->conf;
    char err[1024];
    fit_workspaces(r, b);
    if (sr_dataset_read_list(r->ds, positions, b, r->clean, err, sizeof err)) SR_FAIL("%s", err);
    const size_t per_image = (size_t)r->ds->channels * r->ds->size * r->ds->size;
    for (int i = 0; i < b; i++) {
        r->keys[i] = sr_dataset_noise_key(r->ds, positions[i]);
        r->chunk_ident[i] = identity(r->clean + (size_t)i * per_image, per_image, r->keys[i]);
    }
    for (int s = 0; s < r->nsig; s++) {
        const int n = draws_at(r, s);
        sr_phi_compute(&r->net, n == 1 ? &r->one : &r->many, (uint32_t)c->seed, r->keys, r->clean, b,
                       (float)c->phi.sigmas[s], n, r->means, r->phi + (size_t)s * b * r->kmid,
                       r->blocks ? r->unit_means + (size_t)s * b * r->units : NULL);
    }
}

/* The job's steps for chunk u. */
static void compute_unit(void *ctx, long u)
{
    phi_run *r = ctx;
    const long *positions;
    const int b = chunk_images(r, u, &positions);
    compute_chunk(r, positions, b);
}

static void write_unit(void *ctx, long u, int ncid, const char *file)
{
    const phi_run *r = ctx;
    const long *positions;
    const int b = chunk_images(r, u, &positions);
    char hash[17];
    positions_hash(positions, b, hash);
    sr_nc_put_text(ncid, NC_GLOBAL, "positions", hash, file);
    const long long first = positions[0], count = b;
    SR_NC(nc_put_att_longlong(ncid, NC_GLOBAL, "first", NC_INT64, 1, &first), file);
    SR_NC(nc_put_att_longlong(ncid, NC_GLOBAL, "images", NC_INT64, 1, &count), file);
    int dim, v[CHUNK_NVARS];
    SR_NC(nc_def_dim(ncid, "sigma", (size_t)r->nsig, &dim), file);
    SR_NC(nc_def_dim(ncid, "image", (size_t)b, &dim), file);
    SR_NC(nc_def_dim(ncid, "channel", (size_t)r->kmid, &dim), file);
    if (r->blocks) SR_NC(nc_def_dim(ncid, "unit", (size_t)r->units, &dim), file);
    sr_nc_define_vars(ncid, chunk_vars, CHUNK_NVARS, r->blocks ? "" : "block_mean", v, file);
    SR_NC(nc_enddef(ncid), file);
    SR_NC(nc_put_var_ulonglong(ncid, v[CHUNK_KEY], r->chunk_ident), file);
    SR_NC(nc_put_var_float(ncid, v[CHUNK_PHI], r->phi), file);
    if (r->blocks) SR_NC(nc_put_var_float(ncid, v[CHUNK_BLOCK_MEAN], r->unit_means), file);
}

/* A chunk file left by an earlier run still holds these images: the
 * identities it stored match those of the pixels as they are now (the data
 * stamp in the fingerprint is cheap and nearly always enough; this is read
 * only for chunks found at the start of a run). */
static bool chunk_current(phi_run *r, const long *positions, int b, int ncid, const char *path)
{
    char err[1024];
    int var;
    if (nc_inq_varid(ncid, "image_key", &var) != NC_NOERR) return false;
    SR_NC(nc_get_var_ulonglong(ncid, var, r->chunk_ident), path);
    if (sr_dataset_read_list(r->ds, positions, b, r->clean, err, sizeof err)) SR_FAIL("%s", err);
    const size_t per_image = (size_t)r->ds->channels * r->ds->size * r->ds->size;
    bool same = true;
    for (int i = 0; same && i < b; i++)
        same = r->chunk_ident[i] == identity(r->clean + (size_t)i * per_image, per_image,
                                             sr_dataset_noise_key(r->ds, positions[i]));
    return same;
}

/* The chunk file (of this fingerprint) holds chunk u's images. */
static bool unit_matches(void *ctx, long u, int ncid, const char *path, bool thorough)
{
    phi_run *r = ctx;
    const long *positions;
    const int b = chunk_images(r, u, &positions);
    char hash[17] = "", want[17];
    long long first = -1, count = -1;
    positions_hash(positions, b, want);
    const bool same = nc_get_att_longlong(ncid, NC_GLOBAL, "first", &first) == NC_NOERR && first == positions[0] &&
                      nc_get_att_longlong(ncid, NC_GLOBAL, "images", &count) == NC_NOERR && count == b &&
                      !sr_nc_get_text(ncid, NC_GLOBAL, "positions", hash, sizeof hash) && !strcmp(hash, want);
    return same && (!thorough || chunk_current(r, positions, b, ncid, path));
}

static void progress(void *ctx, long u, long done, long mine)
{
    phi_run *r = ctx;
    const double now = sr_seconds();
    (void)u;
    if (r->comm->rank != 0 || (now - r->printed < 10.0 && done < mine)) return;
    long draws = 0;
    for (int s = 0; s < r->nsig; s++) draws += draws_at(r, s);
    const double rate = (double)done * r->conf->phi.batch * r->comm->size / (now - r->started);
    printf("phi: %ld of rank 0's %ld chunks (at its pace, all ranks: %.1f images/s, %.0f forward passes/s, %.1f min left)\n",
           done, mine, rate, rate * (double)draws, (double)(mine - done) / done * (now - r->started) / 60.0);
    fflush(stdout);
    r->printed = now;
}

/* ---- phi.nc ----------------------------------------------------------------- */

static void define_file(const phi_run *r, int ncid, const char *file, int v[SR_PHI_NVARS])
{
    const semrep_conf *c = r->conf;
    const sr_phi_layout layout = {.nsigma = r->nsig, .images = r->ds->count, .block_means = r->blocks, .ds = r->ds,
                                  .net = &r->net};
    sr_phi_define(ncid, &layout, file, v);
    sr_job_put_identity(ncid, &r->id, file);
    sr_nc_put_text(ncid, NC_GLOBAL, "dataset_stamp", r->ds->stamp, file);
    char number[32];
    snprintf(number, sizeof number, "%ld", r->ntodo);
    sr_nc_put_text(ncid, NC_GLOBAL, "images_computed", number, file);
    snprintf(number, sizeof number, "%ld", r->ds->count - r->ntodo);
    sr_nc_put_text(ncid, NC_GLOBAL, "images_reused", number, file);
    const long long seed = c->seed;
    SR_NC(nc_put_att_longlong(ncid, NC_GLOBAL, "seed", NC_INT64, 1, &seed), file);
    sr_nc_put_text(ncid, NC_GLOBAL, "conf", c->text, file);
}

/* A file assembly reads rows from: the previous phi.nc (number -1, kept
 * open) or a chunk (the last one used is kept open). */
typedef struct {
    long number; /* -2: none open */
    int ncid, v[CHUNK_NVARS];
    char path[SR_PATH_MAX + 128];
} row_file;

/* What the assembly holds: one block of up to phi.batch images, and its sources. */
typedef struct {
    float *phi, *units, *scratch;
    char *names;
    long long *index;
    unsigned long long *keys;
    int *label;
    row_file previous, current;
} assembly;

static row_file *source_open(const phi_run *r, assembly *a, long number)
{
    row_file *f = number < 0 ? &a->previous : &a->current;
    char err[SR_PATH_MAX + 256];
    if (f->number == number) return f;
    if (f->number != -2) nc_close(f->ncid);
    if (number < 0) snprintf(f->path, sizeof f->path, "%s", r->path);
    else {
        sr_job_unit_path(&r->job, r->conf, number, f->path, sizeof f->path);
        /* another run in this folder could have replaced it since it was checked */
        if (!sr_job_unit_done(&r->job, &r->id, r->conf, number))
            SR_FAIL("%s is not the chunk this run computed (is another run using %s?); run again", f->path,
                    r->conf->output_dir);
    }
    SR_NC(nc_open(f->path, NC_NOWRITE, &f->ncid), f->path);
    if (sr_nc_find_vars(f->ncid, chunk_vars, CHUNK_NVARS, r->blocks ? "phi image_key block_mean" : "phi image_key", f->v,
                        f->path, err, sizeof err))
        SR_FAIL("%s", err); /* checked when found, so changed since: not the user's doing */
    f->number = number;
    return f;
}

/* Rows [row, row + n) of a file into images [at, at + n) of the block of b
 * (sigma-major) and their identities. */
static void source_read(const phi_run *r, const row_file *f, long row, int n, int at, int b, assembly *a)
{
    for (int pass = 0; pass < (r->blocks ? 2 : 1); pass++) {
        const int width = pass ? r->units : r->kmid;
        float *out = pass ? a->units : a->phi;
        const size_t start[3] = {0, (size_t)row, 0}, count[3] = {(size_t)r->nsig, (size_t)n, (size_t)width};
        SR_NC(nc_get_vara_float(f->ncid, f->v[pass ? CHUNK_BLOCK_MEAN : CHUNK_PHI], start, count, a->scratch), f->path);
        for (int s = 0; s < r->nsig; s++)
            memcpy(out + ((size_t)s * b + at) * width, a->scratch + (size_t)s * n * width, sizeof(float) * n * width);
    }
    const size_t start[1] = {(size_t)row}, count[1] = {(size_t)n};
    SR_NC(nc_get_vara_ulonglong(f->ncid, f->v[CHUNK_KEY], start, count, a->keys + at), f->path);
}

/* Where image p's row is: a chunk and its row there, or (chunk -1) a row of the previous phi.nc. */
static void row_of(const phi_run *r, long p, long *chunk, long *row)
{
    const long b_max = r->conf->phi.batch;
    *chunk = r->todo_index[p] < 0 ? -1 : r->todo_index[p] / b_max;
    *row = *chunk < 0 ? r->reuse_row[p] : r->todo_index[p] % b_max;
}

/* Images [i0, i0 + b): their rows, read in runs that follow each other in one source. */
static void gather_rows(const phi_run *r, assembly *a, long i0, int b)
{
    for (int i = 0; i < b;) {
        long file, row, qfile, qrow;
        row_of(r, i0 + i, &file, &row);
        int n = 1;
        for (; i + n < b; n++) {
            row_of(r, i0 + i + n, &qfile, &qrow);
            if (qfile != file || qrow != row + n) break;
        }
        source_read(r, source_open(r, a, file), row, n, i, b, a);
        i += n;
    }
    memset(a->names, 0, (size_t)b * SR_NAME_MAX);
    for (int i = 0; i < b; i++) {
        a->index[i] = sr_dataset_origin(r->ds, i0 + i);
        a->label[i] = sr_dataset_label(r->ds, i0 + i);
        sr_dataset_name(r->ds, i0 + i, a->names + (size_t)i * SR_NAME_MAX, SR_NAME_MAX);
    }
}

static void write_rows(const phi_run *r, const assembly *a, int ncid, const int *v, long i0, int b, const char *tmp)
{
    const size_t start1[1] = {(size_t)i0}, count1[1] = {(size_t)b};
    const size_t start2[2] = {(size_t)i0, 0}, count2[2] = {(size_t)b, SR_NAME_MAX};
    SR_NC(nc_put_vara_longlong(ncid, v[SR_PHI_VAR_INDEX], start1, count1, a->index), tmp);
    SR_NC(nc_put_vara_longlong(ncid, v[SR_PHI_VAR_IMAGE], start1, count1, a->index), tmp);
    SR_NC(nc_put_vara_ulonglong(ncid, v[SR_PHI_VAR_KEY], start1, count1, a->keys), tmp);
    if (v[SR_PHI_VAR_LABEL] >= 0) SR_NC(nc_put_vara_int(ncid, v[SR_PHI_VAR_LABEL], start1, count1, a->label), tmp);
    SR_NC(nc_put_vara_text(ncid, v[SR_PHI_VAR_SOURCE], start2, count2, a->names), tmp);
    const size_t start3[3] = {0, (size_t)i0, 0};
    const size_t count3[3] = {(size_t)r->nsig, (size_t)b, (size_t)r->kmid};
    SR_NC(nc_put_vara_float(ncid, v[SR_PHI_VAR_PHI], start3, count3, a->phi), tmp);
    if (r->blocks) {
        const size_t countu[3] = {(size_t)r->nsig, (size_t)b, (size_t)r->units};
        SR_NC(nc_put_vara_float(ncid, v[SR_PHI_VAR_BLOCK_MEAN], start3, countu, a->units), tmp);
    }
}

static void assembly_alloc(const phi_run *r, assembly *a)
{
    const size_t b_max = (size_t)r->conf->phi.batch, nsig = (size_t)r->nsig;
    const size_t width = (size_t)(r->blocks && r->units > r->kmid ? r->units : r->kmid);
    a->phi = SR_MALLOC(sizeof(float) * nsig * b_max * (size_t)r->kmid, "a block of phi rows");
    a->units = r->blocks ? SR_MALLOC(sizeof(float) * nsig * b_max * (size_t)r->units, "a block of rows") : NULL;
    a->scratch = SR_MALLOC(sizeof(float) * nsig * b_max * width, "a block of rows");
    a->names = SR_MALLOC(b_max * SR_NAME_MAX, "a block's names");
    a->index = SR_MALLOC(sizeof(long long) * b_max, "a block's indices");
    a->keys = SR_MALLOC(sizeof(unsigned long long) * b_max, "a block's identities");
    a->label = SR_MALLOC(sizeof(int) * b_max, "a block's labels");
    a->previous.number = a->current.number = -2;
}

static void assembly_free(assembly *a)
{
    if (a->previous.number != -2) nc_close(a->previous.ncid);
    if (a->current.number != -2) nc_close(a->current.ncid);
    free(a->phi), free(a->units), free(a->scratch), free(a->names), free(a->index), free(a->keys), free(a->label);
}

/* The job's assembly: every rank writes a contiguous range of images,
 * gathering their rows from the chunks and the previous phi.nc; no rank
 * holds the whole array. */
static int assemble(void *ctx, const char *tmp, char *err, size_t errlen)
{
    const phi_run *r = ctx;
    int ncid, v[SR_PHI_NVARS];
    const int rc = nc_create_par(tmp, NC_NETCDF4 | NC_CLOBBER, r->comm->world, MPI_INFO_NULL, &ncid);
    if (rc != NC_NOERR) return sr_report(err, errlen, "cannot create %s: %s; check the output folder", tmp, nc_strerror(rc));
    define_file(r, ncid, tmp, v);
    SR_NC(nc_enddef(ncid), tmp);
    for (int i = 0; i < SR_PHI_NVARS; i++)
        if (v[i] >= 0) SR_NC(nc_var_par_access(ncid, v[i], NC_INDEPENDENT), tmp);
    if (r->comm->rank == 0) {
        int draws[SR_MAX_SIGMAS];
        for (int s = 0; s < r->nsig; s++) draws[s] = draws_at(r, s);
        SR_NC(nc_put_var_double(ncid, v[SR_PHI_VAR_SIGMA], r->conf->phi.sigmas), tmp);
        SR_NC(nc_put_var_int(ncid, v[SR_PHI_VAR_DRAWS], draws), tmp);
    }
    assembly a;
    assembly_alloc(r, &a);
    const long b_max = r->conf->phi.batch;
    long first, end;
    sr_shard(r->ds->count, b_max, r->comm->rank, r->comm->size, &first, &end);
    for (long i0 = first; i0 < end; i0 += b_max) {
        const int b = (int)(end - i0 < b_max ? end - i0 : b_max);
        gather_rows(r, &a, i0, b);
        write_rows(r, &a, ncid, v, i0, b, tmp);
    }
    assembly_free(&a);
    SR_NC(nc_close(ncid), tmp);
    return 0;
}

/* ---- the stage -------------------------------------------------------------- */

static int prepare(phi_run *r, char *err, size_t errlen)
{
    const semrep_conf *c = r->conf;
    const sr_backend *be = sr_stage_backend(c, r->comm, 0, err, errlen);
    if (!be || sr_output_ready(c->output_dir, err, errlen)) return -1;
    /* the workspace of one chunk's draws, and of its one-draw sigma 0 */
    return sr_model_open(c, be, c->phi.batch * (c->phi.draws + 1), false, &r->net, err, errlen);
}

static void release(phi_run *r)
{
    if (r->one.n) {
        sr_unet_work_free(&r->one);
        sr_unet_work_free(&r->many);
    }
    free(r->clean), free(r->means), free(r->phi), free(r->unit_means), free(r->keys);
    free(r->todo), free(r->todo_index), free(r->reuse_row), free(r->chunk_ident);
    if (r->net.params) sr_unet_free(&r->net);
    sr_dataset_close(r->ds);
}

static int fail(phi_run *r, const char *err)
{
    release(r);
    return sr_comm_error(r->comm, 1, "%s", err[0] ? err : "phi: another rank failed (its message is above)");
}

/* The images to compute (all, or those a reusable phi.nc lacks) and the job over their chunks. */
static void plan(phi_run *r, bool reuse)
{
    const semrep_conf *c = r->conf;
    const long batch = c->phi.batch, count = r->ds->count;
    const size_t per_image = (size_t)r->ds->channels * r->ds->size * r->ds->size;
    r->clean = SR_MALLOC(sizeof(float) * per_image * (size_t)batch, "a chunk's images");
    if (reuse) { /* a growing data set: reuse what the previous phi.nc has */
        uint64_t *ident = identify_all(r);
        match_previous(r, ident);
        free(ident);
    }
    plan_work(r);
    if (reuse && r->comm->rank == 0)
        printf("phi: %s holds %ld of these %ld images (same model and settings); computing the other %ld\n", r->path,
               count - r->ntodo, count, r->ntodo);
    const size_t most = (size_t)batch * c->phi.draws;
    r->keys = SR_MALLOC(sizeof(uint32_t) * (size_t)batch, "a chunk's keys");
    r->chunk_ident = SR_MALLOC(sizeof(unsigned long long) * (size_t)batch, "a chunk's identities");
    r->means = SR_MALLOC(sizeof(float) * most * (size_t)r->units, "a chunk's block means");
    r->phi = SR_MALLOC(sizeof(float) * (size_t)r->nsig * batch * r->kmid, "a chunk's phi");
    r->unit_means = SR_MALLOC(sizeof(float) * (size_t)r->nsig * batch * r->units, "a chunk's block means");
    r->job = (sr_job){.stage = "phi", .output = "phi.nc", .unit_dir = "phi-chunks", .unit_name = "chunk",
                      .unit_format = CHUNK_FORMAT, .run_key = "phi.run_chunks", .units = (r->ntodo + batch - 1) / batch,
                      .task = 0, .tasks = 1, .run_units = c->phi.run_chunks, .ctx = r, .compute = compute_unit,
                      .write_unit = write_unit, .unit_matches = unit_matches, .progress = progress, .assemble = assemble};
}

int stage_phi(const semrep_conf *conf, semrep_comm *comm)
{
    phi_run r = {.conf = conf, .comm = comm, .nsig = conf->phi.nsigmas, .blocks = conf->phi.block_means};
    char err[2048] = "";
    if (sr_outputs_ours(conf, comm, (const char *[]){"phi.nc"}, 1)) return 1;
    snprintf(r.path, sizeof r.path, "%s/phi.nc", conf->output_dir);
    if (sr_comm_any(comm, prepare(&r, err, sizeof err))) return fail(&r, err);
    if (sr_data_open(&conf->dataset, conf->output_dir, comm, &r.ds, err, sizeof err)) return fail(&r, err);
    r.kmid = sr_unet_block_channels(&r.net.shape, r.net.shape.levels);
    r.units = r.net.block_offset[r.net.nblocks];
    identify(&r);
    r.job.stage = "phi", r.job.output = "phi.nc";
    const sr_output_state state = sr_job_output_state(&r.job, &r.id, conf, comm, err, sizeof err);
    if (state == SR_OUTPUT_REFUSED) return fail(&r, err);
    if (state == SR_OUTPUT_CURRENT) {
        if (comm->rank == 0) printf("phi: %s is up to date\n", r.path);
        release(&r);
        return 0;
    }
    plan(&r, state == SR_OUTPUT_REUSABLE);
    if (comm->rank == 0)
        printf("phi: %ld images in %ld chunks of %d over %d rank(s), %d sigmas, %d draws, %s\n", r.ntodo, r.job.units,
               conf->phi.batch, comm->size, r.nsig, conf->phi.draws,
               r.blocks ? "every block's means" : "encoder and middle block only");
    r.started = sr_seconds();
    const sr_job_result done = sr_job_run(&r.job, &r.id, conf, comm, err, sizeof err);
    if (done == SR_JOB_FAILED) return fail(&r, err);
    if (done == SR_JOB_WRITTEN && comm->rank == 0) printf("phi: wrote %s\n", r.path);
    release(&r);
    return 0;
}
