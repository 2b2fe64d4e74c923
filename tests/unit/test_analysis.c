/* stats and cluster against independent references: the statistics of a
 * small synthetic phi file and NMI, purity and ARI of fixed label vectors,
 * computed by tests/fixtures/make_analysis_fixture.py with numpy and
 * scikit-learn; k-means recovering well-separated blobs; bad input. Runs on
 * any number of ranks (CTest runs it on 1, 2 and 3). */
#define _GNU_SOURCE
#include <math.h>
#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/shard.h"
#include "io/nc.h"
#include "stages/kmeans.h"
#include "stages/measures.h"
#include "stages/stage.h"
#include "test_util.h"

static semrep_comm comm;
static char dir[256];
static char err[1024];

/* A conf whose output folder holds a copy of a fixture as its phi.nc, for
 * the ranks of `on`. */
static void conf_with_phi_on(const semrep_comm *on, semrep_conf *conf, const char *fixture, const char *sub, int nsets,
                             char **extra)
{
    char out[400], cmd[1200], set[500];
    snprintf(out, sizeof out, "%s/%s", dir, sub);
    if (on->rank == 0) {
        snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/%s %s/phi.nc", out, SEMREP_FIXTURES, fixture, out);
        CU_ASSERT_FATAL(system(cmd) == 0);
    }
    sr_comm_barrier(on);
    snprintf(set, sizeof set, "output_dir=\"%s\"", out);
    char *sets[16] = {set, "cluster.pixels=false"};
    for (int i = 0; i < nsets; i++) sets[2 + i] = extra[i];
    CU_ASSERT_FATAL(sr_conf_load(conf, NULL, 2 + nsets, sets, err, sizeof err) == 0);
}

static void conf_with_phi(semrep_conf *conf, const char *fixture, const char *sub, int nsets, char **extra)
{
    conf_with_phi_on(&comm, conf, fixture, sub, nsets, extra);
}

static double *read_double(const char *path, const char *name, size_t count)
{
    int ncid, var;
    CU_ASSERT_FATAL(nc_open(path, NC_NOWRITE, &ncid) == NC_NOERR);
    CU_ASSERT_FATAL(nc_inq_varid(ncid, name, &var) == NC_NOERR);
    double *v = malloc(sizeof(double) * count);
    CU_ASSERT_FATAL(nc_get_var_double(ncid, var, v) == NC_NOERR);
    nc_close(ncid);
    return v;
}

static double worst = 0.0;

static void compare(const char *what, const double *got, const sr_record *want, size_t stride)
{
    CU_ASSERT_PTR_NOT_NULL_FATAL(want);
    double d = 0.0, scale = 1e-12;
    for (size_t i = 0; i < want->count; i++) {
        d = fmax(d, fabs(got[i * stride] - want->data[i]));
        scale = fmax(scale, fabs(want->data[i]));
    }
    const int ok = d <= 1e-5 * scale;
    if (!ok) printf("\n    %s differs by %g", what, d);
    worst = fmax(worst, d / scale);
    CU_ASSERT(ok);
}

/* stats.nc of phi_small.nc against stats_expected.bin; the Jaccard means
 * only when they are exact. */
