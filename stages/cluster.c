/* Stage cluster (SPEC.md section 5, docs/analysis.md): k-means on phi at the
 * conf's sigmas and K values, each image's nearest neighbours in phi, and how
 * well both agree with the labels; the same measures on the raw pixels of the
 * same images, in the same run, as the baseline to beat.
 *
 * Each rank holds only its rows (docs/analysis.md states the memory bound).
 * k-means reduces sums. The exact neighbour search (up to cluster.exact_max
 * images) passes every rank's rows to all in blocks, and each rank keeps its
 * own rows' nearest; above it, a seeded sample of cluster.queries images is
 * searched against every rank's rows and the lists merged on rank 0. Every
 * rank writes its own rows of clusters.nc (parallel NetCDF); only the
 * per-image integers of the active-set overlaps meet on rank 0. The linear
 * probe (stages/probe.h) reads each space's rows where k-means has them. */
#include <math.h>
#include <netcdf.h>
#include <netcdf_par.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/shard.h"
#include "core/check.h"
#include "core/rng.h"
#include "io/nc.h"
#include "io/outdir.h"
#include "stages/data.h"
#include "stages/clusters_file.h"
#include "stages/kmeans.h"
#include "stages/measures.h"
#include "stages/model.h"
#include "stages/phi_file.h"
#include "stages/probe.h"
#include "stages/set_overlap.h"
#include "stages/stage.h"

#define CLUSTERS_FORMAT "semrep-clusters"
#define KNN_KS 2
static const int knn_k[KNN_KS] = {1, 10};
/* Philox streams of the cluster domain besides k-means' (i0 = its restart) */
#define QUERY_STREAM 0xFFFFFFFFu      /* the sampled queries */
#define PROJECTION_STREAM 0xFFFFFFFEu /* the pixels' random projection, i1 = the pixel */
#define ROW_BLOCK 1024                /* rows per block of the neighbour search */
#define QUERY_BLOCK 128               /* queries per block of distances */

/* What one space (phi at a sigma, or pixels) gives for every K: the scalars
 * rank 0 writes and prints (per-image results go to the file as they come). */
typedef struct {
    double inertia[16], nmi[16], purity[16], ari[16], within[16], across[16];
    double knn[KNN_KS];
} space_result;

/* A space's variables in clusters.nc (the order of define_space). */

typedef struct {
    const semrep_conf *conf;
    semrep_comm *comm;
    const sr_backend *be;
    sr_phi_file f;
    long first, end, images;
    int nk, kmax, nn, nmembers, classes;
    int *labels; /* every image's: the neighbours' votes */
    bool sampled;        /* above cluster.exact_max: neighbours of a sample of queries */
    long nq;             /* queries: every image, or the sample */
    long long *queries;  /* the sample's image indices, ascending (every rank); NULL when exact */
    space_result *per_sigma, pixels;
    int nsig, sig_index[SR_MAX_SIGMAS];
    sr_dataset *ds;      /* the pixels' data set, when cluster.pixels */
    int pixel_source, pixel_dim; /* pixels per image, and the dimensions clustered (projected when fewer) */
    int ncid, v_query, v_phi[SR_CLUSTERS_N], v_pix[SR_CLUSTERS_N];
    sr_probe probe;
    char tmp[SR_PATH_MAX + 48], path[SR_PATH_MAX + 32];
} cluster_run;

/* ---- neighbours ------------------------------------------------------------ */

/* Puts rows j0 .. j0 + cnt (their squared distances d2, b x cnt) into the
 * nearest-nn lists of b queries (image indices q), ordered by distance, ties
 * by index, as a scan in index order keeps them; a query is not its own
 * neighbour. Lists start with index -1 at infinity. */
static void keep_nearest(const float *d2, long b, long cnt, long j0, const long long *q, int nn, int *idx, float *dist)
{
#pragma omp parallel for schedule(static)
    for (long i = 0; i < b; i++) {
        int *ni = idx + (size_t)i * nn;
        float *nd = dist + (size_t)i * nn;
        for (long c = 0; c < cnt; c++) {
            const long j = j0 + c;
            const float v = d2[(size_t)i * cnt + c];
            if (j == q[i] || v > nd[nn - 1] || (v == nd[nn - 1] && j > ni[nn - 1])) continue;
            int at = nn - 1;
            while (at > 0 && (nd[at - 1] > v || (nd[at - 1] == v && ni[at - 1] > j))) {
                nd[at] = nd[at - 1];
                ni[at] = ni[at - 1];
                at--;
            }
            nd[at] = v;
            ni[at] = (int)j;
        }
    }
}

static void empty_lists(long count, int nn, int *idx, float *dist)
{
    for (size_t i = 0; i < (size_t)count * nn; i++) idx[i] = -1, dist[i] = INFINITY;
}

/* The nearest of nq queries (host rows qx, image indices q) among rows
 * j0 .. j0 + cnt (backend memory d_rows, squared norms rn), into their lists. */
