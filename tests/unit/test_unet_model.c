/* Properties of the model as a whole: SPEC.md's parameter counts, the
 * authors' state-dict names and shapes, refusal of unusable shapes, and that
 * each image is independent of its batch (StdNorm is per image). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/unet.h"
#include "test_util.h"

static const sr_backend *be;

static void test_parameter_counts(void)
{
    sr_unet net;
    char err[256];
    sr_unet_shape shape = sr_unet_shape_default();
    CU_ASSERT_FATAL(sr_unet_plan(&net, &shape, err, sizeof err) == 0);
    printf("\n    default: %zu parameters", net.trainable_count);
    CU_ASSERT_EQUAL(net.trainable_count, 2507489);
    sr_unet_free(&net);
    shape = sr_unet_shape_paper();
    CU_ASSERT_FATAL(sr_unet_plan(&net, &shape, err, sizeof err) == 0);
    printf("\n    paper: %zu parameters", net.trainable_count);
    CU_ASSERT_EQUAL(net.trainable_count, 13678147);
    sr_unet_free(&net);
}

static void expect_param(const sr_unet *net, const char *name, int ndim, int d0, int d1, int d2, int d3)
{
    const sr_param *p = sr_unet_param(net, name);
    CU_ASSERT_PTR_NOT_NULL_FATAL(p);
    CU_ASSERT_EQUAL(p->ndim, ndim);
    const int want[4] = {d0, d1, d2, d3};
    for (int d = 0; d < p->ndim; d++) CU_ASSERT_EQUAL(p->dims[d], want[d]);
}

static void test_state_dict_names(void)
{
    sr_unet net;
    char err[256];
    const sr_unet_shape shape = sr_unet_shape_default();
    CU_ASSERT_FATAL(sr_unet_plan(&net, &shape, err, sizeof err) == 0);
    expect_param(&net, "encoder.0.0.weight", 4, 32, 1, 3, 3);
    expect_param(&net, "encoder.0.2.weight", 4, 32, 32, 3, 3);
    expect_param(&net, "encoder.0.3.gammas", 4, 1, 32, 1, 1);
    expect_param(&net, "encoder.1.0.weight", 4, 64, 32, 3, 3);
    expect_param(&net, "encoder.1.4.gammas", 4, 1, 64, 1, 1);
    expect_param(&net, "mid.0.weight", 4, 256, 128, 3, 3);
    expect_param(&net, "mid.7.gammas", 4, 1, 256, 1, 1);
    expect_param(&net, "upsample.2.weight", 4, 256, 128, 2, 2);
    expect_param(&net, "upsample.0.weight", 4, 64, 32, 2, 2);
    expect_param(&net, "decoder.2.0.weight", 4, 128, 256, 3, 3);
    expect_param(&net, "decoder.0.0.weight", 4, 32, 64, 3, 3);
    expect_param(&net, "decoder.0.3.weight", 4, 1, 32, 3, 3);
    expect_param(&net, "decoder.0.3.bias", 1, 1, 0, 0, 0);
    CU_ASSERT_PTR_NULL(sr_unet_param(&net, "encoder.0.1.gammas")); /* block 0 starts bare */
    CU_ASSERT_PTR_NULL(sr_unet_param(&net, "upsample.1.bias"));
    CU_ASSERT_PTR_NULL(sr_unet_param(&net, "decoder.0.4.gammas")); /* the final conv is bare */
    CU_ASSERT_EQUAL(net.nblocks, 6);
    CU_ASSERT_EQUAL(net.block_offset[6], 32 + 64 + 128 + 256 + 128 + 64);
    sr_unet_free(&net);
}

static void expect_refused(sr_unet_shape shape, const char *key)
{
    sr_unet net;
    char err[256] = "";
    CU_ASSERT_EQUAL(sr_unet_plan(&net, &shape, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, key));
}