static void compare_stats(const char *path, int exact)
{
    sr_fixture *fx = sr_fixture_load("stats_expected.bin");
    const char *per_channel[] = {"mean", "var", "max", "active_share", "kind", "class_selectivity"};
    const size_t S = 2, K = 12, B = 4, bins = 10;
    for (size_t v = 0; v < sizeof per_channel / sizeof *per_channel; v++) {
        double *got = read_double(path, per_channel[v], S * K);
        for (size_t s = 0; s < S; s++) {
            char name[64];
            snprintf(name, sizeof name, "%s.%zu", per_channel[v], s);
            compare(name, got + s * K, sr_fixture_get(fx, name), 1);
        }
        free(got);
    }
    const struct {
        const char *var, *rec;
        size_t per;
    } rest[] = {{"pr_hist", "pr_hist", B * bins}, {"pr_zero", "pr_zero", B}, {"set_sizes", "set_sizes", K + 1},
                {"distinct_sets", "distinct_sets", 1}, {"jaccard_within", "jaccard_within", 1},
                {"jaccard_across", "jaccard_across", 1}};
    const size_t nrest = sizeof rest / sizeof *rest - (exact ? 0 : 2);
    for (size_t v = 0; v < nrest; v++) {
        double *got = read_double(path, rest[v].var, S * rest[v].per);
        for (size_t s = 0; s < S; s++) {
            char name[64];
            snprintf(name, sizeof name, "%s.%zu", rest[v].rec, s);
            compare(name, got + s * rest[v].per, sr_fixture_get(fx, name), 1);
        }
        free(got);
    }
    sr_fixture_free(fx);
}

static void test_stats(void)
{
    semrep_conf conf;
    char *sets[] = {"stats.pr_bins=10"};
    conf_with_phi(&conf, "phi_small.nc", "stats", 1, sets);
    CU_ASSERT_FATAL(stage_stats(&conf, &comm) == 0);
    if (comm.rank == 0) {
        char path[500];
        snprintf(path, sizeof path, "%s/stats/stats.nc", dir);
        compare_stats(path, 1);
        /* exact: all pairs of 4 classes of 10 images, no standard error */
        double *pairs = read_double(path, "jaccard_within_pairs", 2), *se = read_double(path, "jaccard_across_se", 2);
        CU_ASSERT(pairs[0] == 4 * 45 && pairs[1] == 4 * 45);
        CU_ASSERT(se[0] == 0.0 && se[1] == 0.0);
        free(pairs), free(se);
        printf("\n    stats vs numpy: worst relative difference %.2e", worst);
    }
    sr_conf_free(&conf);
}

/* Above cluster.exact_max the overlaps come from sampled pairs: numpy on the
 * stored sample gives the same means and standard errors, the pairs are
 * uniform over their kind, and the estimate is within 4 standard errors of
 * the exact value; everything else is as exact as ever. */
static void test_stats_sampled(void)
{
    semrep_conf conf;
    char *sets[] = {"stats.pr_bins=10", "cluster.exact_max=10"};
    conf_with_phi(&conf, "phi_small.nc", "sampled", 2, sets);
    CU_ASSERT_FATAL(stage_stats(&conf, &comm) == 0);
    if (comm.rank == 0) {
        char path[500], cmd[1500];
        snprintf(path, sizeof path, "%s/sampled/stats.nc", dir);
        compare_stats(path, 0);
        snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/make_analysis_fixture.py --check-sample %s %s/sampled/phi.nc",
                 SEMREP_FIXTURES, path, dir);
        CU_ASSERT(system(cmd) == 0);
        sr_fixture *fx = sr_fixture_load("stats_expected.bin");
        const char *kind[2] = {"within", "across"};
        for (int k = 0; k < 2; k++) {
            char var[64], rec[64];
            snprintf(var, sizeof var, "jaccard_%s", kind[k]);
            double *got = read_double(path, var, 2);
            snprintf(var, sizeof var, "jaccard_%s_se", kind[k]);
            double *se = read_double(path, var, 2);
            for (int s = 0; s < 2; s++) {
                snprintf(rec, sizeof rec, "jaccard_%s.%d", kind[k], s);
                const double exact = sr_fixture_get(fx, rec)->data[0];
                printf("\n    sigma %d %s: sampled %.4f +- %.4f, exact %.4f", s, kind[k], got[s], se[s], exact);
                CU_ASSERT(se[s] > 0.0 && se[s] < 0.01);
                CU_ASSERT(fabs(got[s] - exact) <= 4.0 * se[s]);
            }
            free(got), free(se);
        }
        sr_fixture_free(fx);
    }
    sr_conf_free(&conf);
    /* classes of 20, 10, 10 images and one unlabelled: a sampler that is not
     * uniform over pairs (one that picks the class uniformly) shows */
    conf_with_phi(&conf, "phi_small.nc", "unequal", 2, sets);
    if (comm.rank == 0) {
        char path[500];
        snprintf(path, sizeof path, "%s/unequal/phi.nc", dir);
        int ncid, var, label[40];
        CU_ASSERT_FATAL(nc_open(path, NC_WRITE, &ncid) == NC_NOERR);
        CU_ASSERT_FATAL(nc_inq_varid(ncid, "label", &var) == NC_NOERR);
        CU_ASSERT_FATAL(nc_get_var_int(ncid, var, label) == NC_NOERR);
        for (int i = 0; i < 40; i++) label[i] = label[i] == 3 ? 0 : label[i];
        label[5] = -1;
        CU_ASSERT_FATAL(nc_put_var_int(ncid, var, label) == NC_NOERR);
        CU_ASSERT_FATAL(nc_close(ncid) == NC_NOERR);
    }
    sr_comm_barrier(&comm);
    CU_ASSERT_FATAL(stage_stats(&conf, &comm) == 0);
    if (comm.rank == 0) {
        char cmd[1500];
        snprintf(cmd, sizeof cmd,
                 "/usr/bin/python3 %s/make_analysis_fixture.py --check-sample %s/unequal/stats.nc %s/unequal/phi.nc",
                 SEMREP_FIXTURES, dir, dir);
        CU_ASSERT(system(cmd) == 0);
    }
    sr_conf_free(&conf);
}