static void search_block(const cluster_run *r, const float *qx, const long long *q, long nq, const float *d_rows,
                         const float *rn, long cnt, long j0, int dim, int *idx, float *dist)
{
    const sr_backend *be = r->be;
    float *qn = SR_MALLOC(sizeof(float) * QUERY_BLOCK, "query norms");
    float *d2 = SR_MALLOC(sizeof(float) * QUERY_BLOCK * (size_t)cnt, "neighbour distances");
    float *work = sr_backend_work(be, QUERY_BLOCK * (size_t)cnt, "neighbour distances");
    float *d_q = sr_backend_work(be, QUERY_BLOCK * (size_t)dim, "the queries");
    for (long i0 = 0; i0 < nq; i0 += QUERY_BLOCK) {
        const long b = nq - i0 < QUERY_BLOCK ? nq - i0 : QUERY_BLOCK;
        const float *x = qx + (size_t)i0 * dim;
        sr_squared_norms(x, b, dim, qn);
        if (!sr_be_host_memory(be)) sr_be_to_device(be, d_q, x, sizeof(float) * (size_t)b * dim);
        sr_distances(be, sr_be_host_memory(be) ? x : d_q, qn, b, d_rows, rn, cnt, dim, work, d2);
        keep_nearest(d2, b, cnt, j0, q + i0, r->nn, idx + (size_t)i0 * r->nn, dist + (size_t)i0 * r->nn);
    }
    sr_backend_drop(be, work, NULL), sr_backend_drop(be, d_q, NULL);
    free(qn), free(d2);
}

/* Exact search: each rank's rows go to every rank in blocks of ROW_BLOCK
 * (broadcast by their owner); every rank keeps its own rows' nearest. No
 * rank holds more than its rows and one block. */
static void exact_neighbours(const cluster_run *r, const float *rows, int dim, int *idx, float *dist)
{
    const semrep_comm *comm = r->comm;
    const long mine = r->end - r->first;
    long long *q = SR_MALLOC(sizeof(long long) * (size_t)(mine ? mine : 1), "the queries");
    for (long i = 0; i < mine; i++) q[i] = r->first + i;
    float *block = SR_MALLOC(sizeof(float) * ROW_BLOCK * (size_t)dim, "a block of rows");
    float *bn = SR_MALLOC(sizeof(float) * ROW_BLOCK, "a block's norms");
    float *d_block = sr_backend_work(r->be, ROW_BLOCK * (size_t)dim, "a block of rows");
    empty_lists(mine, r->nn, idx, dist);
    for (int t = 0; t < comm->size; t++) {
        long tf, te;
        sr_shard(r->images, SR_KMEANS_ROW_ALIGN, t, comm->size, &tf, &te); /* rank t's rows, as the stage cut them */
        for (long j0 = tf; j0 < te; j0 += ROW_BLOCK) {
            const long cnt = te - j0 < ROW_BLOCK ? te - j0 : ROW_BLOCK;
            if (t == comm->rank) memcpy(block, rows + (size_t)(j0 - r->first) * dim, sizeof(float) * (size_t)cnt * dim);
            sr_comm_bcast(comm, block, sizeof(float) * (size_t)cnt * dim, t);
            sr_squared_norms(block, cnt, dim, bn);
            if (!sr_be_host_memory(r->be)) sr_be_to_device(r->be, d_block, block, sizeof(float) * (size_t)cnt * dim);
            search_block(r, rows, q, mine, sr_be_host_memory(r->be) ? block : d_block, bn, cnt, j0, dim, idx, dist);
        }
    }
    sr_backend_drop(r->be, d_block, NULL);
    free(q), free(block), free(bn);
}

/* Sampled search: the queries' rows, QUERY_BLOCK at a time, go from their
 * owners to every rank (a sum of rows that are zero elsewhere, exact); each
 * rank searches its rows; rank 0 merges the lists, in rank order, into
 * idx and dist (nq x nn, rank 0 only). */
static void sampled_neighbours(const cluster_run *r, const float *rows, const sr_kmeans_data *x, int dim, int *idx,
                               float *dist)
{
    const semrep_comm *comm = r->comm;
    const long nq = r->nq;
    int *mi = SR_MALLOC(sizeof(int) * (size_t)nq * r->nn, "the queries' neighbours");
    float *md = SR_MALLOC(sizeof(float) * (size_t)nq * r->nn, "the queries' neighbours");
    empty_lists(nq, r->nn, mi, md);
    double *sum = SR_MALLOC(sizeof(double) * QUERY_BLOCK * (size_t)dim, "a block of queries");
    float *qx = SR_MALLOC(sizeof(float) * QUERY_BLOCK * (size_t)dim, "a block of queries");
    for (long i0 = 0; i0 < nq; i0 += QUERY_BLOCK) {
        const long b = nq - i0 < QUERY_BLOCK ? nq - i0 : QUERY_BLOCK;
        memset(sum, 0, sizeof(double) * (size_t)b * dim);
        for (long i = 0; i < b; i++) {
            const long long g = r->queries[i0 + i];
            if (g >= r->first && g < r->end)
                for (int d = 0; d < dim; d++) sum[(size_t)i * dim + d] = rows[(size_t)(g - r->first) * dim + d];
        }
        sr_comm_sum(comm, sum, (int)(b * dim));
        for (size_t e = 0; e < (size_t)b * dim; e++) qx[e] = (float)sum[e];
        if (x->count) /* my rows, in blocks */
            for (long j0 = 0; j0 < x->count; j0 += ROW_BLOCK) {
                const long cnt = x->count - j0 < ROW_BLOCK ? x->count - j0 : ROW_BLOCK;
                search_block(r, qx, r->queries + i0, b, x->dev + (size_t)j0 * dim, x->norm + j0, cnt, r->first + j0,
                             dim, mi + (size_t)i0 * r->nn, md + (size_t)i0 * r->nn);
            }
    }
    free(sum), free(qx);
    char *ai, *ad;
    size_t bi, bd;
    sr_comm_gather(comm, mi, sizeof(int) * (size_t)nq * r->nn, &ai, &bi);
    sr_comm_gather(comm, md, sizeof(float) * (size_t)nq * r->nn, &ad, &bd);
    if (comm->rank == 0) {
        empty_lists(nq, r->nn, idx, dist);
        const int *all_i = (const int *)ai;
        const float *all_d = (const float *)ad;
        for (int t = 0; t < comm->size; t++)
            for (long i = 0; i < nq; i++)
                for (int j = 0; j < r->nn; j++) {
                    const size_t at = ((size_t)t * nq + i) * r->nn + j;
                    if (all_i[at] < 0) continue;
                    /* one candidate: a 1 x 1 distance block at its own index */
                    keep_nearest(&all_d[at], 1, 1, all_i[at], &r->queries[i], r->nn, idx + (size_t)i * r->nn,
                                 dist + (size_t)i * r->nn);
                }
    }
    free(ai), free(ad), free(mi), free(md);
}

