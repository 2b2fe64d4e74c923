/* The training stage against independent references:
 * - the training sigmas that sr_train_sigma makes of the stage's own uniform
 *   draws (Philox, SR_RNG_TRAIN_SIGMA, keyed by seed, epoch and image, as
 *   stages/train.c draws them) follow their closed-form distribution
 *   (SPEC.md: inv_sqrt draws sqrt(sigma) uniformly, uniform draws sigma):
 *   a Kolmogorov-Smirnov test over 20,000 draws, on [0, 1] and [0.02, 0.5];
 * - one step of sr_trainer_step, started from a PyTorch model's weights
 *   (train.init), against PyTorch in float64 on the same batch
 *   (tests/fixtures/make_train_reference.py): the loss, which is the sum of
 *   squared errors over the batch's pixels divided by the batch, and every
 *   parameter's gradient, within 2e-5 relative, on 1 rank. */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "stages/model.h"
#include "stages/train.h"
#include "test_util.h"

static semrep_comm comm;
static char dir[256];
static char err[1024];

#define TOL 2e-5

static int cmp_double(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The KS statistic sqrt(n) D of n sigmas against the closed form. */
static double ks_of(const char *dist, double lo, double hi, double *min, double *max)
{
    enum { N = 20000 };
    char set_dist[64], set_lo[64], set_hi[64];
    snprintf(set_dist, sizeof set_dist, "train.sigma_dist=\"%s\"", dist);
    snprintf(set_lo, sizeof set_lo, "train.sigma_min=%.17g", lo);
    snprintf(set_hi, sizeof set_hi, "train.sigma_max=%.17g", hi);
    char *sets[] = {set_dist, set_lo, set_hi};
    semrep_conf conf;
    CU_ASSERT_FATAL(sr_conf_load(&conf, NULL, 3, sets, err, sizeof err) == 0);
    double *s = malloc(sizeof(double) * N);
    for (long i = 0; i < N; i++) {
        const sr_rng_stream st = {.seed = (uint32_t)conf.seed, .domain = SR_RNG_TRAIN_SIGMA, .i0 = 3, .i1 = (uint32_t)i};
        float u;
        sr_rng_uniform(&st, 0, 1, &u);
        s[i] = sr_train_sigma(&conf, u);
    }
    qsort(s, N, sizeof *s, cmp_double);
    *min = s[0], *max = s[N - 1];
    const int root = strcmp(dist, "uniform") != 0;
    double d = 0.0;
    for (long i = 0; i < N; i++) {
        const double F = root ? (sqrt(s[i]) - sqrt(lo)) / (sqrt(hi) - sqrt(lo)) : (s[i] - lo) / (hi - lo);
        d = fmax(d, fmax(fabs((double)(i + 1) / N - F), fabs(F - (double)i / N)));
    }
    free(s);
    sr_conf_free(&conf);
    return sqrt((double)N) * d;
}

static void test_sigma_distribution(void)
{
    const struct {
        const char *dist;
        double lo, hi;
    } cases[] = {{"inv_sqrt", 0.0, 1.0}, {"inv_sqrt", 0.02, 0.5}, {"uniform", 0.0, 1.0}, {"uniform", 0.02, 0.5}};
    for (int c = 0; c < 4; c++) {
        double min, max;
        const double ks = ks_of(cases[c].dist, cases[c].lo, cases[c].hi, &min, &max);
        printf("\n    %-8s on [%.2f, %.2f]: sqrt(n) D = %.3f, draws in [%.4f, %.4f]", cases[c].dist, cases[c].lo,
               cases[c].hi, ks, min, max);
        /* 1.95: the Kolmogorov distribution's 0.999 quantile */
        CU_ASSERT(ks < 1.95);
        CU_ASSERT(min >= cases[c].lo - 1e-7 && max <= cases[c].hi + 1e-7);
    }
}

static void test_step_against_pytorch(void)
{
    enum { BATCH = 8 };
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s/make_train_reference.py %s %d", SEMREP_FIXTURES, dir, BATCH);
    CU_ASSERT_FATAL(system(cmd) == 0);
    char set_out[400], set_init[400], set_batch[64], set_limit[64];
    snprintf(set_out, sizeof set_out, "output_dir=\"%s/run\"", dir);
    snprintf(set_init, sizeof set_init, "train.init=\"%s/model.nc\"", dir);
    snprintf(set_batch, sizeof set_batch, "train.batch=%d", BATCH);
    snprintf(set_limit, sizeof set_limit, "train.dataset.limit=%d", BATCH);
    char *sets[] = {set_out, set_init, set_batch, set_limit, "train.sigma_min=0", "train.sigma_max=0"};
    semrep_conf conf;
    CU_ASSERT_FATAL(sr_conf_load(&conf, SEMREP_FIXTURES "/../../conf/tiny-test.conf", 6, sets, err, sizeof err) == 0);
    sr_trainer *t;
    if (sr_trainer_open(&t, &conf, &comm, err, sizeof err)) printf("\n    %s", err);
    CU_ASSERT_FATAL(err[0] == 0 || t != NULL);
    const size_t n = sr_trainer_parameter_floats(t);
    float *grad = malloc(sizeof(float) * n);
    const double loss = sr_trainer_step(t, 0, 0);
    sr_trainer_gradient(t, grad);
    sr_trainer_close(t);

    char path[400];
    snprintf(path, sizeof path, "%s/step.bin", dir);
    sr_fixture *fx = sr_fixture_load(path);
    const double ref = sr_fixture_get(fx, "loss")->data[0];
    printf("\n    loss %.6f, PyTorch %.6f", loss, ref);
    CU_ASSERT(fabs(loss - ref) <= TOL * ref);

    /* the parameters' names and places, from the conf's plan */
    sr_unet net;
    CU_ASSERT_FATAL(sr_model_plan(&conf, sr_backend_cpu(1), 1, true, &net, err, sizeof err) == 0);
    CU_ASSERT_EQUAL(net.param_floats, n);
    double worst = 0.0;
    int found = 0;
    for (int i = 0; i < net.nparams; i++) {
        const sr_param *p = &net.params[i];
        char name[80];
        snprintf(name, sizeof name, "grad.%s", p->name);
        const sr_record *r = sr_fixture_get(fx, name);
        if (!r) {
            printf("\n    no PyTorch gradient for %s", p->name);
            continue;
        }
        found++;
        CU_ASSERT_EQUAL_FATAL(r->count, p->count);
        const double d = sr_max_rel_diff(grad + p->offset, r->data, r->count);
        if (d > TOL) printf("\n    %s: max rel diff %.2e", name, d);
        worst = fmax(worst, d);
    }
    printf("\n    %d parameter gradients, worst max rel diff %.2e", found, worst);
    CU_ASSERT_EQUAL(found, fx->count - 1);
    CU_ASSERT_EQUAL(found, net.nparams);
    CU_ASSERT(worst <= TOL);
    sr_unet_free(&net);
    sr_fixture_free(fx);
    free(grad);
    sr_conf_free(&conf);
}

int main(int argc, char **argv)
{
    sr_comm_init(&comm, &argc, &argv);
    snprintf(dir, sizeof dir, "/tmp/semrep_test_train_ref_XXXXXX");
    sr_test_temp_dir(dir);
    const sr_test tests[] = {
        {"training sigmas: Kolmogorov-Smirnov against the closed form", test_sigma_distribution},
        {"one training step: loss and gradients against PyTorch", test_step_against_pytorch},
        {NULL, NULL},
    };
    const int failed = sr_test_run("train_reference", tests);
    sr_test_remove_tree(dir);
    sr_comm_finalize(&comm);
    return failed;
}