static void test_measures(void)
{
    sr_fixture *fx = sr_fixture_load("measures_expected.bin");
    for (int c = 0; c < 3; c++) {
        char a[32], l[32], name[32];
        snprintf(a, sizeof a, "assign.%d", c);
        snprintf(l, sizeof l, "label.%d", c);
        const sr_record *assign = sr_fixture_get(fx, a), *label = sr_fixture_get(fx, l);
        int k = 0, classes = 0;
        for (size_t i = 0; i < assign->count; i++) {
            k = (int)fmax(k, assign->data[i] + 1);
            classes = (int)fmax(classes, label->data[i] + 1);
        }
        double *table = calloc((size_t)k * classes, sizeof(double));
        for (size_t i = 0; i < assign->count; i++) table[(int)assign->data[i] * classes + (int)label->data[i]] += 1;
        const double got[3] = {sr_nmi(table, k, classes), sr_purity(table, k, classes), sr_ari(table, k, classes)};
        const char *names[3] = {"nmi", "purity", "ari"};
        for (int m = 0; m < 3; m++) {
            snprintf(name, sizeof name, "%s.%d", names[m], c);
            const double want = sr_fixture_get(fx, name)->data[0];
            if (fabs(got[m] - want) > 1e-6) printf("\n    %s: %.7f, scikit-learn %.7f", name, got[m], want);
            CU_ASSERT(fabs(got[m] - want) <= 1e-6);
        }
        /* the ARI from the labels themselves, without the table (the report's "what changed") */
        int *ia = SR_MALLOC(sizeof(int) * assign->count, "labels"), *il = SR_MALLOC(sizeof(int) * assign->count, "labels");
        for (size_t i = 0; i < assign->count; i++) ia[i] = (int)assign->data[i], il[i] = (int)label->data[i];
        snprintf(name, sizeof name, "ari.%d", c);
        const double ari = sr_ari_labels(ia, il, (long)assign->count), want = sr_fixture_get(fx, name)->data[0];
        if (fabs(ari - want) > 1e-6) printf("\n    ari from labels %d: %.7f, scikit-learn %.7f", c, ari, want);
        CU_ASSERT(fabs(ari - want) <= 1e-6);
        free(ia), free(il), free(table);
    }
    sr_fixture_free(fx);
}