/* k-NN label accuracy of count queries (image indices q, or first + i when
 * q is NULL) from their lists: the majority label of the k nearest; a tie
 * goes to the tied label met first (nearest). Adds to correct and counted. */
static void knn_votes(const int *nbr, int nn, const int *labels, const long long *q, long first, long count, int k,
                      int classes, double *correct, double *counted)
{
    int *votes = SR_CALLOC((size_t)(classes ? classes : 1), sizeof(int), "the votes");
    for (long i = 0; i < count; i++) {
        const int want = labels[q ? q[i] : first + i];
        if (want < 0) continue;
        memset(votes, 0, sizeof(int) * (size_t)classes);
        int top = 0, best = -1;
        for (int j = 0; j < k && j < nn; j++) {
            const int l = labels[nbr[(size_t)i * nn + j]];
            if (l >= 0 && ++votes[l] > top) top = votes[l];
        }
        for (int j = 0; j < k && j < nn && best < 0; j++) { /* a tie: the nearest of the tied labels */
            const int l = labels[nbr[(size_t)i * nn + j]];
            if (l >= 0 && votes[l] == top) best = l;
        }
        *correct += best == want;
        *counted += 1.0;
    }
    free(votes);
}

/* ---- the file ------------------------------------------------------------- */

static void define_space(int ncid, const char *prefix, const char *lead, int *v, const char *f)
{
    sr_nc_define_space(ncid, sr_clusters_space_vars, SR_CLUSTERS_N, prefix, lead, v, f);
    for (int i = 0; i < SR_CLUSTERS_N; i++) SR_NC(nc_var_par_access(ncid, v[i], NC_INDEPENDENT), f);
}

/* clusters.nc, written by every rank under one temporary name, defined
 * whole before any result comes. */
static void create_file(cluster_run *r)
{
    const semrep_conf *c = r->conf;
    snprintf(r->path, sizeof r->path, "%s/clusters.nc", c->output_dir);
    snprintf(r->tmp, sizeof r->tmp, "%s.tmp.writing", r->path); /* the same name on every rank */
    if (r->comm->rank == 0) sr_temp_add(r->tmp); /* rank 0 commits it */
    const char *tmp = r->tmp;
    int ncid, version = SR_CLUSTERS_FORMAT_VERSION, dim, fv[SR_CLUSTERS_F_N];
    SR_NC(nc_create_par(tmp, NC_NETCDF4 | NC_CLOBBER, r->comm->world, MPI_INFO_NULL, &ncid), tmp);
    r->ncid = ncid;
    sr_nc_put_text(ncid, NC_GLOBAL, "format", CLUSTERS_FORMAT, tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "Conventions", "CF-1.8", tmp);
    sr_nc_put_ints(ncid, NC_GLOBAL, "format_version", &version, 1, tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "phi_fingerprint", r->f.fingerprint, tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "conf", c->text, tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "neighbour_search", r->sampled ? "sampled" : "exact", tmp);
    const long long nq = r->nq;
    SR_NC(nc_put_att_longlong(ncid, NC_GLOBAL, "knn_queries", NC_INT64, 1, &nq), tmp);
    const struct { const char *name; size_t len; } dims[] = {
        {"sigma", (size_t)r->nsig}, {"k", (size_t)r->nk}, {"image", (size_t)r->images}, {"cluster", (size_t)r->kmax},
        {"member", (size_t)r->nmembers}, {"query", (size_t)r->nq}, {"neighbour", (size_t)r->nn}, {"knn", KNN_KS}};
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++) SR_NC(nc_def_dim(ncid, dims[i].name, dims[i].len, &dim), tmp);
    sr_nc_define_vars(ncid, sr_clusters_file_vars, SR_CLUSTERS_F_N, "", fv, tmp);
    for (int i = 0; i < SR_CLUSTERS_F_N; i++) SR_NC(nc_var_par_access(ncid, fv[i], NC_INDEPENDENT), tmp);
    r->v_query = fv[SR_CLUSTERS_F_QUERY];
    define_space(ncid, "", "sigma", r->v_phi, tmp);
    if (c->cluster.pixels) {
        define_space(ncid, "pixel_", NULL, r->v_pix, tmp);
        sr_nc_put_ints(ncid, NC_GLOBAL, "pixel_source_dims", &r->pixel_source, 1, tmp);
        sr_nc_put_ints(ncid, NC_GLOBAL, "pixel_dims", &r->pixel_dim, 1, tmp);
        sr_nc_put_text(ncid, NC_GLOBAL, "pixel_projection",
                       r->pixel_dim < r->pixel_source ? "random +-1 (Achlioptas), seeded" : "none", tmp);
    }
    sr_probe_define(&r->probe, ncid, r->f.channels, c->cluster.pixels ? r->pixel_dim : 0, tmp);
    SR_NC(nc_enddef(ncid), tmp);
    sr_probe_write_split(&r->probe, ncid, tmp);
    if (r->comm->rank == 0) {
        double sig[SR_MAX_SIGMAS];
        for (int s = 0; s < r->nsig; s++) sig[s] = r->f.sigma[r->sig_index[s]];
        SR_NC(nc_put_var_double(ncid, fv[SR_CLUSTERS_F_SIGMA], sig), tmp);
        SR_NC(nc_put_var_int(ncid, fv[SR_CLUSTERS_F_K], c->cluster.k), tmp);
        SR_NC(nc_put_var_int(ncid, fv[SR_CLUSTERS_F_KNN], knn_k), tmp);
        if (r->sampled) SR_NC(nc_put_var_longlong(ncid, r->v_query, r->queries), tmp);
    }
    if (!r->sampled && r->end > r->first) { /* every image is a query: each rank its own */
        long long *q = SR_MALLOC(sizeof(long long) * (size_t)(r->end - r->first), "the query indices");
        for (long i = r->first; i < r->end; i++) q[i - r->first] = i;
        const size_t start = (size_t)r->first, count = (size_t)(r->end - r->first);
        SR_NC(nc_put_vara_longlong(ncid, r->v_query, &start, &count, q), tmp);
        free(q);
    }
}

