/* Training under mpirun -np 2: one step's gradient summed over two ranks
 * equals the gradient one process computes for the same global batch; and
 * a few steps make the loss fall (a broken gradient cannot). */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stages/train.h"
#include "test_util.h"

static semrep_comm comm;
static char dir[256];
static char err[1024];

static void load_tiny(semrep_conf *conf, const char *sub)
{
    char set[400];
    snprintf(set, sizeof set, "output_dir=\"%s/%s\"", dir, sub);
    char *sets[] = {set};
    CU_ASSERT_FATAL(sr_conf_load(conf, SEMREP_FIXTURES "/../../conf/tiny-test.conf", 1, sets, err, sizeof err) == 0);
}

static void test_summed_gradient(void)
{
    semrep_conf conf, conf_alone;
    load_tiny(&conf, "two");
    load_tiny(&conf_alone, "one");
    sr_trainer *t;
    CU_ASSERT_FATAL(sr_trainer_open(&t, &conf, &comm, err, sizeof err) == 0);
    const size_t n = sr_trainer_parameter_floats(t);
    float *two = malloc(sizeof(float) * n), *one = malloc(sizeof(float) * n);
    sr_trainer_step(t, 0, 0);
    sr_trainer_gradient(t, two);
    sr_trainer_close(t);
    if (comm.rank == 0) {
        semrep_comm self;
        sr_comm_self(&comm, &self);
        CU_ASSERT_FATAL(sr_trainer_open(&t, &conf_alone, &self, err, sizeof err) == 0);
        sr_trainer_step(t, 0, 0);
        sr_trainer_gradient(t, one);
        sr_trainer_close(t);
        const double d = sr_max_rel_diff(two, one, n);
        printf("\n    gradient over 2 ranks vs 1: max rel diff %.2e", d);
        CU_ASSERT(d < 1e-5);
    }
    free(two), free(one);
    sr_conf_free(&conf);
    sr_conf_free(&conf_alone);
}

static void test_loss_falls(void)
{
    semrep_conf conf;
    load_tiny(&conf, "falls");
    sr_trainer *t;
    CU_ASSERT_FATAL(sr_trainer_open(&t, &conf, &comm, err, sizeof err) == 0);
    double first = 0, last = 0;
    const int steps = 40;
    for (int s = 0; s < steps; s++) {
        const double loss = sr_trainer_step(t, s / 8, s % 8);
        if (s < 4) first += loss / 4;
        if (s >= steps - 4) last += loss / 4;
    }
    sr_trainer_close(t);
    if (comm.rank == 0) printf("\n    loss: first 4 steps %.1f, last 4 %.1f", first, last);
    CU_ASSERT(last < 0.5 * first);
    sr_conf_free(&conf);
}

int main(int argc, char **argv)
{
    sr_comm_init(&comm, &argc, &argv);
    /* one folder for both ranks */
    snprintf(dir, sizeof dir, "/tmp/semrep_test_train_XXXXXX");
    if (comm.rank == 0) sr_test_temp_dir(dir);
    sr_comm_bcast(&comm, dir, sizeof dir, 0);
    const sr_test tests[] = {
        {"a gradient summed over ranks is the one-process gradient", test_summed_gradient},
        {"the loss falls", test_loss_falls},
        {NULL, NULL},
    };
    const int failed = sr_test_run("mpi_train", tests);
    sr_comm_barrier(&comm);
    if (comm.rank == 0) sr_test_remove_tree(dir);
    sr_comm_finalize(&comm);
    return failed;
}