static void *read_var(const char *path, const char *name, nc_type type, size_t count)
{
    int ncid, var;
    CU_ASSERT_FATAL(nc_open(path, NC_NOWRITE, &ncid) == NC_NOERR);
    CU_ASSERT_FATAL(nc_inq_varid(ncid, name, &var) == NC_NOERR);
    size_t bytes = type == NC_INT64 ? sizeof(long long) : type == NC_FLOAT ? sizeof(float) : sizeof(int);
    void *v = malloc(bytes * count);
    CU_ASSERT_FATAL(nc_get_var(ncid, var, v) == NC_NOERR);
    nc_close(ncid);
    return v;
}

/* clusters.nc's text attribute and knn_queries, and its format_version. */
static void read_attrs(const char *path, char *search, size_t len, long long *queries, int *version)
{
    int ncid;
    CU_ASSERT_FATAL(nc_open(path, NC_NOWRITE, &ncid) == NC_NOERR);
    CU_ASSERT_FATAL(sr_nc_get_text(ncid, NC_GLOBAL, "neighbour_search", search, len) == 0);
    CU_ASSERT_FATAL(nc_get_att_longlong(ncid, NC_GLOBAL, "knn_queries", queries) == NC_NOERR);
    CU_ASSERT_FATAL(nc_get_att_int(ncid, NC_GLOBAL, "format_version", version) == NC_NOERR);
    nc_close(ncid);
}

/* The squared distance of a row of phi to a centre, in double. */
static double dist2(const float *x, const double *c, int dim)
{
    double s = 0.0;
    for (int d = 0; d < dim; d++) s += (x[d] - c[d]) * (x[d] - c[d]);
    return s;
}

static void test_blobs(void)
{
    semrep_conf conf;
    char *sets[] = {"cluster.k=[5,3]", "cluster.restarts=3"};
    conf_with_phi(&conf, "phi_blobs.nc", "blobs", 2, sets);
    CU_ASSERT_FATAL(stage_cluster(&conf, &comm) == 0);
    if (comm.rank == 0) {
        enum { N = 150, DIM = 8, M = 16 };
        char path[500], phi_path[500];
        snprintf(path, sizeof path, "%s/blobs/clusters.nc", dir);
        snprintf(phi_path, sizeof phi_path, "%s/blobs/phi.nc", dir);
        double *nmi = read_double(path, "nmi", 2), *knn = read_double(path, "knn_accuracy", 2),
               *inertia = read_double(path, "inertia", 2);
        printf("\n    blobs on %d rank(s): NMI %.4f, 1-NN accuracy %.3f", comm.size, nmi[0], knn[0]);
        CU_ASSERT(nmi[0] > 0.99);
        CU_ASSERT(knn[0] > 0.99);
        int *assign = read_var(path, "assignment", NC_INT, 2 * N), *sizes = read_var(path, "cluster_size", NC_INT, 2 * 5);
        long long *members = read_var(path, "members", NC_INT64, 2 * 5 * M);
        float *x = read_var(phi_path, "phi", NC_FLOAT, N * DIM);
        /* K = 5: scikit-learn's partition (one cluster per blob) and inertia */
        sr_fixture *fx = sr_fixture_load("cluster_expected.bin");
        const float *want = sr_fixture_get(fx, "blobs_assign")->data;
        int to[5] = {-1, -1, -1, -1, -1}, from[5] = {-1, -1, -1, -1, -1}, same = 1;
        for (int i = 0; i < N; i++) {
            const int a = assign[i], b = (int)want[i];
            if (to[a] < 0 && from[b] < 0) to[a] = b, from[b] = a;
            same &= to[a] == b && from[b] == a;
        }
        CU_ASSERT(same);
        const double ref = sr_fixture_get(fx, "blobs_inertia")->data[0];
        if (fabs(inertia[0] - ref) > 1e-5 * ref) printf("\n    K = 5 inertia %.8g, scikit-learn %.8g", inertia[0], ref);
        CU_ASSERT(fabs(inertia[0] - ref) <= 1e-5 * ref);
        /* K = 3 (fewer than the blobs): a fixed point of Lloyd's iteration.
         * Each image is nearest the mean of its cluster, the inertia is the
         * sum of squared distances to those means (seeding alone, with
         * centres at images, fails both), sizes count the images, and the
         * members lie in their cluster, nearest its mean first. */
        const int *a3 = assign + N;
        double mean[3][DIM] = {{0}}, count[3] = {0}, sum = 0.0;
        for (int i = 0; i < N; i++) {
            CU_ASSERT_FATAL(a3[i] >= 0 && a3[i] < 3);
            count[a3[i]] += 1.0;
            for (int d = 0; d < DIM; d++) mean[a3[i]][d] += x[i * DIM + d];
        }
        for (int c = 0; c < 3; c++) {
            CU_ASSERT(sizes[5 + c] == (int)count[c]);
            for (int d = 0; d < DIM; d++) mean[c][d] /= count[c];
        }
        int nearest_own = 1;
        for (int i = 0; i < N; i++) {
            sum += dist2(x + i * DIM, mean[a3[i]], DIM);
            for (int c = 0; c < 3; c++) nearest_own &= dist2(x + i * DIM, mean[c], DIM) >= dist2(x + i * DIM, mean[a3[i]], DIM);
        }
        CU_ASSERT(nearest_own);
        if (fabs(inertia[1] - sum) > 1e-5 * sum) printf("\n    K = 3 inertia %.8g, from the means %.8g", inertia[1], sum);
        CU_ASSERT(fabs(inertia[1] - sum) <= 1e-5 * sum);
        for (int c = 0; c < 3; c++)
            for (int j = 0; j < M && j < (int)count[c]; j++) {
                const long long i = members[(5 + c) * M + j];
                CU_ASSERT_FATAL(i >= 0 && i < N);
                CU_ASSERT(a3[i] == c);
                if (j) CU_ASSERT(dist2(x + i * DIM, mean[c], DIM) >= dist2(x + members[(5 + c) * M + j - 1] * DIM, mean[c], DIM) - 1e-4);
            }
        sr_fixture_free(fx);
        free(nmi), free(knn), free(inertia), free(assign), free(sizes), free(members), free(x);
    }
    sr_conf_free(&conf);
}

