#define _GNU_SOURCE /* mkdtemp */
/* Checkpoints: write, read, use gives bit-identical outputs; a model made by
 * the PyTorch converter (tests/fixtures/make_converted_fixture.py) loads and
 * matches PyTorch's output; every kind of bad file is refused with one line
 * naming the file and the first thing wrong, leaving the model untouched. */
#include <math.h>
#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "test_util.h"

static const sr_backend *be;
static char dir[] = "/tmp/semrep_test_ckpt_XXXXXX";
static char err[1024];

static const sr_unet_shape tiny = {.in_channels = 3, .levels = 2, .kernels = {4, 6, 8}, .enc_convs = {2, 1},
                                   .mid_convs = 2, .dec_convs = {2, 2}, .norm = SR_NORM_LAYER,
                                   .output = SR_OUTPUT_RESIDUAL, .upsample_bias = {false, true}};

static void make_net(sr_unet *net, const sr_unet_shape *shape, uint32_t seed)
{
    CU_ASSERT_FATAL(sr_unet_plan(net, shape, err, sizeof err) == 0);
    sr_unet_alloc(net, be);
    sr_unet_init_weights(net, seed);
}

static void path_in_dir(char *out, size_t len, const char *name) { snprintf(out, len, "%s/%s", dir, name); }

static void forward(sr_unet *net, const float *x, int n, float *out)
{
    sr_unet_work wk;
    sr_unet_work_init(&wk, net, n, 8, 8, false);
    sr_unet_put_images(&wk, x, sr_unet_input(&wk));
    sr_unet_forward(net, &wk, SR_UPTO_OUTPUT);
    sr_unet_get_images(&wk, sr_unet_output(&wk), out);
    sr_unet_work_free(&wk);
}

static void test_write_read_use(void)
{
    sr_unet a, b;
    make_net(&a, &tiny, 1);
    make_net(&b, &tiny, 2);
    char path[256];
    path_in_dir(path, sizeof path, "model.nc");
    sr_checkpoint_save(path, &a, "seed = 1;", "test");
    CU_ASSERT_FATAL(sr_checkpoint_load(path, &b, err, sizeof err) == 0);
    CU_ASSERT(!memcmp(a.param, b.param, a.param_floats * sizeof(float)));
    float x[2 * 3 * 64], ya[2 * 3 * 64], yb[2 * 3 * 64];
    sr_test_uniform(80, 0, 1, sizeof x / sizeof *x, x);
    forward(&a, x, 2, ya);
    forward(&b, x, 2, yb);
    CU_ASSERT(!memcmp(ya, yb, sizeof ya));
    sr_checkpoint_info info;
    CU_ASSERT_FATAL(sr_checkpoint_read_info(path, &info, err, sizeof err) == 0);
    CU_ASSERT_EQUAL(info.parameters, (long long)a.trainable_count);
    CU_ASSERT_EQUAL(info.shape.levels, 2);
    CU_ASSERT_TRUE(info.shape.upsample_bias[1]);
    CU_ASSERT_EQUAL(info.shape.output, SR_OUTPUT_RESIDUAL);
    char sum[17];
    sr_checkpoint_checksum(&a, a.param, sum);
    CU_ASSERT_STRING_EQUAL(info.checksum, sum);
    sr_unet_free(&a);
    sr_unet_free(&b);
}

static void test_converted_pytorch_model(void)
{
    sr_unet net;
    CU_ASSERT_FATAL(sr_unet_plan(&net, &tiny, err, sizeof err) == 0);
    sr_unet_alloc(&net, be);
    const int rc = sr_checkpoint_load(SEMREP_FIXTURES "/converted_tiny.nc", &net, err, sizeof err);
    if (rc) printf("\n    %s", err);
    CU_ASSERT_FATAL(rc == 0);
    sr_fixture *fx = sr_fixture_load("converted_tiny.bin");
    const sr_record *in = sr_fixture_get(fx, "input"), *ref = sr_fixture_get(fx, "output");
    float *out = malloc(sizeof(float) * ref->count);
    forward(&net, in->data, in->dims[0], out);
    const double d = sr_max_rel_diff(out, ref->data, ref->count);
    printf("\n    converted PyTorch model vs PyTorch: max rel diff %.2e", d);
    CU_ASSERT(d < 2e-5);
    free(out);
    sr_fixture_free(fx);
    sr_unet_free(&net);
}

/* Loading fails, the message names `want` (and `also`), net is untouched. */
static void expect_refused(const char *path, const sr_unet_shape *shape, const char *want, const char *also)
{
    sr_unet net;
    make_net(&net, shape, 9);
    float *before = malloc(net.param_floats * sizeof(float));
    memcpy(before, net.param, net.param_floats * sizeof(float));
    err[0] = '\0';
    CU_ASSERT_EQUAL(sr_checkpoint_load(path, &net, err, sizeof err), -1);
    const int named = strstr(err, want) && (!also || strstr(err, also));
    printf("\n    %s", err);
    CU_ASSERT(named);
    CU_ASSERT_PTR_NULL(strchr(err, '\n'));
    CU_ASSERT(!memcmp(before, net.param, net.param_floats * sizeof(float)));
    free(before);
    sr_unet_free(&net);
}