static void test_bad_shapes(void)
{
    sr_unet_shape s = sr_unet_shape_default();
    s.kernels[1] = -4;
    expect_refused(s, "model.kernels[1]");
    s = sr_unet_shape_default();
    s.in_channels = 0;
    expect_refused(s, "model.in_channels");
    s = sr_unet_shape_default();
    s.mid_convs = 0;
    expect_refused(s, "model.mid_convs");
    s = sr_unet_shape_default();
    s.levels = 0;
    expect_refused(s, "model.kernels");
    s = sr_unet_shape_default();
    s.dec_convs[2] = 1000;
    expect_refused(s, "model.dec_convs[2]");
    char err[256] = "";
    s = sr_unet_shape_default();
    CU_ASSERT_EQUAL(sr_unet_size_check(&s, 28, 28, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "multiples of 8"));
    CU_ASSERT_EQUAL(sr_unet_size_check(&s, 32, 48, err, sizeof err), 0);
}

/* SPEC.md's default shape with seeded weights and gammas of order one (so
 * that the normalised layers matter). */
static void default_net(sr_unet *net, uint32_t seed)
{
    char err[256];
    const sr_unet_shape shape = sr_unet_shape_default();
    CU_ASSERT_FATAL(sr_unet_plan(net, &shape, err, sizeof err) == 0);
    sr_unet_alloc(net, be);
    sr_unet_init_weights(net, seed);
    for (int i = 0; i < net->nparams; i++)
        if (strstr(net->params[i].name, "gammas"))
            sr_test_uniform(200 + i, 0.5f, 1.5f, net->params[i].count, net->param + net->params[i].offset);
}

/* Image 5 of a batch of 64 and the same image alone: same output and block
 * means (to GEMM rounding, since the product sizes differ). */
static void test_batch_independence(void)
{
    sr_unet net;
    default_net(&net, 11);
    const int n = 64, hw = 32 * 32, pick = 5;
    float *batch = malloc(sizeof(float) * n * hw), *out = malloc(sizeof(float) * n * hw);
    sr_test_uniform(60, 0, 1, (size_t)n * hw, batch);
    sr_unet_work big, one;
    sr_unet_work_init(&big, &net, n, 32, 32, false);
    sr_unet_work_init(&one, &net, 1, 32, 32, false);
    sr_unet_put_images(&big, batch, sr_unet_input(&big));
    sr_unet_forward(&net, &big, SR_UPTO_OUTPUT);
    sr_unet_get_images(&big, sr_unet_output(&big), out);
    float alone[32 * 32];
    sr_unet_put_images(&one, batch + pick * hw, sr_unet_input(&one));
    sr_unet_forward(&net, &one, SR_UPTO_OUTPUT);
    sr_unet_get_images(&one, sr_unet_output(&one), alone);
    const double d_out = sr_max_rel_diff(alone, out + pick * hw, hw);
    double d_means = 0.0;
    for (int b = 0; b < net.nblocks; b++) {
        const int c = net.block_offset[b + 1] - net.block_offset[b];
        const float *m_big = big.means + (size_t)n * net.block_offset[b] + (size_t)pick * c;
        const float *m_one = one.means + net.block_offset[b];
        d_means = fmax(d_means, sr_max_rel_diff(m_one, m_big, c));
    }
    printf("\n    batch of 1 vs 64: output max rel diff %.2e, block means %.2e", d_out, d_means);
    CU_ASSERT(d_out < 1e-5);
    CU_ASSERT(d_means < 1e-5);
    sr_unet_work_free(&big);
    sr_unet_work_free(&one);
    sr_unet_free(&net);
    free(batch), free(out);
}

/* Output, block means, input and parameter gradients are bit-identical with
 * 1, 2 and 3 threads: what lets phi be the same on any number of ranks. */