/* Rank 0: a space's scalars, at sigma slot s (-1: the pixels). */
static void write_scalars(const cluster_run *r, int s, const space_result *x)
{
    const int *v = s >= 0 ? r->v_phi : r->v_pix;
    const size_t o = s >= 0 ? 1 : 0, start[2] = {(size_t)(s >= 0 ? s : 0), 0}, count[2] = {1, (size_t)r->nk};
    const double *rows[6] = {x->inertia, x->nmi, x->purity, x->ari, x->within, x->across};
    for (int i = 0; i < 6; i++) SR_NC(nc_put_vara_double(r->ncid, v[SR_CLUSTERS_INERTIA + i], start + 1 - o, count + 1 - o, rows[i]), r->tmp);
    const size_t kc[2] = {1, KNN_KS};
    SR_NC(nc_put_vara_double(r->ncid, v[SR_CLUSTERS_KNN], start + 1 - o, kc + 1 - o, x->knn), r->tmp);
}

/* Rows first .. first + count of a space's neighbour lists (distances squared). */
static void write_neighbours(const cluster_run *r, int s, long first, long count, const int *idx, const float *d2)
{
    if (!count) return;
    const int *v = s >= 0 ? r->v_phi : r->v_pix;
    const size_t o = s >= 0 ? 1 : 0, start[3] = {(size_t)(s >= 0 ? s : 0), (size_t)first, 0},
                 cnt[3] = {1, (size_t)count, (size_t)r->nn};
    float *d = SR_MALLOC(sizeof(float) * (size_t)count * r->nn, "distances");
    for (size_t i = 0; i < (size_t)count * r->nn; i++) d[i] = sqrtf(d2[i]);
    SR_NC(nc_put_vara_int(r->ncid, v[SR_CLUSTERS_NBR], start + 1 - o, cnt + 1 - o, idx), r->tmp);
    SR_NC(nc_put_vara_float(r->ncid, v[SR_CLUSTERS_NBR_D], start + 1 - o, cnt + 1 - o, d), r->tmp);
    free(d);
}

/* ---- one space --------------------------------------------------------------- */

/* The active-set overlaps within and across clusters, by stats' rule
 * (stages/set_overlap.h): exact over all pairs up to cluster.exact_max
 * images, a seeded sample of pairs above it; each rank gives its own
 * images' sets and clusters. Collective. */
static void jaccard(const cluster_run *r, const uint64_t *sets, int words, const int *assign, double *within,
                    double *across)
{
    const sr_shard_sets shard = {sets, words, assign, r->first, r->end - r->first, r->images};
    sr_overlap ov = {.mean = {NAN, NAN}};
    sr_overlap_jaccard(r->comm, &shard, r->conf->cluster.exact_max, (uint32_t)r->conf->seed, &ov);
    *within = ov.mean[0], *across = ov.mean[1];
    free(ov.sample);
}

/* A cluster's m members nearest its centre (index, distance; -1 for none
 * yet), ordered by distance: (v, index) goes in where it belongs. Offered
 * in index order, so a tie keeps the earlier image. */
static void insert_member(long long *cm, float *cd, int m, float v, long long index)
{
    if (cm[m - 1] >= 0 && v >= cd[m - 1]) return;
    int at = m - 1;
    while (at > 0 && (cm[at - 1] < 0 || cd[at - 1] > v)) cd[at] = cd[at - 1], cm[at] = cm[at - 1], at--;
    cd[at] = v;
    cm[at] = index;
}

/* Each cluster's members nearest its centre, on rank 0: every rank's
 * nearest m per cluster, merged in (distance, index) order as a scan over
 * all images in index order keeps them. */