/* phi_knn.nc's clusters.nc in sub, with the extra settings. */
static void cluster_knn(const char *sub, int nsets, char **extra, semrep_comm *on)
{
    semrep_conf conf;
    char *sets[8] = {"cluster.k=[3]", "cluster.restarts=1"};
    for (int i = 0; i < nsets; i++) sets[2 + i] = extra[i];
    conf_with_phi_on(on, &conf, "phi_knn.nc", sub, 2 + nsets, sets);
    CU_ASSERT_FATAL(stage_cluster(&conf, on) == 0);
    sr_conf_free(&conf);
}

/* The kept neighbour lists and the k-NN accuracy of the queries in path
 * against scikit-learn's leave-one-out lists of those images. */
static void check_queries(const char *path, long nq, const long long *query)
{
    enum { NN = 10 };
    sr_fixture *fx = sr_fixture_load("cluster_expected.bin");
    const sr_record *index = sr_fixture_get(fx, "knn_index"), *distance = sr_fixture_get(fx, "knn_distance");
    int *nbr = read_var(path, "neighbours", NC_INT, (size_t)nq * NN);
    float *d = read_var(path, "neighbour_distance", NC_FLOAT, (size_t)nq * NN);
    double *knn = read_double(path, "knn_accuracy", 2), right[2] = {0, 0};
    int same = 1;
    float worst_d = 0.0f;
    for (long q = 0; q < nq; q++) {
        const long long i = query[q];
        for (int j = 0; j < NN; j++) {
            same &= nbr[q * NN + j] == (int)index->data[i * NN + j];
            worst_d = fmaxf(worst_d, fabsf(d[q * NN + j] - distance->data[i * NN + j]) / distance->data[i * NN + j]);
        }
        right[0] += sr_fixture_get(fx, "knn_right1")->data[i];
        right[1] += sr_fixture_get(fx, "knn_right10")->data[i];
    }
    if (!same) printf("\n    %s: neighbour lists differ from scikit-learn's", path);
    CU_ASSERT(same);
    CU_ASSERT(worst_d < 1e-4f);
    for (int k = 0; k < 2; k++) {
        if (fabs(knn[k] - right[k] / nq) > 1e-12) printf("\n    k-NN accuracy %.6f, numpy %.6f", knn[k], right[k] / nq);
        CU_ASSERT(fabs(knn[k] - right[k] / nq) <= 1e-12);
    }
    sr_fixture_free(fx);
    free(nbr), free(d), free(knn);
}

