/* Stage phi (SPEC.md section 3): phi_sigma(x) = (1/n) sum_k abar_mid(x + sigma z_k)
 * for every image of the analysis data and every sigma of phi.sigmas, with
 * every block's means when phi.block_means is on.
 *
 * The images to compute are cut into chunks of phi.batch images (the last
 * may be short); a chunk is the unit of work, of crash safety and of
 * sharding. All draws of all images of a chunk go through the engine as one
 * batch, so an image is always computed in the same company, and its noise
 * is a pure function of (seed, the image's noise key, draw, bits of sigma):
 * phi is the same bit for bit on any number of ranks or threads. Each
 * finished chunk is a small file; when all are there, the ranks write phi.nc
 * together (parallel NetCDF-4), each a contiguous range of images, under a
 * temporary name renamed last, and only then are the chunk files removed
 * (docs/formats.md).
 *
 * A growing data set (nightly runs): when phi.nc exists from the same model
 * and settings but other images, the images it already holds, recognised by
 * their identity (a hash of their pixels and noise key), are copied from it,
 * and only the others are computed. */
#include <math.h>
#include <netcdf.h>
#include <netcdf_par.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "comm/shard.h"
#include "core/check.h"
#include "core/clock.h"
#include "core/rng.h"
#include "io/checkpoint.h"
#include "io/files.h"
#include "io/nc.h"
#include "io/outdir.h"
#include "stages/data.h"
#include "stages/phi_file.h"
#include "stages/model.h"
#include "stages/phi_compute.h"
#include "stages/stage.h"

#define PHI_FORMAT "semrep-phi"
#define PHI_VERSION 1
#define CHUNK_FORMAT "semrep-phi-chunk"

typedef struct {
    const semrep_conf *conf;
    semrep_comm *comm;
    sr_unet net;
    sr_dataset *ds;
    int nsig, kmid, units;
    bool blocks;
    long nchunks, first_chunk, end_chunk;
    char checksum[17], fingerprint[17], provenance[17];
    /* the work: positions to compute, in order (all, or those the previous
     * phi.nc lacks); per position, its row in the previous phi.nc or -1, and
     * its index in todo or -1 (NULL without a previous file) */
    long *todo, ntodo, *reuse_row, *todo_index;
    char path[SR_PATH_MAX + 32], chunk_dir[SR_PATH_MAX + 32];
    /* per chunk */
    sr_unet_work many, one; /* all draws of a chunk; one draw (sigma 0) */
    float *clean, *means, *phi, *unit_means;
    uint32_t *keys; /* the chunk's images' noise keys (sr_dataset_noise_key) */
    unsigned long long *chunk_ident; /* the chunk's images' identities, from the pixels phi was computed on */
} phi_run;

static int draws_at(const phi_run *r, int s) { return r->conf->phi.sigmas[s] == 0.0 ? 1 : r->conf->phi.draws; }

static void chunk_path(const phi_run *r, long chunk, char *out, size_t len)
{
    snprintf(out, len, "%s/chunk-%010ld.nc", r->chunk_dir, chunk);
}

/* What phi depends on: the model, the images, the settings (fingerprint);
 * the same without the images (provenance: what makes a row of one phi.nc
 * valid in another). A chunk or a phi.nc with another fingerprint is never
 * mixed in; rows are reused only under the same provenance. */