static void members(const cluster_run *r, const sr_kmeans *km, long long *out)
{
    const int k = km->k, m = r->nmembers;
    const long mine = r->end - r->first;
    long long *mi = SR_MALLOC(sizeof(long long) * (size_t)k * m, "cluster members");
    float *md = SR_MALLOC(sizeof(float) * (size_t)k * m, "cluster members");
    for (size_t i = 0; i < (size_t)k * m; i++) mi[i] = -1, md[i] = INFINITY;
    for (size_t i = 0; i < (size_t)r->kmax * m; i++) out[i] = -1;
    for (long i = 0; i < mine; i++) {
        const int c = km->assign[i];
        const float v = km->distance2[i];
        insert_member(mi + (size_t)c * m, md + (size_t)c * m, m, v, r->first + i);
    }
    char *ai, *ad;
    size_t bi, bd;
    sr_comm_gather(r->comm, mi, sizeof(long long) * (size_t)k * m, &ai, &bi);
    sr_comm_gather(r->comm, md, sizeof(float) * (size_t)k * m, &ad, &bd);
    if (r->comm->rank == 0) {
        const long long *all_i = (const long long *)ai;
        const float *all_d = (const float *)ad;
        for (size_t i = 0; i < (size_t)k * m; i++) md[i] = INFINITY;
        /* ranks hold ascending ranges: rank order is index order */
        for (int t = 0; t < r->comm->size; t++)
            for (int c = 0; c < k; c++)
                for (int j = 0; j < m; j++) {
                    const size_t at = ((size_t)t * k + c) * m + j;
                    if (all_i[at] < 0) continue;
                    insert_member(out + (size_t)c * m, md + (size_t)c * m, m, all_d[at], all_i[at]);
                }
    }
    free(ai), free(ad), free(mi), free(md);
}

/* k-means for every K, the neighbours and the measures of one space, at
 * sigma slot s (-1: the pixels). rows: this rank's (dim each); sets: their
 * active sets (NULL for the pixels). */
static void analyse(cluster_run *r, int s, const float *rows, int dim, const uint64_t *sets, int words,
                    space_result *out)
{
    const semrep_comm *comm = r->comm;
    const long mine = r->end - r->first;
    const int *v = s >= 0 ? r->v_phi : r->v_pix;
    const size_t o = s >= 0 ? 1 : 0, slot = (size_t)(s >= 0 ? s : 0);
    sr_kmeans_data x;
    sr_kmeans_data_open(r->be, rows, mine, r->first, r->images, dim, &x);
    const int classes = r->classes;
    double *counts = SR_MALLOC(sizeof(double) * (size_t)r->kmax * (1 + classes), "cluster sizes");
    int *sizes = SR_MALLOC(sizeof(int) * (size_t)r->kmax, "cluster sizes");
    long long *mem = SR_MALLOC(sizeof(long long) * (size_t)r->kmax * r->nmembers, "cluster members");
    for (int q = 0; q < r->nk; q++) {
        const int k = r->conf->cluster.k[q];
        sr_kmeans km;
        sr_kmeans_run(comm, &x, k, (uint32_t)r->conf->seed, r->conf->cluster.restarts, r->conf->cluster.max_iter, &km);
        out->inertia[q] = km.inertia;
        if (mine) {
            const size_t start[3] = {slot, (size_t)q, (size_t)r->first}, count[3] = {1, 1, (size_t)mine};
            SR_NC(nc_put_vara_int(r->ncid, v[SR_CLUSTERS_ASSIGN], start + 1 - o, count + 1 - o, km.assign), r->tmp);
        }
        /* sizes, then the clusters x labels table */
        memset(counts, 0, sizeof(double) * (size_t)r->kmax * (1 + classes));
        double *table = counts + r->kmax;
        for (long i = 0; i < mine; i++) {
            counts[km.assign[i]] += 1.0;
            const int l = r->labels[r->first + i];
            if (classes && l >= 0) table[(size_t)km.assign[i] * classes + l] += 1.0;
        }
        sr_comm_sum(comm, counts, r->kmax * (1 + classes));
        members(r, &km, mem);
        out->within[q] = out->across[q] = NAN;
        if (sets) jaccard(r, sets, words, km.assign, &out->within[q], &out->across[q]);
        if (comm->rank == 0) {
            for (int c = 0; c < r->kmax; c++) sizes[c] = (int)counts[c];
            const size_t start[4] = {slot, (size_t)q, 0, 0}, cs[3] = {1, 1, (size_t)r->kmax},
                         cm[4] = {1, 1, (size_t)r->kmax, (size_t)r->nmembers};
            SR_NC(nc_put_vara_int(r->ncid, v[SR_CLUSTERS_SIZE], start + 1 - o, cs + 1 - o, sizes), r->tmp);
            SR_NC(nc_put_vara_longlong(r->ncid, v[SR_CLUSTERS_MEMBERS], start + 1 - o, cm + 1 - o, mem), r->tmp);
            out->nmi[q] = classes ? sr_nmi(table, k, classes) : NAN;
            out->purity[q] = classes ? sr_purity(table, k, classes) : NAN;
            out->ari[q] = classes ? sr_ari(table, k, classes) : NAN;
        }
        sr_kmeans_free(&km);
    }
    free(counts), free(sizes), free(mem);
    /* neighbours and the k-NN accuracy */
    double tally[2 * KNN_KS] = {0};
    if (!r->sampled) {
        int *idx = SR_MALLOC(sizeof(int) * (size_t)(mine ? mine : 1) * r->nn, "neighbours");
        float *dist = SR_MALLOC(sizeof(float) * (size_t)(mine ? mine : 1) * r->nn, "neighbours");
        exact_neighbours(r, rows, dim, idx, dist);
        write_neighbours(r, s, r->first, mine, idx, dist);
        for (int j = 0; j < KNN_KS && classes; j++)
            knn_votes(idx, r->nn, r->labels, NULL, r->first, mine, knn_k[j], classes, &tally[2 * j], &tally[2 * j + 1]);
        free(idx), free(dist);
    } else {
        int *idx = SR_MALLOC(sizeof(int) * (size_t)r->nq * r->nn, "the queries' neighbours");
        float *dist = SR_MALLOC(sizeof(float) * (size_t)r->nq * r->nn, "the queries' neighbours");
        sampled_neighbours(r, rows, &x, dim, idx, dist);
        if (comm->rank == 0) {
            write_neighbours(r, s, 0, r->nq, idx, dist);
            for (int j = 0; j < KNN_KS && classes; j++)
                knn_votes(idx, r->nn, r->labels, r->queries, 0, r->nq, knn_k[j], classes, &tally[2 * j],
                          &tally[2 * j + 1]);
        }
        free(idx), free(dist);
    }
    sr_comm_sum(comm, tally, 2 * KNN_KS);
    for (int j = 0; j < KNN_KS; j++) out->knn[j] = classes && tally[2 * j + 1] > 0 ? tally[2 * j] / tally[2 * j + 1] : NAN;
    if (comm->rank == 0) write_scalars(r, s, out);
    sr_kmeans_data_close(&x);
}

