/* Stage cluster (SPEC.md section 5, docs/analysis.md): k-means on phi at the
 * conf's sigmas and K values, each image's nearest neighbours in phi, and how
 * well both agree with the labels; the same measures on the raw pixels of the
 * same images, in the same run, as the baseline to beat. Each rank holds its
 * rows; k-means reduces sums; the neighbour search reads the whole sigma
 * slice (a file read, no gather) and gives each rank its rows' neighbours.
 * Only per-image integers (assignments, neighbour lists, active sets) meet on
 * rank 0, which writes clusters.nc. */
#include <math.h>
#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/shard.h"
#include "core/check.h"
#include "io/nc.h"
#include "io/outdir.h"
#include "stages/data.h"
#include "stages/kmeans.h"
#include "stages/measures.h"
#include "stages/phi_file.h"
#include "stages/set_overlap.h"
#include "stages/stage.h"

#define CLUSTERS_FORMAT "semrep-clusters"
#define KNN_KS 2
static const int knn_k[KNN_KS] = {1, 10};

/* What one space (phi at a sigma, or pixels) gives for every K. */
typedef struct {
    double *inertia, *nmi, *purity, *ari, *within, *across; /* [nk] */
    int *assign;      /* [nk][images] */
    int *sizes;       /* [nk][kmax] */
    long long *members; /* [nk][kmax][nmembers] */
    int *neighbours;  /* [images][nn] */
    float *neighbour_d2;
    double knn[KNN_KS];
} space_result;

typedef struct {
    const semrep_conf *conf;
    semrep_comm *comm;
    sr_phi_file f;
    long first, end, images;
    int nk, kmax, nn, nmembers, classes;
    int *labels; /* every image's */
    space_result *per_sigma, pixels;
    int nsig, sig_index[SR_MAX_SIGMAS];
} cluster_run;

static void *gather_all(const semrep_comm *comm, const void *mine, size_t bytes)
{
    char *all;
    size_t total;
    sr_comm_gather(comm, mine, bytes, &all, &total);
    return all;
}

/* Each of my rows' nn nearest among all rows (itself left out), nearest first. */
static void neighbours(const float *all, long images, int dim, long first, long end, int nn, int *idx, float *dist)
{
    const long block = 128;
    float *d2 = SR_MALLOC(sizeof(float) * (size_t)block * images, "neighbour distances");
    for (long i0 = first; i0 < end; i0 += block) {
        const long b = end - i0 < block ? end - i0 : block;
        sr_distances(all + (size_t)i0 * dim, b, all, images, dim, d2);
#pragma omp parallel for schedule(static)
        for (long i = 0; i < b; i++) {
            int *ni = idx + (size_t)(i0 - first + i) * nn;
            float *nd = dist + (size_t)(i0 - first + i) * nn;
            int have = 0;
            for (long j = 0; j < images; j++) {
                if (j == i0 + i) continue;
                const float v = d2[(size_t)i * images + j];
                if (have == nn && v >= nd[nn - 1]) continue; /* ties: the lower index stays */
                int at = have < nn ? have++ : nn - 1;
                while (at > 0 && nd[at - 1] > v) {
                    nd[at] = nd[at - 1];
                    ni[at] = ni[at - 1];
                    at--;
                }
                nd[at] = v;
                ni[at] = (int)j;
            }
        }
    }
    free(d2);
}

/* Leave-one-out k-NN accuracy: the majority label of the k nearest; a tie
 * goes to the tied label met first (nearest). */
static double knn_accuracy(const int *nbr, int nn, const int *labels, long images, int k, int classes)
{
    long correct = 0, counted = 0;
    int *votes = calloc((size_t)(classes ? classes : 1), sizeof(int));
    for (long i = 0; i < images; i++) {
        if (labels[i] < 0) continue;
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
        correct += best == labels[i];
        counted++;
    }
    free(votes);
    return counted ? (double)correct / counted : NAN;
}

/* k-means for every K, the neighbours and the measures of one space. rows
 * are this rank's; all (may be NULL on no rank) every row, for neighbours. */