static void test_thread_count_independence(void)
{
    sr_unet net;
    default_net(&net, 5);
    const int n = 8, hw = 32 * 32;
    float *x = malloc(sizeof(float) * n * hw);
    sr_test_uniform(70, 0, 1, (size_t)n * hw, x);
    sr_unet_work wk;
    sr_unet_work_init(&wk, &net, n, 32, 32, true);
    const size_t nmeans = sr_unet_means_count(&wk), nout = (size_t)n * hw, ngrad = net.param_floats;
    float *first = NULL;
    const size_t total = nout + nmeans + nout + ngrad;
    int differing = 0;
    for (int threads = 1; threads <= 3; threads++) {
        sr_backend *cpu = sr_backend_cpu_new(threads);
        net.be = cpu; /* the same host memory: any CPU instance may run the net */
        float *got = calloc(total, sizeof(float));
        sr_unet_put_images(&wk, x, sr_unet_input(&wk));
        sr_unet_forward(&net, &wk, SR_UPTO_OUTPUT);
        sr_unet_get_images(&wk, sr_unet_output(&wk), got);
        memcpy(got + nout, wk.means, sizeof(float) * nmeans);
        for (size_t i = 0; i < nmeans; i++) wk.d_means[i] = 0.01f * (float)(i % 7);
        sr_unet_put_images(&wk, x, wk.d_output);
        sr_unet_backward(&net, &wk, SR_UPTO_OUTPUT, wk.d_output, wk.d_means, got + 2 * nout + nmeans, true);
        sr_unet_get_images(&wk, sr_unet_input_grad(&wk), got + nout + nmeans);
        if (!first) first = got;
        else {
            for (size_t i = 0; i < total; i++) differing += memcmp(&got[i], &first[i], sizeof(float)) != 0;
            free(got);
        }
        net.be = be;
        sr_backend_free(cpu);
    }
    printf("\n    values differing between 1, 2 and 3 threads: %d of %zu", differing, total);
    CU_ASSERT_EQUAL(differing, 0);
    free(first), free(x);
    sr_unet_work_free(&wk);
    sr_unet_free(&net);
}

/* A workspace made for 8 images, laid out again for 3 and back: its
 * output, block means and input gradient are those of a workspace made
 * for 3 (and 8), bit for bit. */
static void run_grad(const sr_unet *net, sr_unet_work *wk, const float *x, float *got)
{
    const size_t nout = (size_t)wk->n * 32 * 32, nmeans = sr_unet_means_count(wk);
    sr_unet_put_images(wk, x, sr_unet_input(wk));
    sr_unet_forward(net, wk, SR_UPTO_OUTPUT);
    sr_unet_get_images(wk, sr_unet_output(wk), got);
    memcpy(got + nout, wk->means, sizeof(float) * nmeans);
    sr_unet_put_images(wk, x, wk->d_output);
    sr_unet_backward(net, wk, SR_UPTO_OUTPUT, wk->d_output, NULL, NULL, true);
    sr_unet_get_images(wk, sr_unet_input_grad(wk), got + nout + nmeans);
}

static void test_workspace_resize(void)
{
    sr_unet net;
    default_net(&net, 9);
    const int hw = 32 * 32;
    float *x = malloc(sizeof(float) * 8 * hw);
    sr_test_uniform(80, 0, 1, (size_t)8 * hw, x);
    sr_unet_work big, fresh;
    sr_unet_work_init(&big, &net, 8, 32, 32, true);
    int differing = 0;
    for (int pass = 0; pass < 2; pass++) {
        const int n = pass ? 8 : 3;
        sr_unet_work_init(&fresh, &net, n, 32, 32, true);
        sr_unet_work_resize(&big, n);
        const size_t total = 2 * (size_t)n * hw + sr_unet_means_count(&fresh);
        float *a = calloc(total, sizeof(float)), *b = calloc(total, sizeof(float));
        run_grad(&net, &big, x, a);
        run_grad(&net, &fresh, x, b);
        for (size_t i = 0; i < total; i++) differing += memcmp(&a[i], &b[i], sizeof(float)) != 0;
        free(a), free(b);
        sr_unet_work_free(&fresh);
    }
    printf("\n    a workspace of 8 laid out for 3, then 8, against fresh ones: %d values differ", differing);
    CU_ASSERT_EQUAL(differing, 0);
    sr_unet_work_free(&big);
    sr_unet_free(&net);
    free(x);
}

int main(void)
{
    be = sr_backend_cpu_new(0);
    const sr_test tests[] = {
        {"parameter counts of SPEC.md's shapes", test_parameter_counts},
        {"state-dict names and shapes", test_state_dict_names},
        {"unusable shapes are refused by key", test_bad_shapes},
        {"an image is independent of its batch", test_batch_independence},
        {"results do not depend on the thread count", test_thread_count_independence},
        {"a workspace laid out again for fewer images runs as a fresh one", test_workspace_resize},
        {NULL, NULL},
    };
    return sr_test_run("unet_model", tests);
}