static void test_exact_neighbours(void)
{
    cluster_knn("knn-exact", 0, NULL, &comm);
    if (comm.rank == 0) {
        char path[500], search[32] = "";
        snprintf(path, sizeof path, "%s/knn-exact/clusters.nc", dir);
        long long queries = 0, *query = read_var(path, "query_index", NC_INT64, 120);
        int version = 0, all = 1;
        read_attrs(path, search, sizeof search, &queries, &version);
        CU_ASSERT(!strcmp(search, "exact") && queries == 120 && version == 3);
        for (int i = 0; i < 120; i++) all &= query[i] == i;
        CU_ASSERT(all);
        check_queries(path, 120, query);
        free(query);
    }
}

/* Above cluster.exact_max: 30 sampled queries, each against all 120 images;
 * the sample is the same whatever the rank count (a run on rank 0 alone). */
static void test_sampled_neighbours(void)
{
    char *sets[] = {"cluster.exact_max=50", "cluster.queries=30"};
    cluster_knn("knn-sampled", 2, sets, &comm);
    if (comm.rank == 0) {
        semrep_comm self;
        sr_comm_self(&comm, &self);
        cluster_knn("knn-sampled-alone", 2, sets, &self);
        char path[500], alone[500], search[32] = "";
        snprintf(path, sizeof path, "%s/knn-sampled/clusters.nc", dir);
        snprintf(alone, sizeof alone, "%s/knn-sampled-alone/clusters.nc", dir);
        long long queries = 0, *query = read_var(path, "query_index", NC_INT64, 30),
                  *query1 = read_var(alone, "query_index", NC_INT64, 30);
        int version = 0, ordered = 1, *assign = read_var(path, "assignment", NC_INT, 120);
        read_attrs(path, search, sizeof search, &queries, &version);
        CU_ASSERT(!strcmp(search, "sampled") && queries == 30 && version == 3);
        for (int q = 0; q < 30; q++) ordered &= query[q] >= (q ? query[q - 1] + 1 : 0) && query[q] < 120 && query[q] == query1[q];
        CU_ASSERT(ordered);
        CU_ASSERT(query[29] > 29); /* a sample, not the first images */
        int clustered = 1;
        for (int i = 0; i < 120; i++) clustered &= assign[i] >= 0 && assign[i] < 3;
        CU_ASSERT(clustered);
        check_queries(path, 30, query);
        check_queries(alone, 30, query1);
        free(query), free(query1), free(assign);
    }
    sr_comm_barrier(&comm);
}

/* The CPU backend dressed as a device: its memory is not host memory, so
 * k-means copies to it and back as it does on a GPU. */
static void *dev_alloc(const sr_backend *be, size_t bytes) { return malloc(bytes); }
static void dev_release(const sr_backend *be, void *p) { free(p); }
static void dev_copy(const sr_backend *be, void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }

/* k-means through a backend whose memory is the device's gives what it
 * gives through the host's: the copies move the right rows and centres. */
