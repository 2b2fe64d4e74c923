/* The UNet against PyTorch: tests/fixtures/make_unet_fixture.py builds two
 * tiny UNets from SPEC.md with torch.nn, evaluates them in float64 and dumps
 * weights, inputs, outputs, every block mean, the input gradient of a loss of
 * abar_mid and the parameter gradients of the training loss. Here the engine
 * loads the same weights by their state-dict keys and must agree tensor by
 * tensor. The largest difference, relative to the tensor's scale, is printed. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/unet.h"
#include "test_util.h"

#define TOL 2e-5

static const sr_backend *be;

static void check(const char *what, const float *got, const sr_record *ref)
{
    CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
    const double d = sr_max_rel_diff(got, ref->data, ref->count);
    printf("\n    %-26s max rel diff %.2e", what, d);
    CU_ASSERT(d < TOL);
}

static void run_fixture(const char *file, const sr_unet_shape *shape)
{
    sr_fixture *fx = sr_fixture_load(file);
    sr_unet net;
    char err[256];
    CU_ASSERT_FATAL(sr_unet_plan(&net, shape, err, sizeof err) == 0);
    sr_unet_alloc(&net, be);

    /* Every parameter of the engine is in the fixture with PyTorch's shape,
     * and every parameter of the fixture is in the engine. */
    int fixture_params = 0;
    for (int r = 0; r < fx->count; r++) {
        const char *name = fx->records[r].name;
        fixture_params += strncmp(name, "grad.", 5) &&
                          (strstr(name, "coder.") || strstr(name, "mid.") || strstr(name, "upsample."));
    }
    CU_ASSERT_EQUAL(fixture_params, net.nparams);
    for (int i = 0; i < net.nparams; i++) {
        const sr_param *p = &net.params[i];
        const sr_record *rec = sr_fixture_get(fx, p->name);
        if (!rec) printf("\n    missing in fixture: %s", p->name);
        CU_ASSERT_PTR_NOT_NULL_FATAL(rec);
        CU_ASSERT_EQUAL_FATAL(rec->ndim, p->ndim);
        for (int d = 0; d < p->ndim; d++) CU_ASSERT_EQUAL_FATAL(rec->dims[d], p->dims[d]);
        sr_be_to_device(be, net.param + p->offset, rec->data, sizeof(float) * p->count);
    }

    const sr_record *in = sr_fixture_get(fx, "input");
    const int n = in->dims[0], h = in->dims[2], w = in->dims[3];
    const size_t images = in->count;
    sr_unet_work wk;
    sr_unet_work_init(&wk, &net, n, h, w, true);
    float *host = malloc(sizeof(float) * images);
    const size_t nmeans = sr_unet_means_count(&wk);
    float *all_means = malloc(sizeof(float) * nmeans), *means = malloc(sizeof(float) * nmeans);

    /* Forward: the output and every block mean. */
    sr_unet_put_images(&wk, in->data, sr_unet_input(&wk));
    sr_unet_forward(&net, &wk, SR_UPTO_OUTPUT);
    sr_unet_get_images(&wk, sr_unet_output(&wk), host);
    check("output D(y)", host, sr_fixture_get(fx, "output"));
    sr_be_to_host(be, all_means, wk.means, sizeof(float) * nmeans);
    for (int b = 0; b < net.nblocks; b++) {
        char name[32];
        snprintf(name, sizeof name, "mean.%d", b);
        check(name, all_means + (size_t)n * net.block_offset[b], sr_fixture_get(fx, name));
    }

    /* The encoder + middle path alone gives the same block means. */
    sr_unet_forward(&net, &wk, SR_UPTO_MID);
    sr_be_to_host(be, means, wk.means, sizeof(float) * nmeans);
    const size_t upto_mid = (size_t)n * net.block_offset[net.shape.levels + 1];
    CU_ASSERT(memcmp(all_means, means, sizeof(float) * upto_mid) == 0);

    /* Input gradient of L = 0.5 sum (abar_mid - target)^2. */
    const sr_record *target = sr_fixture_get(fx, "target");
    const size_t mid = (size_t)n * net.block_offset[net.shape.levels];
    memset(means, 0, sizeof(float) * nmeans);
    for (size_t i = 0; i < target->count; i++) means[mid + i] = all_means[mid + i] - target->data[i];
    sr_be_to_device(be, wk.d_means, means, sizeof(float) * nmeans);
    sr_unet_backward(&net, &wk, SR_UPTO_MID, NULL, wk.d_means, NULL, true);
    sr_unet_get_images(&wk, sr_unet_input_grad(&wk), host);
    check("input gradient of L(mid)", host, sr_fixture_get(fx, "input_grad"));

    /* Parameter gradients of sum (D(y) - x)^2 / n. */
    const sr_record *clean = sr_fixture_get(fx, "clean");
    float *grad_dev = sr_be_alloc(be, net.param_floats * sizeof(float)), *grad = malloc(net.param_floats * sizeof(float));
    CU_ASSERT_PTR_NOT_NULL_FATAL(grad_dev);
    sr_be_zero(be, grad_dev, net.param_floats * sizeof(float));
    sr_unet_forward(&net, &wk, SR_UPTO_OUTPUT);
    sr_unet_get_images(&wk, sr_unet_output(&wk), host);
    double loss = 0.0;
    for (size_t i = 0; i < images; i++) {
        loss += ((double)host[i] - clean->data[i]) * (host[i] - clean->data[i]);
        host[i] = 2.0f * (host[i] - clean->data[i]) / n;
    }
    loss /= n;
    const double ref_loss = sr_fixture_get(fx, "loss_train")->data[0];
    printf("\n    training loss %.6f (PyTorch %.6f)", loss, ref_loss);
    CU_ASSERT(fabs(loss - ref_loss) < TOL * ref_loss);
    sr_unet_put_images(&wk, host, wk.d_output);
    sr_unet_backward(&net, &wk, SR_UPTO_OUTPUT, wk.d_output, NULL, grad_dev, false);
    sr_be_to_host(be, grad, grad_dev, net.param_floats * sizeof(float));
    double worst = 0.0;
    for (int i = 0; i < net.nparams; i++) {
        const sr_param *p = &net.params[i];
        if (!p->trainable) continue;
        char name[64];
        snprintf(name, sizeof name, "grad.%s", p->name);
        const sr_record *ref = sr_fixture_get(fx, name);
        CU_ASSERT_PTR_NOT_NULL_FATAL(ref);
        const double d = sr_max_rel_diff(grad + p->offset, ref->data, ref->count);
        if (d > worst) worst = d;
        if (d >= TOL) printf("\n    %s: max rel diff %.2e", name, d);
        CU_ASSERT(d < TOL);
    }
    printf("\n    parameter gradients        max rel diff %.2e (worst tensor)", worst);

    sr_be_release(be, grad_dev);
    free(grad), free(means), free(all_means), free(host);
    sr_unet_work_free(&wk);
    sr_unet_free(&net);
    sr_fixture_free(fx);
}

static void test_layer_norm_clean(void)
{
    const sr_unet_shape shape = {.in_channels = 2, .levels = 2, .kernels = {4, 6, 8},
                                 .enc_convs = {2, 1}, .mid_convs = 2, .dec_convs = {2, 2},
                                 .norm = SR_NORM_LAYER, .output = SR_OUTPUT_CLEAN};
    run_fixture("unet_tiny_layer.bin", &shape);
}

static void test_batch_norm_residual(void)
{
    const sr_unet_shape shape = {.in_channels = 1, .levels = 2, .kernels = {3, 5, 7},
                                 .enc_convs = {1, 2}, .mid_convs = 2, .dec_convs = {1, 2},
                                 .norm = SR_NORM_BATCH, .output = SR_OUTPUT_RESIDUAL,
                                 .upsample_bias = {false, true}};
    run_fixture("unet_tiny_batch.bin", &shape);
}

int main(void)
{
    be = sr_test_backend();
    const sr_test tests[] = {
        {"layer norm, clean output, vs PyTorch", test_layer_norm_clean},
        {"batch norm (running sd), residual output, upsample bias, vs PyTorch", test_batch_norm_residual},
        {NULL, NULL},
    };
    return sr_test_run("unet_fixture", tests);
}