/* ---- the pixels ------------------------------------------------------------ */

/* This rank's images as rows of pixel_dim: the pixels themselves, or above
 * cluster.pixel_dims their random projection y = x R / sqrt(p) with R's
 * entries +-1 (Achlioptas 2003), row d of R from Philox (seed, the cluster
 * domain, PROJECTION_STREAM, d): every rank makes the same R without
 * communication. R is drawn once and kept as signs (pixels x p bits: 6 MB
 * for 12,288 x 4,096); images are read and projected ROW_BLOCK at a time
 * against 64 rows of R at a time, the products through the backend's GEMM,
 * so only the projected rows stay. */
static float *pixel_rows(const cluster_run *r, char *err, size_t errlen)
{
    const long mine = r->end - r->first;
    const int src = r->pixel_source, p = r->pixel_dim;
    float *y = SR_MALLOC(sizeof(float) * (size_t)(mine ? mine : 1) * p, "this rank's images' pixels");
    if (p == src) {
        if (mine && sr_dataset_read(r->ds, r->first, mine, y, err, errlen)) return free(y), NULL;
        return y;
    }
    const sr_backend *be = r->be;
    const int rb = 64; /* rows of R at a time */
    const float scale = 1.0f / sqrtf((float)p);
    float *x = SR_MALLOC(sizeof(float) * ROW_BLOCK * (size_t)src, "a block of images");
    float *rot = SR_MALLOC(sizeof(float) * (size_t)rb * p, "the random projection");
    float *d_x = sr_backend_work(be, ROW_BLOCK * (size_t)src, "a block of images");
    float *d_y = sr_backend_work(be, ROW_BLOCK * (size_t)p, "a block of projected images");
    float *d_rot = sr_backend_work(be, (size_t)rb * p, "the random projection");
    const size_t words = ((size_t)p + 63) / 64;
    uint64_t *sign = SR_CALLOC((size_t)src * words, sizeof(uint64_t), "the random projection's signs");
    for (int d = 0; d < src; d++) {
        const sr_rng_stream st = {.seed = (uint32_t)r->conf->seed, .domain = SR_RNG_CLUSTER, .i0 = PROJECTION_STREAM,
                                  .i1 = (uint32_t)d};
        sr_rng_uniform(&st, 0, (size_t)p, rot);
        for (int j = 0; j < p; j++)
            if (rot[j] >= 0.5f) sign[d * words + j / 64] |= 1ull << (j % 64);
    }
    for (long i0 = 0; i0 < mine; i0 += ROW_BLOCK) {
        const long b = mine - i0 < ROW_BLOCK ? mine - i0 : ROW_BLOCK;
        if (sr_dataset_read(r->ds, r->first + i0, b, x, err, errlen)) {
            y = (free(y), NULL);
            break;
        }
        if (!sr_be_host_memory(be)) sr_be_to_device(be, d_x, x, sizeof(float) * (size_t)b * src);
        float *out = sr_be_host_memory(be) ? y + (size_t)i0 * p : d_y;
        for (int d0 = 0; d0 < src; d0 += rb) {
            const int n = src - d0 < rb ? src - d0 : rb;
            for (int d = 0; d < n; d++) {
                const uint64_t *bits = sign + (size_t)(d0 + d) * words;
                for (int j = 0; j < p; j++) rot[(size_t)d * p + j] = bits[j / 64] >> (j % 64) & 1 ? scale : -scale;
            }
            if (!sr_be_host_memory(be)) sr_be_to_device(be, d_rot, rot, sizeof(float) * (size_t)n * p);
            sr_be_gemm(be, false, false, (int)b, p, n, 1.0f, (sr_be_host_memory(be) ? x : d_x) + d0, src,
                     sr_be_host_memory(be) ? rot : d_rot, p, d0 ? 1.0f : 0.0f, out, p);
        }
        if (!sr_be_host_memory(be)) sr_be_to_host(be, y + (size_t)i0 * p, d_y, sizeof(float) * (size_t)b * p);
    }
    sr_backend_drop(be, d_x, NULL), sr_backend_drop(be, d_y, NULL), sr_backend_drop(be, d_rot, NULL);
    free(x), free(rot), free(sign);
    return y;
}