static void analyse(cluster_run *r, const float *rows, const float *all, int dim, const uint64_t *sets, int words,
                    space_result *out)
{
    const semrep_comm *comm = r->comm;
    const long mine = r->end - r->first, n = r->images;
    for (int q = 0; q < r->nk; q++) {
        const int k = r->conf->cluster.k[q];
        sr_kmeans km;
        sr_kmeans_run(comm, rows, mine, r->first, n, dim, k, (uint32_t)r->conf->seed, r->conf->cluster.restarts,
                      r->conf->cluster.max_iter, &km);
        int *assign = gather_all(comm, km.assign, sizeof(int) * (size_t)mine);
        float *d2 = gather_all(comm, km.distance2, sizeof(float) * (size_t)mine);
        sr_overlap ov = {.mean = {NAN, NAN}};
        if (sets) {
            const sr_shard_sets shard = {sets + (size_t)r->first * words, words, km.assign, r->first, mine, n};
            sr_overlap_jaccard(comm, &shard, r->conf->cluster.exact_max, (uint32_t)r->conf->seed, &ov);
        }
        if (comm->rank == 0) {
            out->inertia[q] = km.inertia;
            memcpy(out->assign + (size_t)q * n, assign, sizeof(int) * (size_t)n);
            int *sizes = out->sizes + (size_t)q * r->kmax;
            for (long i = 0; i < n; i++) sizes[assign[i]]++;
            /* each cluster's members nearest its centre: insertion by distance */
            long long *mem = out->members + (size_t)q * r->kmax * r->nmembers;
            float *md = SR_MALLOC(sizeof(float) * (size_t)k * r->nmembers, "cluster members");
            int *have = calloc((size_t)k, sizeof(int));
            for (long i = 0; i < n; i++) {
                const int c = assign[i], m = r->nmembers;
                long long *cm = mem + (size_t)c * m;
                float *cd = md + (size_t)c * m;
                if (have[c] == m && d2[i] >= cd[m - 1]) continue;
                int at = have[c] < m ? have[c]++ : m - 1;
                while (at > 0 && cd[at - 1] > d2[i]) cd[at] = cd[at - 1], cm[at] = cm[at - 1], at--;
                cd[at] = d2[i];
                cm[at] = i;
            }
            free(md), free(have);
            if (r->classes) {
                double *table = calloc((size_t)k * r->classes, sizeof(double));
                for (long i = 0; i < n; i++)
                    if (r->labels[i] >= 0) table[(size_t)assign[i] * r->classes + r->labels[i]] += 1.0;
                out->nmi[q] = sr_nmi(table, k, r->classes);
                out->purity[q] = sr_purity(table, k, r->classes);
                out->ari[q] = sr_ari(table, k, r->classes);
                free(table);
            } else {
                out->nmi[q] = out->purity[q] = out->ari[q] = NAN;
            }
            out->within[q] = ov.mean[0], out->across[q] = ov.mean[1];
        }
        free(assign), free(d2), free(ov.sample);
        sr_kmeans_free(&km);
    }
    int *idx = SR_MALLOC(sizeof(int) * (size_t)(mine ? mine : 1) * r->nn, "neighbours");
    float *dist = SR_MALLOC(sizeof(float) * (size_t)(mine ? mine : 1) * r->nn, "neighbours");
    neighbours(all, n, dim, r->first, r->end, r->nn, idx, dist);
    int *all_idx = gather_all(comm, idx, sizeof(int) * (size_t)mine * r->nn);
    float *all_dist = gather_all(comm, dist, sizeof(float) * (size_t)mine * r->nn);
    if (comm->rank == 0) {
        memcpy(out->neighbours, all_idx, sizeof(int) * (size_t)n * r->nn);
        memcpy(out->neighbour_d2, all_dist, sizeof(float) * (size_t)n * r->nn);
        for (int j = 0; j < KNN_KS; j++)
            out->knn[j] = r->classes ? knn_accuracy(out->neighbours, r->nn, r->labels, n, knn_k[j], r->classes) : NAN;
    }
    free(idx), free(dist), free(all_idx), free(all_dist);
}

