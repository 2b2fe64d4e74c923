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

#include "stages/measures.h"
#include "stages/stage.h"
#include "test_util.h"

static semrep_comm comm;
static char dir[256];
static char err[1024];

/* A conf whose output folder holds a copy of a fixture as its phi.nc. */
static void conf_with_phi(semrep_conf *conf, const char *fixture, const char *sub, int nsets, char **extra)
{
    char out[400], cmd[1200], set[500];
    snprintf(out, sizeof out, "%s/%s", dir, sub);
    if (comm.rank == 0) {
        snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/%s %s/phi.nc", out, SEMREP_FIXTURES, fixture, out);
        CU_ASSERT_FATAL(system(cmd) == 0);
    }
    sr_comm_barrier(&comm);
    snprintf(set, sizeof set, "output_dir=\"%s\"", out);
    char *sets[16] = {set, "cluster.pixels=false"};
    for (int i = 0; i < nsets; i++) sets[2 + i] = extra[i];
    CU_ASSERT_FATAL(sr_conf_load(conf, NULL, 2 + nsets, sets, err, sizeof err) == 0);
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
        free(table);
    }
    sr_fixture_free(fx);
}

static void test_blobs(void)
{
    semrep_conf conf;
    char *sets[] = {"cluster.k=[5]", "cluster.restarts=3"};
    conf_with_phi(&conf, "phi_blobs.nc", "blobs", 2, sets);
    CU_ASSERT_FATAL(stage_cluster(&conf, &comm) == 0);
    if (comm.rank == 0) {
        char path[500];
        snprintf(path, sizeof path, "%s/blobs/clusters.nc", dir);
        double *nmi = read_double(path, "nmi", 1), *knn = read_double(path, "knn_accuracy", 2);
        printf("\n    blobs on %d rank(s): NMI %.4f, 1-NN accuracy %.3f", comm.size, nmi[0], knn[0]);
        CU_ASSERT(nmi[0] > 0.99);
        CU_ASSERT(knn[0] > 0.99);
        free(nmi), free(knn);
    }
    sr_conf_free(&conf);
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
        {"k-means recovers well-separated blobs", test_blobs},
        {"bad input is refused", test_bad_input},
        {NULL, NULL},
    };
    const int failed = sr_test_run("analysis", tests);
    sr_comm_barrier(&comm);
    if (comm.rank == 0) sr_test_remove_tree(dir);
    sr_comm_finalize(&comm);
    return failed;
}