static void copy_prefix(const char *from, const char *to, double share)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    CU_ASSERT_FATAL(in && out);
    fseek(in, 0, SEEK_END);
    const long size = ftell(in), keep = (long)(size * share);
    fseek(in, 0, SEEK_SET);
    char *buf = malloc((size_t)size);
    CU_ASSERT_FATAL(fread(buf, 1, (size_t)size, in) == (size_t)size);
    fwrite(buf, 1, (size_t)keep, out);
    free(buf);
    fclose(in);
    fclose(out);
}

static void test_bad_files(void)
{
    char good[256], path[256];
    sr_unet net;
    make_net(&net, &tiny, 3);
    path_in_dir(good, sizeof good, "good.nc");
    sr_checkpoint_save(good, &net, NULL, NULL);

    path_in_dir(path, sizeof path, "absent.nc");
    expect_refused(path, &tiny, "no readable checkpoint at", "absent.nc");

    path_in_dir(path, sizeof path, "text.nc");
    FILE *f = fopen(path, "w");
    fputs("model = { kernels = [1, 2]; };\n", f);
    fclose(f);
    expect_refused(path, &tiny, "cannot open the checkpoint", "text.nc");

    path_in_dir(path, sizeof path, "truncated.nc");
    copy_prefix(good, path, 0.5);
    expect_refused(path, &tiny, "truncated.nc", NULL);

    sr_unet_shape wider = tiny;
    wider.kernels[2] = 16;
    expect_refused(good, &wider, "has kernels = [4, 6, 8] but the conf's model.kernels is [4, 6, 16]", NULL);
    sr_unet_shape batch = tiny;
    batch.norm = SR_NORM_BATCH;
    expect_refused(good, &batch, "has norm \"layer\"", NULL);
    sr_unet_shape clean = tiny;
    clean.output = SR_OUTPUT_CLEAN;
    expect_refused(good, &clean, "has output \"residual\"", NULL);

    const sr_param *p = sr_unet_param(&net, "mid.3.weight");
    net.param[p->offset + 5] = NAN;
    path_in_dir(path, sizeof path, "nan.nc");
    sr_checkpoint_save(path, &net, NULL, NULL);
    expect_refused(path, &tiny, "variable mid.3.weight holds NaN at index 5", NULL);
    net.param[p->offset + 5] = INFINITY;
    path_in_dir(path, sizeof path, "inf.nc");
    sr_checkpoint_save(path, &net, NULL, NULL);
    expect_refused(path, &tiny, "variable mid.3.weight holds Inf at index 5", NULL);
    net.param[p->offset + 5] = 0.0f;

    /* Edited behind the format's back: a renamed variable, a changed value. */
    int ncid, varid;
    path_in_dir(path, sizeof path, "renamed.nc");
    copy_prefix(good, path, 1.0);
    CU_ASSERT_FATAL(nc_open(path, NC_WRITE, &ncid) == NC_NOERR);
    CU_ASSERT_FATAL(nc_inq_varid(ncid, "decoder.1.4.gammas", &varid) == NC_NOERR);
    CU_ASSERT_FATAL(nc_rename_var(ncid, varid, "decoder.1.5.gammas") == NC_NOERR);
    nc_close(ncid);
    expect_refused(path, &tiny, "holds a variable decoder.1.5.gammas that the conf's model shape has no place for", NULL);

    path_in_dir(path, sizeof path, "edited.nc");
    copy_prefix(good, path, 1.0);
    CU_ASSERT_FATAL(nc_open(path, NC_WRITE, &ncid) == NC_NOERR);
    CU_ASSERT_FATAL(nc_inq_varid(ncid, "encoder.1.0.bias", &varid) == NC_NOERR);
    const size_t at[1] = {2};
    const float value = 0.125f;
    CU_ASSERT_FATAL(nc_put_var1_float(ncid, varid, at, &value) == NC_NOERR);
    nc_close(ncid);
    expect_refused(path, &tiny, "edited.nc: its values give checksum", "the file is damaged");
    sr_unet_free(&net);
}

int main(void)
{
    be = sr_backend_cpu_new(0);
    sr_test_temp_dir(dir);
    const sr_test tests[] = {
        {"write, read, use: bit-identical", test_write_read_use},
        {"a PyTorch model through the converter matches PyTorch", test_converted_pytorch_model},
        {"bad checkpoints are refused by name", test_bad_files},
        {NULL, NULL},
    };
    const int failed = sr_test_run("checkpoint", tests);
    sr_test_remove_tree(dir);
    return failed;
}