static void space_alloc(const cluster_run *r, space_result *s)
{
    const size_t n = (size_t)r->images, nk = (size_t)r->nk;
    double *d = calloc(6 * nk, sizeof(double));
    s->inertia = d, s->nmi = d + nk, s->purity = d + 2 * nk, s->ari = d + 3 * nk, s->within = d + 4 * nk,
    s->across = d + 5 * nk;
    s->assign = calloc(nk * n, sizeof(int));
    s->sizes = calloc(nk * (size_t)r->kmax, sizeof(int));
    s->members = SR_MALLOC(sizeof(long long) * nk * (size_t)r->kmax * r->nmembers, "cluster members");
    for (size_t i = 0; i < nk * (size_t)r->kmax * r->nmembers; i++) s->members[i] = -1;
    s->neighbours = calloc(n * (size_t)r->nn, sizeof(int));
    s->neighbour_d2 = calloc(n * (size_t)r->nn, sizeof(float));
}

static void space_free(space_result *s)
{
    free(s->inertia), free(s->assign), free(s->sizes), free(s->members), free(s->neighbours), free(s->neighbour_d2);
}

/* ---- the file ------------------------------------------------------------- */

static int def(int ncid, const char *name, nc_type type, int ndims, const int *dims, const char *meaning, const char *f)
{
    int var;
    SR_NC(nc_def_var(ncid, name, type, ndims, dims, &var), f);
    sr_nc_put_text(ncid, var, "meaning", meaning, f);
    return var;
}

static void write_space(int ncid, int has_sigma, size_t s, const space_result *x, const cluster_run *r, const int *v,
                        const char *f)
{
    const size_t nk = (size_t)r->nk, n = (size_t)r->images;
    const size_t o = has_sigma ? 1 : 0;
    size_t start[4] = {s, 0, 0, 0}, count[4] = {1, nk, 0, 0};
    const double *rows[6] = {x->inertia, x->nmi, x->purity, x->ari, x->within, x->across};
    for (int i = 0; i < 6; i++) SR_NC(nc_put_vara_double(ncid, v[i], start + 1 - o, count + 1 - o, rows[i]), f);
    count[2] = n;
    SR_NC(nc_put_vara_int(ncid, v[6], start + 1 - o, count + 1 - o, x->assign), f);
    count[2] = (size_t)r->kmax;
    SR_NC(nc_put_vara_int(ncid, v[7], start + 1 - o, count + 1 - o, x->sizes), f);
    count[3] = (size_t)r->nmembers;
    SR_NC(nc_put_vara_longlong(ncid, v[8], start + 1 - o, count + 1 - o, x->members), f);
    size_t nstart[3] = {s, 0, 0}, ncount[3] = {1, n, (size_t)r->nn};
    SR_NC(nc_put_vara_int(ncid, v[9], nstart + 1 - o, ncount + 1 - o, x->neighbours), f);
    float *d = SR_MALLOC(sizeof(float) * n * r->nn, "distances");
    for (size_t i = 0; i < n * r->nn; i++) d[i] = sqrtf(x->neighbour_d2[i]);
    SR_NC(nc_put_vara_float(ncid, v[10], nstart + 1 - o, ncount + 1 - o, d), f);
    free(d);
    size_t kstart[2] = {s, 0}, kcount[2] = {1, KNN_KS};
    SR_NC(nc_put_vara_double(ncid, v[11], kstart + 1 - o, kcount + 1 - o, x->knn), f);
}