/* The data set of the pixels, checked to hold phi's images (this rank's). */
static int open_pixels(cluster_run *r, char *err, size_t errlen)
{
    const semrep_conf *conf = r->conf;
    if (sr_data_open(&conf->dataset, conf->output_dir, r->comm, &r->ds, err, errlen)) return -1;
    const long mine = r->end - r->first;
    long long *index = SR_MALLOC(sizeof(long long) * (size_t)(mine ? mine : 1), "the image indices");
    if (mine) sr_phi_read_index(&r->f, r->first, mine, index);
    char data[2 * SR_PATH_MAX] = "", stamp[17] = "";
    sr_file_text_attr(r->f.path, "dataset", data, sizeof data);
    sr_file_text_attr(r->f.path, "dataset_stamp", stamp, sizeof stamp);
    int mismatch = r->ds->count != r->images || strcmp(data, r->ds->description) || strcmp(stamp, r->ds->stamp);
    for (long i = 0; !mismatch && i < mine; i++) mismatch = sr_dataset_origin(r->ds, r->first + i) != index[i];
    free(index);
    if (mismatch)
        return sr_report(err, errlen, "%s/phi.nc holds other images than the conf's data set; compute phi again",
                         conf->output_dir);
    r->pixel_source = r->ds->channels * r->ds->size * r->ds->size;
    r->pixel_dim = r->pixel_source > conf->cluster.pixel_dims ? conf->cluster.pixel_dims : r->pixel_source;
    return 0;
}

static void print_row(const char *space, const cluster_run *r, const space_result *x)
{
    for (int q = 0; q < r->nk; q++) {
        printf("  %-12s %7d %8.3f %8.3f %8.3f ", space, r->conf->cluster.k[q], x->nmi[q], x->purity[q], x->ari[q]);
        if (q == 0) printf("%9.3f %9.3f", x->knn[0], x->knn[1]); /* neighbours do not depend on K */
        else printf("%9s %9s", "", "");
        printf(" %14.4g\n", x->inertia[q]);
    }
}

/* ---- the stage ------------------------------------------------------------ */

/* The seeded sample of q of n images, ascending: selection sampling (Knuth's
 * Algorithm S), image i taken when (n - i) u_i < q - taken, u_i the Philox
 * uniform (seed, the cluster domain, QUERY_STREAM) at i; the same on every rank. */
static long long *sample_queries(uint32_t seed, long n, long q)
{
    long long *out = SR_MALLOC(sizeof(long long) * (size_t)q, "the sampled queries");
    const sr_rng_stream st = {.seed = seed, .domain = SR_RNG_CLUSTER, .i0 = QUERY_STREAM};
    float u[4096];
    long taken = 0;
    for (long i0 = 0; i0 < n && taken < q; i0 += 4096) {
        const long b = n - i0 < 4096 ? n - i0 : 4096;
        sr_rng_uniform(&st, (uint64_t)i0, (size_t)b, u);
        for (long i = 0; i < b && taken < q; i++)
            if ((double)(n - i0 - i) * u[i] < (double)(q - taken)) out[taken++] = i0 + i;
    }
    SR_CHECK(taken == q, "internal: the query sample has %ld of %ld images", taken, q);
    return out;
}

