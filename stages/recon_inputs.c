#include "stages/recon_inputs.h"

#include <math.h>
#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/shard.h"
#include "core/check.h"
#include "core/rng.h"
#include "io/nc.h"
#include "stages/clusters_file.h"
#include "stages/phi_file.h"
#include "stages/stats_file.h"

int sr_recon_mask(const semrep_conf *c, int kmid, float **mask, int *masked, char *err, size_t errlen)
{
    float *m = *mask = SR_MALLOC(sizeof(float) * kmid, "the mask");
    for (int ch = 0; ch < kmid; ch++) m[ch] = 1.0f;
    *masked = kmid;
    if (!strcmp(c->reconstruct.mask, "all")) return 0;
    char path[SR_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/stats.nc", c->output_dir);
    int ncid, dim, v[SR_STATS_NVARS];
    size_t S = 0, K = 0;
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR)
        return sr_report(err, errlen, "reconstruct.mask = \"%s\" needs %s; run the stats stage first", c->reconstruct.mask, path);
    if (sr_made_from_phi(c->output_dir, "stats.nc", err, errlen) ||
        sr_nc_find_vars(ncid, sr_stats_vars, SR_STATS_NVARS, "sigma kind", v, path, err, errlen))
        return nc_close(ncid), -1;
    nc_inq_dimid(ncid, "sigma", &dim), nc_inq_dimlen(ncid, dim, &S);
    nc_inq_dimid(ncid, "channel", &dim), nc_inq_dimlen(ncid, dim, &K);
    double *sig = SR_CALLOC(S + 1, sizeof(double), "stats.nc's sigmas");
    signed char *kind = SR_CALLOC(S * K + 1, 1, "stats.nc's channel kinds");
    const bool read = nc_get_var_double(ncid, v[SR_STATS_SIGMA], sig) == NC_NOERR &&
                      nc_get_var_schar(ncid, v[SR_STATS_KIND], kind) == NC_NOERR;
    nc_close(ncid);
    if (!read) {
        free(sig), free(kind);
        return sr_report(err, errlen, "%s: cannot read its sigma and kind variables; run the stats stage again", path);
    }
    int s = -1;
    for (size_t q = 0; q < S; q++)
        if (fabs(sig[q] - c->reconstruct.mask_sigma) < 1e-9) s = (int)q;
    const int want = !strcmp(c->reconstruct.mask, "selective") ? SR_KIND_SELECTIVE : SR_KIND_NONSELECTIVE;
    int rc = 0;
    if (s < 0 || (int)K != kmid)
        rc = sr_report(err, errlen, "reconstruct.mask_sigma = %g is not a sigma of %s (or its channels are not the model's)",
                       c->reconstruct.mask_sigma, path);
    *masked = 0;
    for (int ch = 0; !rc && ch < kmid; ch++) *masked += (m[ch] = kind[(size_t)s * K + ch] == want ? 1.0f : 0.0f) > 0;
    if (!rc && *masked == 0)
        rc = sr_report(err, errlen, "reconstruct.mask = \"%s\": %s has no such channel at sigma %g", c->reconstruct.mask,
                       path, c->reconstruct.mask_sigma);
    free(sig), free(kind);
    return rc;
}

/* clusters.nc's sigma and K values, each variable checked against the
 * file's table and bounded; -1 with err. */
static int cluster_keys(int ncid, const char *path, int *v, double *sig, size_t *S, int *ks, size_t *nk, char *err,
                        size_t errlen)
{
    int dim;
    if (sr_nc_find_vars(ncid, sr_clusters_file_vars, SR_CLUSTERS_F_N, "sigma k", v, path, err, errlen)) return -1;
    *S = *nk = 0;
    if (nc_inq_dimid(ncid, "sigma", &dim) || nc_inq_dimlen(ncid, dim, S) || nc_inq_dimid(ncid, "k", &dim) ||
        nc_inq_dimlen(ncid, dim, nk) || *S > SR_MAX_SIGMAS || *nk > 64 ||
        nc_get_var_double(ncid, v[SR_CLUSTERS_F_SIGMA], sig) || nc_get_var_int(ncid, v[SR_CLUSTERS_F_K], ks))
        SR_BAD("%s: its sigma and k variables cannot be read (or hold more than %d and 64 values); run the cluster stage again",
               path, SR_MAX_SIGMAS);
    return 0;
}