/* The variables of a space: per sigma (with the sigma dimension first) or the pixels. */
static void define_space(int ncid, const char *prefix, int d_sigma, const int *d, int *v, const char *f)
{
    /* d: k, image, cluster, member, neighbour, knn */
    const int o = d_sigma >= 0;
    int dims[4] = {d_sigma, d[0], 0, 0};
    char name[64];
    const char *scalars[6][2] = {{"inertia", "sum over images of the squared distance to their centre"},
                                 {"nmi", "normalised mutual information of clusters and labels (arithmetic mean of entropies)"},
                                 {"purity", "share of images in their cluster's most common label"},
                                 {"ari", "adjusted Rand index of clusters and labels"},
                                 {"jaccard_within", "mean Jaccard overlap of phi's active sets, pairs in one cluster"},
                                 {"jaccard_across", "mean Jaccard overlap of phi's active sets, pairs in two clusters"}};
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof name, "%s%s", prefix, scalars[i][0]);
        v[i] = def(ncid, name, NC_DOUBLE, 1 + o, dims + 1 - o, scalars[i][1], f);
    }
    dims[2] = d[1];
    snprintf(name, sizeof name, "%sassignment", prefix);
    v[6] = def(ncid, name, NC_INT, 2 + o, dims + 1 - o, "each image's cluster", f);
    dims[2] = d[2];
    snprintf(name, sizeof name, "%scluster_size", prefix);
    v[7] = def(ncid, name, NC_INT, 2 + o, dims + 1 - o, "images per cluster (0 beyond K)", f);
    dims[3] = d[3];
    snprintf(name, sizeof name, "%smembers", prefix);
    v[8] = def(ncid, name, NC_INT64, 3 + o, dims + 1 - o, "each cluster's images nearest its centre, nearest first (-1: none)", f);
    int nd[3] = {d_sigma, d[1], d[4]};
    snprintf(name, sizeof name, "%sneighbours", prefix);
    v[9] = def(ncid, name, NC_INT, 2 + o, nd + 1 - o, "each image's nearest images, nearest first, itself left out", f);
    snprintf(name, sizeof name, "%sneighbour_distance", prefix);
    v[10] = def(ncid, name, NC_FLOAT, 2 + o, nd + 1 - o, "their Euclidean distances", f);
    int kd[2] = {d_sigma, d[5]};
    snprintf(name, sizeof name, "%sknn_accuracy", prefix);
    v[11] = def(ncid, name, NC_DOUBLE, 1 + o, kd + 1 - o, "leave-one-out k-NN label accuracy, k = 1 and 10", f);
}