static int check(cluster_run *r, char *err, size_t errlen)
{
    const semrep_conf *c = r->conf;
    char path[SR_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/phi.nc", c->output_dir);
    if (sr_phi_open(path, &r->f, err, errlen)) return -1;
    r->images = r->f.images;
    r->nsig = c->cluster.nsigmas ? c->cluster.nsigmas : r->f.nsigma;
    for (int s = 0; s < r->nsig; s++) {
        r->sig_index[s] = c->cluster.nsigmas ? sr_phi_sigma_index(&r->f, c->cluster.sigmas[s]) : s;
        if (r->sig_index[s] < 0)
            return sr_report(err, errlen, "cluster.sigmas: %g (%.4g of 255) is not a sigma of %s; its sigmas are those of phi.sigmas",
                             c->cluster.sigmas[s], c->cluster.sigmas[s] * 255.0, path);
    }
    r->nk = c->cluster.nk;
    for (int q = 0; q < r->nk; q++) {
        if (c->cluster.k[q] > r->images)
            return sr_report(err, errlen, "cluster.k: K = %d is more than the %ld images of %s", c->cluster.k[q], r->images, path);
        r->kmax = c->cluster.k[q] > r->kmax ? c->cluster.k[q] : r->kmax;
    }
    r->nn = c->cluster.neighbours > knn_k[KNN_KS - 1] ? c->cluster.neighbours : knn_k[KNN_KS - 1];
    if (r->nn >= r->images) return sr_report(err, errlen, "%s has %ld images: too few for %d neighbours", path, r->images, r->nn);
    r->nmembers = c->cluster.members;
    r->sampled = r->images > c->cluster.exact_max;
    r->nq = r->sampled && c->cluster.queries < r->images ? c->cluster.queries : r->images;
    /* distances in fp32 whatever gpu_math says: a backend instance of its own */
    semrep_conf fp32 = *c;
    snprintf(fp32.gpu_math, sizeof fp32.gpu_math, "fp32");
    r->be = sr_stage_backend(&fp32, r->comm, 0, err, errlen);
    return r->be ? 0 : -1;
}

int stage_cluster(const semrep_conf *conf, semrep_comm *comm)
{
    cluster_run r = {.conf = conf, .comm = comm};
    char err[2048] = "";
    if (sr_outputs_ours(conf, comm, (const char *[]){"clusters.nc"}, 1)) return 1;
    if (sr_comm_any(comm, check(&r, err, sizeof err))) {
        sr_phi_close(&r.f);
        return sr_comm_error(comm, 1, "%s", err[0] ? err : "cluster: another rank could not start");
    }
    /* shards on k-means' block boundaries: the same products on any rank count */
    sr_shard(r.images, SR_KMEANS_ROW_ALIGN, comm->rank, comm->size, &r.first, &r.end);
    if (conf->cluster.pixels && sr_comm_any(comm, open_pixels(&r, err, sizeof err))) {
        if (r.ds) sr_dataset_close(r.ds);
        sr_phi_close(&r.f);
        return sr_comm_error(comm, 1, "%s", err[0] ? err : "cluster: another rank could not read the data set");
    }
    const long n = r.images, mine = r.end - r.first;
    const int K = r.f.channels, words = sr_set_words(K);
    r.labels = SR_MALLOC(sizeof(int) * (size_t)n, "the labels");
    sr_phi_read_labels(&r.f, 0, n, r.labels);
    r.classes = r.f.nclasses;
    sr_probe_plan(&r.probe, conf, r.labels, n, r.classes, r.first, r.end);
    if (r.sampled) r.queries = sample_queries((uint32_t)conf->seed, n, r.nq);
    r.per_sigma = SR_CALLOC((size_t)r.nsig, sizeof(space_result), "the results per sigma");
    if (comm->rank == 0) {
        /* the list as given: K values need be neither contiguous nor sorted */
        char ks[16 * 12] = "";
        for (int q = 0, at = 0; q < r.nk && at < (int)sizeof ks; q++)
            at += snprintf(ks + at, sizeof ks - (size_t)at, "%s%d", q ? ", " : "", conf->cluster.k[q]);
        printf("cluster: %ld images, K = %s, %d restarts, %d sigma(s)%s\n", n, ks, conf->cluster.restarts, r.nsig,
               conf->cluster.pixels ? ", and the pixels as the baseline" : "");
        if (r.sampled)
            printf("  more than cluster.exact_max = %ld images: neighbours of a seeded sample of %ld\n",
                   conf->cluster.exact_max, r.nq);
        if (conf->cluster.pixels && r.pixel_dim < r.pixel_source)
            printf("  pixels: %d per image, randomly projected to %d dimensions\n", r.pixel_source, r.pixel_dim);
    }
    create_file(&r);
    float *rows = SR_MALLOC(sizeof(float) * (size_t)(mine ? mine : 1) * K, "this rank's phi rows");
    uint64_t *sets = SR_MALLOC(sizeof(uint64_t) * (size_t)(mine ? mine : 1) * words, "the active sets");
    for (int s = 0; s < r.nsig; s++) {
        if (mine) sr_phi_read(&r.f, r.sig_index[s], r.first, mine, rows);
        for (long i = 0; i < mine; i++)
            sr_active_set(rows + (size_t)i * K, K, conf->stats.active_threshold, sets + (size_t)i * words);
        analyse(&r, s, rows, K, sets, words, &r.per_sigma[s]);
        sr_probe_fit(&r.probe, comm, s, rows, K, r.ncid, r.tmp);
    }
    free(rows), free(sets);
    if (conf->cluster.pixels) {
        float *pixels = pixel_rows(&r, err, sizeof err);
        if (!pixels) SR_FAIL("%s", err); /* the data set was readable a moment ago */
        analyse(&r, -1, pixels, r.pixel_dim, NULL, 0, &r.pixels);
        sr_probe_fit(&r.probe, comm, -1, pixels, r.pixel_dim, r.ncid, r.tmp);
        free(pixels);
        sr_dataset_close(r.ds);
    }
    SR_NC(nc_close(r.ncid), r.tmp);
    if (comm->rank == 0) {
        sr_outdir_commit(r.tmp, conf->output_dir, "clusters.nc");
        printf("  %-12s %7s %8s %8s %8s %9s %9s %14s\n", "space", "K", "NMI", "purity", "ARI", "1-NN acc", "10-NN acc",
               "inertia");
        for (int s = 0; s < r.nsig; s++) {
            char name[32];
            snprintf(name, sizeof name, "phi %.4g", r.f.sigma[r.sig_index[s]] * 255.0);
            print_row(name, &r, &r.per_sigma[s]);
        }
        if (conf->cluster.pixels) print_row("pixels", &r, &r.pixels);
        if (r.sampled) printf("  (phi's sigma in 0-255 units; k-NN accuracy of %ld sampled images, each left out)\n", r.nq);
        else printf("  (phi's sigma in 0-255 units; k-NN accuracy leaves each image out)\n");
        double sig[SR_MAX_SIGMAS];
        for (int s = 0; s < r.nsig; s++) sig[s] = r.f.sigma[r.sig_index[s]];
        sr_probe_print(&r.probe, r.nsig, sig, conf->cluster.pixels);
        printf("  written to %s\n", r.path);
    }
    sr_probe_free(&r.probe);
    free(r.per_sigma), free(r.labels), free(r.queries);
    sr_phi_close(&r.f);
    return 0;
}