static void make_fingerprints(phi_run *r)
{
    const semrep_conf *c = r->conf;
    const long long settings[5] = {c->seed, c->phi.draws, c->phi.batch, c->phi.block_means, r->ds->size};
    XXH3_state_t *h = XXH3_createState();
    for (int with_data = 0; with_data < 2; with_data++) {
        XXH3_64bits_reset(h);
        XXH3_64bits_update(h, r->checksum, sizeof r->checksum);
        if (with_data) sr_data_hash(h, r->ds);
        XXH3_64bits_update(h, settings, sizeof settings);
        XXH3_64bits_update(h, c->phi.sigmas, sizeof(double) * (size_t)c->phi.nsigmas);
        const int noise_version = SR_RNG_NOISE_VERSION; /* rows of other noise never mix */
        XXH3_64bits_update(h, &noise_version, sizeof noise_version);
        /* what rounds differently: a GPU and its products (the CPU's hashes
         * stay as they were before GPUs), and noise named by file names */
        if (!r->net.be->host_memory) {
            XXH3_64bits_update(h, r->net.be->name, strlen(r->net.be->name));
            XXH3_64bits_update(h, c->gpu_math, strlen(c->gpu_math));
        }
        if (r->ds->source->noise_key) XXH3_64bits_update(h, "noise keyed by name", 19);
        snprintf(with_data ? r->fingerprint : r->provenance, sizeof r->fingerprint, "%016llx",
                 (unsigned long long)XXH3_64bits_digest(h));
    }
    XXH3_freeState(h);
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
        int ncid, var, dim;
        size_t old = 0;
        SR_NC(nc_open(r->path, NC_NOWRITE, &ncid), r->path);
        SR_NC(nc_inq_dimid(ncid, "image", &dim), r->path);
        SR_NC(nc_inq_dimlen(ncid, dim, &old), r->path);
        SR_NC(nc_inq_varid(ncid, "image_key", &var), r->path);
        uint64_t (*pairs)[2] = SR_MALLOC(sizeof *pairs * (old ? old : 1), "the previous identities");
        unsigned long long *keys = SR_MALLOC(sizeof *keys * (old ? old : 1), "the previous identities");
        SR_NC(nc_get_var_ulonglong(ncid, var, keys), r->path);
        nc_close(ncid);
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

static void fit_workspaces(phi_run *r, int images)
{
    if (r->one.n == images) return;
    if (r->one.n) {
        sr_unet_work_free(&r->one);
        sr_unet_work_free(&r->many);
    }
    sr_unet_work_init(&r->one, &r->net, images, r->ds->size, r->ds->size, false);
    sr_unet_work_init(&r->many, &r->net, images * r->conf->phi.draws, r->ds->size, r->ds->size, false);
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

static void write_chunk(const phi_run *r, long chunk, const long *positions, int b)
{
    char path[SR_PATH_MAX + 64], tmp[SR_PATH_MAX + 96];
    chunk_path(r, chunk, path, sizeof path);
    sr_tmp_path(path, tmp, sizeof tmp);
    int ncid, dims[3], var, version = 1;
    SR_NC(nc_create(tmp, NC_NETCDF4 | NC_CLOBBER, &ncid), tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "format", CHUNK_FORMAT, tmp);
    sr_nc_put_ints(ncid, NC_GLOBAL, "format_version", &version, 1, tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "fingerprint", r->fingerprint, tmp);
    char hash[17];
    positions_hash(positions, b, hash);
    sr_nc_put_text(ncid, NC_GLOBAL, "positions", hash, tmp);
    const long long first = positions[0], count = b;
    SR_NC(nc_put_att_longlong(ncid, NC_GLOBAL, "first", NC_INT64, 1, &first), tmp);
    SR_NC(nc_put_att_longlong(ncid, NC_GLOBAL, "images", NC_INT64, 1, &count), tmp);
    SR_NC(nc_def_dim(ncid, "sigma", (size_t)r->nsig, &dims[0]), tmp);
    SR_NC(nc_def_dim(ncid, "image", (size_t)b, &dims[1]), tmp);
    SR_NC(nc_def_dim(ncid, "channel", (size_t)r->kmid, &dims[2]), tmp);
    SR_NC(nc_def_var(ncid, "phi", NC_FLOAT, 3, dims, &var), tmp);
    int uvar = -1, kvar;
    SR_NC(nc_def_var(ncid, "image_key", NC_UINT64, 1, &dims[1], &kvar), tmp);
    if (r->blocks) {
        SR_NC(nc_def_dim(ncid, "unit", (size_t)r->units, &dims[2]), tmp);
        SR_NC(nc_def_var(ncid, "block_mean", NC_FLOAT, 3, dims, &uvar), tmp);
    }
    SR_NC(nc_enddef(ncid), tmp);
    SR_NC(nc_put_var_ulonglong(ncid, kvar, r->chunk_ident), tmp);
    SR_NC(nc_put_var_float(ncid, var, r->phi), tmp);
    if (r->blocks) SR_NC(nc_put_var_float(ncid, uvar, r->unit_means), tmp);
    SR_NC(nc_close(ncid), tmp);
    sr_commit_file(tmp, path);
}

/* A chunk file already there for this fingerprint and these images. */
static bool chunk_done(const phi_run *r, long chunk)
{
    const long *positions;
    const int b = chunk_images(r, chunk, &positions);
    char path[SR_PATH_MAX + 64], fp[17], hash[17], want[17];
    chunk_path(r, chunk, path, sizeof path);
    int ncid;
    if (access(path, R_OK) != 0 || nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) return false;
    long long first = -1, count = -1;
    positions_hash(positions, b, want);
    const bool ok = !sr_nc_get_text(ncid, NC_GLOBAL, "fingerprint", fp, sizeof fp) && !strcmp(fp, r->fingerprint) &&
                    nc_get_att_longlong(ncid, NC_GLOBAL, "first", &first) == NC_NOERR && first == positions[0] &&
                    nc_get_att_longlong(ncid, NC_GLOBAL, "images", &count) == NC_NOERR && count == b &&
                    /* a chunk of a contiguous range from before the positions attribute */
                    (sr_nc_get_text(ncid, NC_GLOBAL, "positions", hash, sizeof hash)
                         ? positions[b - 1] - positions[0] == b - 1
                         : !strcmp(hash, want));
    nc_close(ncid);
    return ok;
}

/* A chunk file left by an earlier run still holds these images: the
 * identities it stored match those of the pixels as they are now (the data
 * stamp in the fingerprint is cheap and nearly always enough; this is read
 * only for chunks found at the start of a run). A chunk without identities
 * is computed again. */
static bool chunk_current(phi_run *r, long chunk)
{
    const long *positions;
    const int b = chunk_images(r, chunk, &positions);
    char path[SR_PATH_MAX + 64], err[1024];
    chunk_path(r, chunk, path, sizeof path);
    if (sr_dataset_read_list(r->ds, positions, b, r->clean, err, sizeof err)) SR_FAIL("%s", err);
    int ncid, var;
    SR_NC(nc_open(path, NC_NOWRITE, &ncid), path);
    bool same = nc_inq_varid(ncid, "image_key", &var) == NC_NOERR;
    if (same) SR_NC(nc_get_var_ulonglong(ncid, var, r->chunk_ident), path);
    nc_close(ncid);
    const size_t per_image = (size_t)r->ds->channels * r->ds->size * r->ds->size;
    for (int i = 0; same && i < b; i++)
        same = r->chunk_ident[i] == identity(r->clean + (size_t)i * per_image, per_image,
                                             sr_dataset_noise_key(r->ds, positions[i]));
    return same;
}

/* ---- phi.nc ----------------------------------------------------------------- */

typedef struct {
    int sigma, draws, index, key, label, source, phi, unit;
} phi_vars;

static void define_file(const phi_run *r, int ncid, const char *file, phi_vars *v)
{
    const semrep_conf *c = r->conf;
    const sr_dataset *ds = r->ds;
    int d_sigma, d_image, d_channel, d_unit, d_name, dims[3], version = PHI_VERSION;
    SR_NC(nc_def_dim(ncid, "sigma", (size_t)r->nsig, &d_sigma), file);
    SR_NC(nc_def_dim(ncid, "image", (size_t)ds->count, &d_image), file);
    SR_NC(nc_def_dim(ncid, "channel", (size_t)r->kmid, &d_channel), file);
    SR_NC(nc_def_dim(ncid, "name_len", SR_NAME_MAX, &d_name), file);
    sr_nc_put_text(ncid, NC_GLOBAL, "format", PHI_FORMAT, file);
    sr_nc_put_ints(ncid, NC_GLOBAL, "format_version", &version, 1, file);
    sr_nc_put_text(ncid, NC_GLOBAL, "fingerprint", r->fingerprint, file);
    sr_nc_put_text(ncid, NC_GLOBAL, "provenance", r->provenance, file);
    sr_nc_put_text(ncid, NC_GLOBAL, "checkpoint_checksum", r->checksum, file);
    sr_nc_put_noise_version(ncid, file);
    sr_nc_put_text(ncid, NC_GLOBAL, "dataset", ds->description, file);
    sr_nc_put_text(ncid, NC_GLOBAL, "dataset_stamp", ds->stamp, file);
    char source[SR_PATH_MAX + 32];
    sr_data_source_id(&c->dataset, source, sizeof source);
    sr_nc_put_text(ncid, NC_GLOBAL, "dataset_source", source, file);
    char number[32];
    snprintf(number, sizeof number, "%ld", r->ntodo);
    sr_nc_put_text(ncid, NC_GLOBAL, "images_computed", number, file);
    snprintf(number, sizeof number, "%ld", ds->count - r->ntodo);
    sr_nc_put_text(ncid, NC_GLOBAL, "images_reused", number, file);
    const long long seed = c->seed;
    SR_NC(nc_put_att_longlong(ncid, NC_GLOBAL, "seed", NC_INT64, 1, &seed), file);
    sr_nc_put_text(ncid, NC_GLOBAL, "conf", c->text, file);
    SR_NC(nc_def_var(ncid, "sigma", NC_DOUBLE, 1, &d_sigma, &v->sigma), file);
    sr_nc_put_text(ncid, v->sigma, "units", "pixel units: pixels in [0, 1], so 0.2 is 51 of 255", file);
    SR_NC(nc_def_var(ncid, "draws", NC_INT, 1, &d_sigma, &v->draws), file);
    sr_nc_put_text(ncid, v->draws, "meaning", "noise draws averaged at this sigma", file);
    SR_NC(nc_def_var(ncid, "index", NC_INT64, 1, &d_image, &v->index), file);
    sr_nc_put_text(ncid, v->index, "meaning", "the image's index in the data set's source", file);
    SR_NC(nc_def_var(ncid, "image_key", NC_UINT64, 1, &d_image, &v->key), file);
    sr_nc_put_text(ncid, v->key, "meaning", "the image's identity: XXH3-64 of its pixels (float32, NCHW) seeded with its noise key; a later run reuses the row of an image with the same identity", file);
    v->label = -1;
    if (ds->labels) {
        SR_NC(nc_def_var(ncid, "label", NC_INT, 1, &d_image, &v->label), file);
        char *names = calloc((size_t)ds->nclasses + 1, SR_CLASS_NAME_MAX + 1);
        SR_CHECK(names, "out of memory listing the class names");
        for (int k = 0; k < ds->nclasses; k++) {
            strcat(names, k ? "\n" : "");
            strcat(names, ds->class_names[k]);
        }
        sr_nc_put_text(ncid, v->label, "class_names", names, file);
        free(names);
    }
    dims[0] = d_image;
    dims[1] = d_name;
    SR_NC(nc_def_var(ncid, "source", NC_CHAR, 2, dims, &v->source), file);
    dims[0] = d_sigma;
    dims[1] = d_image;
    dims[2] = d_channel;
    SR_NC(nc_def_var(ncid, "phi", NC_FLOAT, 3, dims, &v->phi), file);
    sr_nc_put_text(ncid, v->phi, "meaning", "mean over draws of the middle block's channel means of D's input x + sigma z", file);
    v->unit = -1;
    if (r->blocks) {
        SR_NC(nc_def_dim(ncid, "unit", (size_t)r->units, &d_unit), file);
        dims[2] = d_unit;
        SR_NC(nc_def_var(ncid, "block_mean", NC_FLOAT, 3, dims, &v->unit), file);
        sr_nc_put_ints(ncid, v->unit, "block_start", r->net.block_offset, (size_t)r->net.nblocks + 1, file);
        char names[1024] = "";
        for (int b = 0; b < r->net.nblocks; b++) {
            const int n = r->net.shape.levels;
            char one[32];
            if (b < n) snprintf(one, sizeof one, "encoder.%d", b);
            else if (b == n) snprintf(one, sizeof one, "mid");
            else snprintf(one, sizeof one, "decoder.%d", 2 * n - b);
            strcat(names, b ? "," : "");
            strcat(names, one);
        }
        sr_nc_put_text(ncid, v->unit, "blocks", names, file);
    }
}

/* A file assembly reads rows from: the previous phi.nc (number -1, kept
 * open) or a chunk (the last one used is kept open). */
typedef struct {
    long number; /* -2: none open */
    int ncid, var_phi, var_unit, var_key; /* var_key -1: a chunk from before image keys */
    char path[SR_PATH_MAX + 64];
} row_file;

static row_file *source_open(const phi_run *r, row_file *previous, row_file *chunk, long number)
{
    row_file *f = number < 0 ? previous : chunk;
    if (f->number == number) return f;
    if (f->number != -2) nc_close(f->ncid);
    if (number < 0) snprintf(f->path, sizeof f->path, "%s", r->path);
    else {
        chunk_path(r, number, f->path, sizeof f->path);
        /* another run in this folder could have replaced it since it was checked */
        if (!chunk_done(r, number))
            SR_FAIL("%s is not the chunk this run computed (is another run using %s?); run again", f->path,
                    r->conf->output_dir);
    }
    SR_NC(nc_open(f->path, NC_NOWRITE, &f->ncid), f->path);
    SR_NC(nc_inq_varid(f->ncid, "phi", &f->var_phi), f->path);
    if (r->blocks) SR_NC(nc_inq_varid(f->ncid, "block_mean", &f->var_unit), f->path);
    if (nc_inq_varid(f->ncid, "image_key", &f->var_key) != NC_NOERR) f->var_key = -1;
    f->number = number;
    return f;
}

/* Rows [row, row + n) of a file into images [at, at + n) of the assembly
 * buffers (sigma-major, b images wide) and their identities into keys;
 * false when the file has no identities (the caller computes them). */
static bool source_read(const phi_run *r, const row_file *f, long row, int n, int at, int b, float *phi, float *units,
                        float *scratch, unsigned long long *keys)
{
    for (int pass = 0; pass < (r->blocks ? 2 : 1); pass++) {
        const int width = pass ? r->units : r->kmid;
        float *out = pass ? units : phi;
        const size_t start[3] = {0, (size_t)row, 0}, count[3] = {(size_t)r->nsig, (size_t)n, (size_t)width};
        SR_NC(nc_get_vara_float(f->ncid, pass ? f->var_unit : f->var_phi, start, count, scratch), f->path);
        for (int s = 0; s < r->nsig; s++)
            memcpy(out + ((size_t)s * b + at) * width, scratch + (size_t)s * n * width, sizeof(float) * n * width);
    }
    if (f->var_key < 0) return false;
    const size_t start[1] = {(size_t)row}, count[1] = {(size_t)n};
    SR_NC(nc_get_vara_ulonglong(f->ncid, f->var_key, start, count, keys + at), f->path);
    return true;
}

/* Every rank writes a contiguous range of images, gathering their rows from
 * the chunks and the previous phi.nc in runs; no rank holds the whole array. */
static int assemble(phi_run *r, char *err, size_t errlen)
{
    const sr_dataset *ds = r->ds;
    const semrep_conf *c = r->conf;
    char tmp[SR_PATH_MAX + 48];
    snprintf(tmp, sizeof tmp, "%s.tmp.assembling", r->path); /* the same name on every rank */
    if (r->comm->rank == 0) sr_temp_add(tmp); /* rank 0 commits it */
    int ncid;
    const int rc = nc_create_par(tmp, NC_NETCDF4 | NC_CLOBBER, r->comm->world, MPI_INFO_NULL, &ncid);
    if (rc != NC_NOERR) return sr_report(err, errlen, "cannot create %s: %s; check the output folder", tmp, nc_strerror(rc));
    phi_vars v;
    define_file(r, ncid, tmp, &v);
    SR_NC(nc_enddef(ncid), tmp);
    const int vars[] = {v.sigma, v.draws, v.index, v.key, v.label, v.source, v.phi, v.unit};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (vars[i] >= 0) SR_NC(nc_var_par_access(ncid, vars[i], NC_INDEPENDENT), tmp);
    if (r->comm->rank == 0) {
        int draws[SR_MAX_SIGMAS];
        for (int s = 0; s < r->nsig; s++) draws[s] = draws_at(r, s);
        SR_NC(nc_put_var_double(ncid, v.sigma, c->phi.sigmas), tmp);
        SR_NC(nc_put_var_int(ncid, v.draws, draws), tmp);
    }
    const long b_max = c->phi.batch;
    const size_t per_image = (size_t)ds->channels * ds->size * ds->size;
    const int width = r->blocks && r->units > r->kmid ? r->units : r->kmid;
    float *phi = SR_MALLOC(sizeof(float) * (size_t)r->nsig * b_max * r->kmid, "a block of phi rows");
    float *units = r->blocks ? SR_MALLOC(sizeof(float) * (size_t)r->nsig * b_max * r->units, "a block of rows") : NULL;
    float *scratch = SR_MALLOC(sizeof(float) * (size_t)r->nsig * b_max * width, "a block of rows");
    char *names = SR_MALLOC((size_t)b_max * SR_NAME_MAX, "a block's names");
    long long *index = SR_MALLOC(sizeof(long long) * (size_t)b_max, "a block's indices");
    unsigned long long *keys = SR_MALLOC(sizeof(unsigned long long) * (size_t)b_max, "a block's identities");
    int *label = SR_MALLOC(sizeof(int) * (size_t)b_max, "a block's labels");
    row_file previous = {.number = -2}, current = {.number = -2};
    long first, end;
    sr_shard(ds->count, b_max, r->comm->rank, r->comm->size, &first, &end);
    for (long i0 = first; i0 < end; i0 += b_max) {
        const int b = (int)(end - i0 < b_max ? end - i0 : b_max);
        /* runs of images whose rows follow each other in one source */
        bool keyed = true;
        for (int i = 0; i < b;) {
            const long p = i0 + i;
            const long file = r->todo_index[p] < 0 ? -1 : r->todo_index[p] / b_max;
            const long row = file < 0 ? r->reuse_row[p] : r->todo_index[p] % b_max;
            int n = 1;
            while (i + n < b) {
                const long q = p + n;
                const long qfile = r->todo_index[q] < 0 ? -1 : r->todo_index[q] / b_max;
                const long qrow = qfile < 0 ? r->reuse_row[q] : r->todo_index[q] % b_max;
                if (qfile != file || qrow != row + n) break;
                n++;
            }
            const row_file *f = source_open(r, &previous, &current, file);
            keyed &= source_read(r, f, row, n, i, b, phi, units, scratch, keys);
            i += n;
        }
        /* chunks from before image keys: the identities from the pixels as they are now */
        if (!keyed && sr_dataset_read(r->ds, i0, b, r->clean, err, errlen)) SR_FAIL("%s", err);
        memset(names, 0, (size_t)b * SR_NAME_MAX);
        for (int i = 0; i < b; i++) {
            index[i] = sr_dataset_origin(ds, i0 + i);
            label[i] = sr_dataset_label(ds, i0 + i);
            if (!keyed)
                keys[i] = identity(r->clean + (size_t)i * per_image, per_image, sr_dataset_noise_key(ds, i0 + i));
            sr_dataset_name(ds, i0 + i, names + (size_t)i * SR_NAME_MAX, SR_NAME_MAX);
        }
        const size_t start1[1] = {(size_t)i0}, count1[1] = {(size_t)b};
        const size_t start2[2] = {(size_t)i0, 0}, count2[2] = {(size_t)b, SR_NAME_MAX};
        SR_NC(nc_put_vara_longlong(ncid, v.index, start1, count1, index), tmp);
        SR_NC(nc_put_vara_ulonglong(ncid, v.key, start1, count1, keys), tmp);
        if (v.label >= 0) SR_NC(nc_put_vara_int(ncid, v.label, start1, count1, label), tmp);
        SR_NC(nc_put_vara_text(ncid, v.source, start2, count2, names), tmp);
        const size_t start3[3] = {0, (size_t)i0, 0};
        const size_t count3[3] = {(size_t)r->nsig, (size_t)b, (size_t)r->kmid};
        SR_NC(nc_put_vara_float(ncid, v.phi, start3, count3, phi), tmp);
        if (r->blocks) {
            const size_t countu[3] = {(size_t)r->nsig, (size_t)b, (size_t)r->units};
            SR_NC(nc_put_vara_float(ncid, v.unit, start3, countu, units), tmp);
        }
    }
    if (previous.number != -2) nc_close(previous.ncid);
    if (current.number != -2) nc_close(current.ncid);
    free(phi), free(units), free(scratch), free(names), free(index), free(keys), free(label);
    SR_NC(nc_close(ncid), tmp);
    sr_comm_barrier(r->comm);
    if (r->comm->rank == 0) sr_outdir_commit(tmp, r->conf->output_dir, "phi.nc");
    sr_comm_barrier(r->comm);
    /* phi.nc is in place: the chunks are no longer needed */
    for (long chunk = r->first_chunk; chunk < r->end_chunk; chunk++) {
        char path[SR_PATH_MAX + 64];
        chunk_path(r, chunk, path, sizeof path);
        unlink(path);
    }
    sr_comm_barrier(r->comm);
    if (r->comm->rank == 0) rmdir(r->chunk_dir);
    return 0;
}

/* An existing phi.nc: up to date (1), absent (0), from the same model,
 * settings and data set but other images, so its rows can be reused (2), or
 * made from something else (-1, refused by name: never mixed). */
static int existing(const phi_run *r, char *err, size_t errlen)
{
    int ncid, var;
    if (access(r->path, F_OK) != 0) return 0;
    const int noise = sr_file_noise_version(r->path);
    if (noise != SR_RNG_NOISE_VERSION) { /* none of its rows can be reused: they are made again, all of them */
        printf("phi: %s was drawn with noise version %d, this semrep draws version %d; computing phi again\n", r->path,
               noise, SR_RNG_NOISE_VERSION);
        return 0;
    }
    if (nc_open(r->path, NC_NOWRITE, &ncid) != NC_NOERR)
        return sr_report(err, errlen, "%s exists but cannot be opened; move it away to compute phi again", r->path);
    char fp[17] = "", prov[17] = "", sum[17] = "", data[2 * SR_PATH_MAX] = "", source[SR_PATH_MAX + 32] = "",
         ours[SR_PATH_MAX + 32];
    sr_data_source_id(&r->conf->dataset, ours, sizeof ours);
    sr_nc_get_text(ncid, NC_GLOBAL, "dataset_source", source, sizeof source);
    sr_nc_get_text(ncid, NC_GLOBAL, "fingerprint", fp, sizeof fp);
    sr_nc_get_text(ncid, NC_GLOBAL, "provenance", prov, sizeof prov);
    sr_nc_get_text(ncid, NC_GLOBAL, "checkpoint_checksum", sum, sizeof sum);
    sr_nc_get_text(ncid, NC_GLOBAL, "dataset", data, sizeof data);
    const bool keyed = nc_inq_varid(ncid, "image_key", &var) == NC_NOERR;
    nc_close(ncid);
    if (!strcmp(fp, r->fingerprint)) return 1;
    const bool same_source = !strcmp(source, ours);
    if (keyed && same_source && !strcmp(prov, r->provenance)) return 2;
    if (!keyed && !strcmp(sum, r->checksum) && (same_source || !strcmp(data, r->ds->description)))
        return sr_report(err, errlen, "%s was made by a semrep without image keys, so its rows cannot be reused for "
                                      "other images; move it away to compute phi again", r->path);
    if (strcmp(sum, r->checksum))
        return sr_report(err, errlen, "%s was made from the checkpoint with checksum %s, not this run's %s; move it away or use another output_dir",
                         r->path, sum, r->checksum);
    if (!same_source && strcmp(data, r->ds->description))
        return sr_report(err, errlen, "%s was made from another data set (%s); move it away or use another output_dir", r->path, data);
    return sr_report(err, errlen, "%s was made with other phi settings or images; move it away or use another output_dir", r->path);
}

/* ---- the stage -------------------------------------------------------------- */

static int prepare(phi_run *r, char *err, size_t errlen)
{
    const semrep_conf *c = r->conf;
    const sr_backend *be = sr_stage_backend(c, r->comm, 0, err, errlen);
    if (!be || sr_output_ready(c->output_dir, err, errlen)) return -1;
    /* the workspace of one chunk's draws, and of its one-draw sigma 0 */
    if (sr_model_open(c, be, c->phi.batch * (c->phi.draws + 1), false, &r->net, err, errlen)) return -1;
    float *host = SR_MALLOC(r->net.param_floats * sizeof(float), "the checksum");
    be->to_host(host, r->net.param, r->net.param_floats * sizeof(float));
    sr_checkpoint_checksum(&r->net, host, r->checksum);
    free(host);
    return 0;
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

int stage_phi(const semrep_conf *conf, semrep_comm *comm)
{
    phi_run r = {.conf = conf, .comm = comm, .nsig = conf->phi.nsigmas, .blocks = conf->phi.block_means};
    char err[2048] = "";
    if (sr_outputs_ours(conf, comm, (const char *[]){"phi.nc"}, 1)) return 1;
    snprintf(r.path, sizeof r.path, "%s/phi.nc", conf->output_dir);
    snprintf(r.chunk_dir, sizeof r.chunk_dir, "%s/phi-chunks", conf->output_dir);
    if (sr_comm_any(comm, prepare(&r, err, sizeof err))) return fail(&r, err);
    if (sr_data_open(&conf->dataset, conf->output_dir, comm, &r.ds, err, sizeof err)) return fail(&r, err);
    r.kmid = sr_unet_block_channels(&r.net.shape, r.net.shape.levels);
    r.units = r.net.block_offset[r.net.nblocks];
    make_fingerprints(&r);
    /* rank 0 reads an existing phi.nc; every rank takes its answer */
    int state = comm->rank == 0 ? existing(&r, err, sizeof err) : 0;
    sr_comm_bcast(comm, &state, sizeof state, 0);
    if (state < 0) return fail(&r, err);
    if (state == 1) {
        if (comm->rank == 0) printf("phi: %s is up to date\n", r.path);
        release(&r);
        return 0;
    }
    if (comm->rank == 0 && sr_make_dirs(r.chunk_dir, err, sizeof err)) SR_FAIL("%s", err);
    sr_comm_barrier(comm);

    const long count = r.ds->count, batch = conf->phi.batch;
    const size_t per_image = (size_t)r.ds->channels * r.ds->size * r.ds->size;
    r.clean = SR_MALLOC(sizeof(float) * per_image * (size_t)batch, "a chunk's images");
    if (state == 2) { /* a growing data set: reuse what the previous phi.nc has */
        uint64_t *ident = identify_all(&r);
        match_previous(&r, ident);
        free(ident);
    }
    plan_work(&r);
    if (state == 2 && comm->rank == 0)
        printf("phi: %s holds %ld of these %ld images (same model and settings); computing the other %ld\n", r.path,
               count - r.ntodo, count, r.ntodo);
    r.nchunks = (r.ntodo + batch - 1) / batch;
    long first, end;
    sr_shard(r.ntodo, batch, comm->rank, comm->size, &first, &end);
    r.first_chunk = first / batch;
    r.end_chunk = (end + batch - 1) / batch;
    const size_t most = (size_t)batch * conf->phi.draws;
    r.keys = SR_MALLOC(sizeof(uint32_t) * (size_t)batch, "a chunk's keys");
    r.chunk_ident = SR_MALLOC(sizeof(unsigned long long) * (size_t)batch, "a chunk's identities");
    r.means = SR_MALLOC(sizeof(float) * most * (size_t)r.units, "a chunk's block means");
    r.phi = SR_MALLOC(sizeof(float) * (size_t)r.nsig * batch * r.kmid, "a chunk's phi");
    r.unit_means = SR_MALLOC(sizeof(float) * (size_t)r.nsig * batch * r.units, "a chunk's block means");
    if (comm->rank == 0)
        printf("phi: %ld images in %ld chunks of %ld over %d rank(s), %d sigmas, %d draws, %s\n", r.ntodo, r.nchunks, batch,
               comm->size, r.nsig, conf->phi.draws, r.blocks ? "every block's means" : "encoder and middle block only");
    double start = sr_seconds(), printed = start;
    long done_images = 0, computed = 0, draws_per_image = 0;
    for (int s = 0; s < r.nsig; s++) draws_per_image += draws_at(&r, s);
    for (long chunk = r.first_chunk; chunk < r.end_chunk; chunk++) {
        if (chunk_done(&r, chunk) && chunk_current(&r, chunk)) continue;
        if (conf->phi.run_chunks && computed == conf->phi.run_chunks) break;
        const long *positions;
        const int b = chunk_images(&r, chunk, &positions);
        compute_chunk(&r, positions, b);
        write_chunk(&r, chunk, positions, b);
        computed++;
        done_images += b;
        const double now = sr_seconds();
        if (comm->rank == 0 && (now - printed > 10.0 || chunk + 1 == r.end_chunk)) {
            const long i0 = chunk * batch;
            const double rate = done_images / (now - start) * comm->size;
            const double left = (double)(end - i0 - b) * comm->size / rate;
            printf("phi: %ld of %ld images (at rank 0's pace: %.1f images/s, %.0f forward passes/s, %.1f min left)\n",
                   (i0 + b - first) * comm->size < r.ntodo ? (i0 + b - first) * comm->size : r.ntodo, r.ntodo, rate,
                   rate * (double)draws_per_image, left / 60.0);
            fflush(stdout);
            printed = now;
        }
    }
    /* Everyone's chunks are there, or this run stops (phi.run_chunks). */
    bool mine_done = true;
    for (long chunk = r.first_chunk; chunk < r.end_chunk && mine_done; chunk++) mine_done = chunk_done(&r, chunk);
    if (sr_comm_any(comm, !mine_done)) {
        if (comm->rank == 0) printf("phi: stopped with chunks to do (phi.run_chunks); run again to resume\n");
        release(&r);
        return 0;
    }
    const int rc = assemble(&r, err, sizeof err);
    if (sr_comm_any(comm, rc)) return fail(&r, err);
    if (comm->rank == 0) printf("phi: wrote %s\n", r.path);
    release(&r);
    return 0;
}