static void write_clusters(const cluster_run *r, const char *path)
{
    char tmp[SR_PATH_MAX + 64];
    sr_tmp_path(path, tmp, sizeof tmp);
    int ncid, version = 1, d_sigma, d[6], v[12], pv[12];
    SR_NC(nc_create(tmp, NC_NETCDF4 | NC_CLOBBER, &ncid), tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "format", CLUSTERS_FORMAT, tmp);
    sr_nc_put_ints(ncid, NC_GLOBAL, "format_version", &version, 1, tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "phi_fingerprint", r->f.fingerprint, tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "conf", r->conf->text, tmp);
    SR_NC(nc_def_dim(ncid, "sigma", (size_t)r->nsig, &d_sigma), tmp);
    SR_NC(nc_def_dim(ncid, "k", (size_t)r->nk, &d[0]), tmp);
    SR_NC(nc_def_dim(ncid, "image", (size_t)r->images, &d[1]), tmp);
    SR_NC(nc_def_dim(ncid, "cluster", (size_t)r->kmax, &d[2]), tmp);
    SR_NC(nc_def_dim(ncid, "member", (size_t)r->nmembers, &d[3]), tmp);
    SR_NC(nc_def_dim(ncid, "neighbour", (size_t)r->nn, &d[4]), tmp);
    SR_NC(nc_def_dim(ncid, "knn", KNN_KS, &d[5]), tmp);
    const int vs = def(ncid, "sigma", NC_DOUBLE, 1, &d_sigma, "pixel units", tmp);
    const int vk = def(ncid, "k", NC_INT, 1, &d[0], "clusters asked for", tmp);
    const int vknn = def(ncid, "knn", NC_INT, 1, &d[5], "neighbours voting", tmp);
    define_space(ncid, "", d_sigma, d, v, tmp);
    if (r->conf->cluster.pixels) define_space(ncid, "pixel_", -1, d, pv, tmp);
    SR_NC(nc_enddef(ncid), tmp);
    double sig[SR_MAX_SIGMAS];
    for (int s = 0; s < r->nsig; s++) sig[s] = r->f.sigma[r->sig_index[s]];
    SR_NC(nc_put_var_double(ncid, vs, sig), tmp);
    SR_NC(nc_put_var_int(ncid, vk, r->conf->cluster.k), tmp);
    SR_NC(nc_put_var_int(ncid, vknn, knn_k), tmp);
    for (int s = 0; s < r->nsig; s++) write_space(ncid, 1, (size_t)s, &r->per_sigma[s], r, v, tmp);
    if (r->conf->cluster.pixels) write_space(ncid, 0, 0, &r->pixels, r, pv, tmp);
    SR_NC(nc_close(ncid), tmp);
    sr_outdir_commit(tmp, r->conf->output_dir, "clusters.nc");
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
    return 0;
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
    sr_shard(r.images, 1, comm->rank, comm->size, &r.first, &r.end);
    const long n = r.images;
    const int K = r.f.channels, words = sr_set_words(K);
    r.labels = SR_MALLOC(sizeof(int) * (size_t)n, "the labels");
    sr_phi_read_labels(&r.f, 0, n, r.labels);
    r.classes = r.f.nclasses;
    r.per_sigma = calloc((size_t)r.nsig, sizeof(space_result));
    float *all = SR_MALLOC(sizeof(float) * (size_t)n * K, "phi at one sigma");
    uint64_t *sets = SR_MALLOC(sizeof(uint64_t) * (size_t)n * words, "the active sets");
    if (comm->rank == 0)
        printf("cluster: %ld images, K = %d..%d, %d restarts, %d sigma(s)%s\n", n, conf->cluster.k[0], r.kmax,
               conf->cluster.restarts, r.nsig, conf->cluster.pixels ? ", and the pixels as the baseline" : "");
    for (int s = 0; s < r.nsig; s++) {
        space_alloc(&r, &r.per_sigma[s]);
        sr_phi_read(&r.f, r.sig_index[s], 0, n, all); /* every row: the neighbour search needs them */
        for (long i = 0; i < n; i++)
            sr_active_set(all + (size_t)i * K, K, conf->stats.active_threshold, sets + (size_t)i * words);
        analyse(&r, all + (size_t)r.first * K, all, K, sets, words, &r.per_sigma[s]);
    }
    free(all);
    if (conf->cluster.pixels) {
        /* the same images, from the data set phi was computed on */
        sr_dataset *ds;
        if (sr_data_open(&conf->dataset, conf->output_dir, comm, &ds, err, sizeof err)) {
            sr_phi_close(&r.f);
            return sr_comm_error(comm, 1, "%s", err);
        }
        long long *index = SR_MALLOC(sizeof(long long) * (size_t)n, "the image indices");
        sr_phi_read_index(&r.f, 0, n, index);
        char data[2 * SR_PATH_MAX] = "", stamp[17] = "";
        sr_file_text_attr(r.f.path, "dataset", data, sizeof data);
        sr_file_text_attr(r.f.path, "dataset_stamp", stamp, sizeof stamp);
        int mismatch = ds->count != n || strcmp(data, ds->description) || strcmp(stamp, ds->stamp);
        for (long i = 0; !mismatch && i < n; i++) mismatch = sr_dataset_origin(ds, i) != index[i];
        if (mismatch) {
            sr_dataset_close(ds);
            sr_phi_close(&r.f);
            return sr_comm_error(comm, 1, "%s/phi.nc holds other images than the conf's data set; compute phi again",
                                 conf->output_dir);
        }
        const int dim = ds->channels * ds->size * ds->size;
        float *pixels = SR_MALLOC(sizeof(float) * (size_t)n * dim, "the images' pixels");
        if (sr_dataset_read(ds, 0, n, pixels, err, sizeof err)) SR_FAIL("%s", err);
        space_alloc(&r, &r.pixels);
        analyse(&r, pixels + (size_t)r.first * dim, pixels, dim, NULL, 0, &r.pixels);
        free(pixels), free(index);
        sr_dataset_close(ds);
    }
    if (comm->rank == 0) {
        char path[SR_PATH_MAX + 32];
        snprintf(path, sizeof path, "%s/clusters.nc", conf->output_dir);
        write_clusters(&r, path);
        printf("  %-12s %7s %8s %8s %8s %9s %9s %14s\n", "space", "K", "NMI", "purity", "ARI", "1-NN acc", "10-NN acc",
               "inertia");
        for (int s = 0; s < r.nsig; s++) {
            char name[32];
            snprintf(name, sizeof name, "phi %.4g", r.f.sigma[r.sig_index[s]] * 255.0);
            print_row(name, &r, &r.per_sigma[s]);
        }
        if (conf->cluster.pixels) print_row("pixels", &r, &r.pixels);
        printf("  (phi's sigma in 0-255 units; k-NN accuracy leaves each image out)\n  written to %s\n", path);
    }
    for (int s = 0; s < r.nsig; s++) space_free(&r.per_sigma[s]);
    if (conf->cluster.pixels) space_free(&r.pixels);
    free(r.per_sigma), free(r.labels), free(sets);
    sr_phi_close(&r.f);
    return 0;
}