static void test_device_memory(void)
{
    enum { N = 150, DIM = 8 };
    char path[500];
    snprintf(path, sizeof path, "%s/phi_blobs.nc", SEMREP_FIXTURES);
    float *x = read_var(path, "phi", NC_FLOAT, N * DIM);
    long first, end;
    sr_shard(N, 1, comm.rank, comm.size, &first, &end);
    const sr_backend *host = sr_test_backend();
    CU_ASSERT_FATAL(sr_be_host_memory(host)); /* the reference is the CPU */
    sr_backend_ops ops = *host->ops;
    ops.host_memory = false, ops.alloc = dev_alloc, ops.release = dev_release, ops.to_device = dev_copy,
    ops.to_host = dev_copy;
    const sr_backend device = {.ops = &ops, .ctx = host->ctx};
    const sr_backend *both[2] = {host, &device};
    sr_kmeans km[2];
    for (int b = 0; b < 2; b++) {
        sr_kmeans_data data;
        sr_kmeans_data_open(both[b], x + first * DIM, end - first, first, N, DIM, &data);
        sr_kmeans_run(&comm, &data, 3, 7, 2, 50, &km[b]);
        sr_kmeans_data_close(&data);
    }
    CU_ASSERT(km[0].inertia == km[1].inertia);
    CU_ASSERT(!memcmp(km[0].assign, km[1].assign, sizeof(int) * (size_t)(end - first)));
    CU_ASSERT(!memcmp(km[0].centres, km[1].centres, sizeof(float) * 3 * DIM));
    sr_kmeans_free(&km[0]), sr_kmeans_free(&km[1]);
    free(x);
}

static void expect_refused(int (*stage)(const semrep_conf *, semrep_comm *), const char *fixture, const char *sub,
                           int nsets, char **sets, const char *want)
{
    semrep_conf conf;
    conf_with_phi(&conf, fixture, sub, nsets, sets);
    if (comm.rank == 0 && !strcmp(sub, "version")) {
        char path[500];
        snprintf(path, sizeof path, "%s/%s/phi.nc", dir, sub);
        int ncid, two = 2;
        CU_ASSERT_FATAL(nc_open(path, NC_WRITE, &ncid) == NC_NOERR);
        nc_put_att_int(ncid, NC_GLOBAL, "format_version", NC_INT, 1, &two);
        nc_close(ncid);
    }
    sr_comm_barrier(&comm);
    /* the message goes to stderr from rank 0; here the status is checked */
    CU_ASSERT_EQUAL(stage(&conf, &comm), 1);
    (void)want;
    sr_conf_free(&conf);
}

static void test_bad_input(void)
{
    char *k_big[] = {"cluster.k=[151]"};
    expect_refused(stage_cluster, "phi_blobs.nc", "k-big", 1, k_big, "more than the 150 images");
    char *sigma[] = {"cluster.sigmas=[0.3]"};
    expect_refused(stage_cluster, "phi_blobs.nc", "sigma", 1, sigma, "not a sigma of");
    expect_refused(stage_stats, "phi_small.nc", "version", 0, NULL, "format_version 2");
}

int main(int argc, char **argv)
{
    sr_comm_init(&comm, &argc, &argv);
    snprintf(dir, sizeof dir, "/tmp/semrep_test_analysis_XXXXXX");
    if (comm.rank == 0) sr_test_temp_dir(dir);
    sr_comm_bcast(&comm, dir, sizeof dir, 0);
    const sr_test tests[] = {
        {"stats against numpy", test_stats},
        {"stats' sampled overlaps against numpy on the stored sample", test_stats_sampled},
        {"NMI, purity and ARI against scikit-learn", test_measures},
        {"k-means: scikit-learn's blobs and inertia, a Lloyd fixed point", test_blobs},
        {"exact neighbours against scikit-learn", test_exact_neighbours},
        {"sampled neighbours against numpy on the stored sample", test_sampled_neighbours},
        {"k-means through device memory as through the host's", test_device_memory},
        {"bad input is refused", test_bad_input},
        {NULL, NULL},
    };
    const int failed = sr_test_run("analysis", tests);
    sr_comm_barrier(&comm);
    if (comm.rank == 0) sr_test_remove_tree(dir);
    sr_comm_finalize(&comm);
    return failed;
}