static int cluster_members(const semrep_conf *c, const sr_dataset *ds, sr_recon_target *tg, char *err, size_t errlen)
{
    char path[SR_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/clusters.nc", c->output_dir);
    int ncid, dim, ks[64] = {0}, v[SR_CLUSTERS_F_N], sv[SR_CLUSTERS_N];
    size_t S = 0, nk = 0, m = 0;
    double sig[SR_MAX_SIGMAS];
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR)
        return sr_report(err, errlen, "reconstruct.clusters needs %s; run the cluster stage first", path);
    if (sr_made_from_phi(c->output_dir, "clusters.nc", err, errlen) ||
        cluster_keys(ncid, path, v, sig, &S, ks, &nk, err, errlen) ||
        sr_nc_find_space(ncid, sr_clusters_space_vars, SR_CLUSTERS_N, "", "sigma", "members", sv, path, err, errlen))
        return nc_close(ncid), -1;
    if (nc_inq_dimid(ncid, "member", &dim) == NC_NOERR) nc_inq_dimlen(ncid, dim, &m);
    int s = -1, q = c->reconstruct.cluster_k ? -1 : 0;
    for (size_t i = 0; i < S; i++)
        if (fabs(sig[i] - c->reconstruct.cluster_sigma) < 1e-9) s = (int)i;
    for (size_t i = 0; i < nk && q < 0; i++)
        if (ks[i] == c->reconstruct.cluster_k) q = (int)i;
    if (s < 0 || q < 0 || !nk || tg->id >= ks[q]) {
        nc_close(ncid);
        return sr_report(err, errlen, "%s has no cluster %ld at sigma %g with K = %d (reconstruct.clusters, cluster_sigma, cluster_k)",
                         path, tg->id, c->reconstruct.cluster_sigma, q < 0 || !nk ? c->reconstruct.cluster_k : ks[q]);
    }
    long long members[SR_RECON_MAX_MEMBERS];
    const size_t start[4] = {(size_t)s, (size_t)q, (size_t)tg->id, 0}, count[4] = {1, 1, 1, m < SR_RECON_MAX_MEMBERS ? m : SR_RECON_MAX_MEMBERS};
    const int rc = nc_get_vara_longlong(ncid, sv[SR_CLUSTERS_MEMBERS], start, count, members);
    nc_close(ncid);
    if (rc != NC_NOERR) return sr_report(err, errlen, "%s: cannot read the members of cluster %ld", path, tg->id);
    tg->nimages = 0;
    for (size_t i = 0; i < count[3]; i++)
        if (members[i] >= 0 && members[i] < ds->count) tg->images[tg->nimages++] = members[i];
    if (!tg->nimages) return sr_report(err, errlen, "%s: cluster %ld has no members", path, tg->id);
    return 0;
}

int sr_recon_targets(const semrep_conf *c, const sr_dataset *ds, bool conditional, sr_recon_target **out, int *count,
                     char *err, size_t errlen)
{
    const int n = c->reconstruct.ntargets + c->reconstruct.random + c->reconstruct.nclusters;
    sr_recon_target *targets = *out = SR_CALLOC((size_t)(n ? n : 1), sizeof(sr_recon_target), "the targets");
    *count = 0;
    if (!conditional) {
        *count = 1;
        targets[0] = (sr_recon_target){.kind = SR_TARGET_NONE, .id = -1};
        return 0;
    }
    if (n == 0) return sr_report(err, errlen, "the %s sampler needs targets: reconstruct.targets, random or clusters", c->reconstruct.sampler);
    for (int i = 0; i < c->reconstruct.ntargets; i++) {
        if (c->reconstruct.targets[i] >= ds->count)
            return sr_report(err, errlen, "reconstruct.targets: image %d is beyond the %ld images of the data set",
                             c->reconstruct.targets[i], ds->count);
        targets[(*count)++] = (sr_recon_target){.kind = SR_TARGET_IMAGE, .id = c->reconstruct.targets[i], .nimages = 1,
                                             .images = {c->reconstruct.targets[i]}};
    }
    for (int i = 0; i < c->reconstruct.random; i++) {
        uint32_t word;
        const sr_rng_stream s = {.seed = (uint32_t)c->seed, .domain = SR_RNG_RECON, .i0 = 0xFFFFFFFFu};
        sr_rng_words(&s, (uint64_t)i, 1, &word);
        const long image = (long)(((uint64_t)word * (uint64_t)ds->count) >> 32);
        targets[(*count)++] = (sr_recon_target){.kind = SR_TARGET_IMAGE, .id = image, .nimages = 1, .images = {image}};
    }
    for (int i = 0; i < c->reconstruct.nclusters; i++) {
        sr_recon_target *tg = &targets[(*count)++];
        *tg = (sr_recon_target){.kind = SR_TARGET_CLUSTER, .id = c->reconstruct.clusters[i]};
        if (cluster_members(c, ds, tg, err, errlen)) return -1;
    }
    return 0;
}

/* The data set's mean value per colour channel, as a constant image. The
 * sums of fixed chunks of 256 images meet on rank 0 and are added in chunk
 * order, so the image (and the fingerprint it enters) is the same on any
 * number of ranks. */
float *sr_recon_mean_image(sr_dataset *ds, const semrep_comm *comm)
{
    const size_t per_image = (size_t)ds->channels * ds->size * ds->size;
    const long chunk = 256, chunks = (ds->count + chunk - 1) / chunk;
    long first, end;
    sr_shard(chunks, 1, comm->rank, comm->size, &first, &end);
    const int hw = ds->size * ds->size, C = ds->channels;
    double *sums = SR_CALLOC((size_t)((end - first) * C + 1), sizeof(double), "the images' sums");
    float *batch = SR_MALLOC(sizeof(float) * per_image * chunk, "images");
    char err[1024];
    for (long q = first; q < end; q++) {
        const long i0 = q * chunk, n = ds->count - i0 < chunk ? ds->count - i0 : chunk;
        if (sr_dataset_read(ds, i0, n, batch, err, sizeof err)) SR_FAIL("%s", err);
        for (long i = 0; i < n; i++)
            for (int ch = 0; ch < C; ch++)
                for (int p = 0; p < hw; p++) sums[(q - first) * C + ch] += batch[(size_t)i * per_image + (size_t)ch * hw + p];
    }
    free(batch);
    char *all;
    size_t bytes;
    sr_comm_gather(comm, sums, sizeof(double) * (size_t)(end - first) * C, &all, &bytes);
    double total[4] = {0};
    if (comm->rank == 0)
        for (long q = 0; q < chunks; q++)
            for (int ch = 0; ch < C; ch++) total[ch] += ((double *)all)[q * C + ch];
    sr_comm_bcast(comm, total, sizeof total, 0);
    free(all), free(sums);
    float *image = SR_MALLOC(sizeof(float) * per_image, "the mean image");
    for (int ch = 0; ch < C; ch++)
        for (int p = 0; p < hw; p++) image[(size_t)ch * hw + p] = (float)(total[ch] / ((double)ds->count * hw));
    return image;
}
