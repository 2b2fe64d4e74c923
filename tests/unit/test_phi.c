/* The phi stage against the engine: at sigma 0 (one draw) phi and every
 * block mean are abar of a direct forward pass; at sigma > 0 they are the
 * mean over draws of the documented noise (seed, image, draw, bits of
 * sigma), recomputed here from the formula. */
#define _GNU_SOURCE
#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/rng.h"
#include "io/checkpoint.h"
#include "stages/data.h"
#include "stages/stage.h"
#include "test_util.h"

static semrep_comm comm;
static char dir[] = "/tmp/semrep_test_phi_XXXXXX";
static char err[1024];

static float *read_var(const char *path, const char *name, size_t count)
{
    int ncid, var;
    CU_ASSERT_FATAL(nc_open(path, NC_NOWRITE, &ncid) == NC_NOERR);
    CU_ASSERT_FATAL(nc_inq_varid(ncid, name, &var) == NC_NOERR);
    float *v = malloc(sizeof(float) * count);
    CU_ASSERT_FATAL(nc_get_var_float(ncid, var, v) == NC_NOERR);
    nc_close(ncid);
    return v;
}

static void test_phi_against_engine(void)
{
    char out[300], ckpt[300], set_out[400], set_ckpt[400];
    snprintf(out, sizeof out, "%s/run", dir);
    snprintf(ckpt, sizeof ckpt, "%s/model.nc", dir);
    snprintf(set_out, sizeof set_out, "output_dir=\"%s\"", out);
    snprintf(set_ckpt, sizeof set_ckpt, "model.checkpoint=\"%s\"", ckpt);
    char *sets[] = {set_out, set_ckpt, "dataset.limit=20", "phi.sigmas=[0.0, 0.2]", "phi.draws=2", "phi.batch=16"};
    semrep_conf conf;
    CU_ASSERT_FATAL(sr_conf_load(&conf, SEMREP_FIXTURES "/../../conf/tiny-test.conf", 6, sets, err, sizeof err) == 0);
    sr_backend *be = sr_backend_cpu_new(1);
    sr_unet net;
    const sr_unet_shape shape = sr_conf_shape(&conf);
    CU_ASSERT_FATAL(sr_unet_plan(&net, &shape, err, sizeof err) == 0);
    sr_unet_alloc(&net, be);
    sr_unet_init_weights(&net, 5);
    sr_checkpoint_save(ckpt, &net, NULL, NULL);
    CU_ASSERT_FATAL(stage_phi(&conf, &comm) == 0);

    char path[400];
    snprintf(path, sizeof path, "%s/phi.nc", out);
    const int kmid = 16, units = net.block_offset[net.nblocks], n = 20;
    float *phi = read_var(path, "phi", (size_t)2 * n * kmid), *blocks = read_var(path, "block_mean", (size_t)2 * n * units);
    sr_dataset *ds;
    CU_ASSERT_FATAL(sr_data_open(&conf.dataset, out, &comm, &ds, err, sizeof err) == 0);
    float *x = malloc(sizeof(float) * 1024 * 32);
    long mismatches = 0;
    for (int s = 0; s < 2; s++) {
        const int draws = s == 0 ? 1 : 2;
        const float sigma = s == 0 ? 0.0f : 0.2f;
        for (int i0 = 0; i0 < n; i0 += 16) {
            const int b = n - i0 < 16 ? n - i0 : 16;
            CU_ASSERT_FATAL(sr_dataset_read(ds, i0, b, x, err, sizeof err) == 0);
            float *y = malloc(sizeof(float) * 1024 * (size_t)b * draws);
            for (int i = 0; i < b; i++)
                for (int k = 0; k < draws; k++) {
                    float *yk = y + ((size_t)i * draws + k) * 1024;
                    const sr_rng_stream st = {.seed = 1, .domain = SR_RNG_PHI_NOISE, .i0 = (uint32_t)(i0 + i),
                                              .i1 = (uint32_t)k, .i2 = sr_rng_float_bits(sigma)};
                    sr_rng_gaussian(&st, 0, 1024, yk);
                    for (int p = 0; p < 1024; p++) yk[p] = sigma == 0.0f ? x[i * 1024 + p] : x[i * 1024 + p] + sigma * yk[p];
                }
            sr_unet_work wk;
            sr_unet_work_init(&wk, &net, b * draws, 32, 32, false);
            sr_unet_put_images(&wk, y, sr_unet_input(&wk));
            sr_unet_forward(&net, &wk, SR_UPTO_OUTPUT);
            for (int blk = 0; blk < net.nblocks; blk++) {
                const int c0 = net.block_offset[blk], cj = net.block_offset[blk + 1] - c0;
                const float *m = wk.means + (size_t)b * draws * c0;
                for (int i = 0; i < b; i++)
                    for (int c = 0; c < cj; c++) {
                        double sum = 0;
                        for (int k = 0; k < draws; k++) sum += m[((size_t)i * draws + k) * cj + c];
                        const float want = (float)(sum / draws);
                        mismatches += blocks[((size_t)s * n + i0 + i) * units + c0 + c] != want;
                        if (blk == net.shape.levels) mismatches += phi[((size_t)s * n + i0 + i) * kmid + c] != want;
                    }
            }
            sr_unet_work_free(&wk);
            free(y);
        }
    }
    printf("\n    values differing from the engine's: %ld of %d", mismatches, 2 * n * (units + kmid));
    CU_ASSERT_EQUAL(mismatches, 0);
    free(x), free(phi), free(blocks);
    sr_dataset_close(ds);
    sr_unet_free(&net);
    sr_backend_free(be);
    sr_conf_free(&conf);
}

int main(int argc, char **argv)
{
    sr_comm_init(&comm, &argc, &argv);
    sr_test_temp_dir(dir);
    const sr_test tests[] = {
        {"phi and block means are the engine's abar, averaged over the documented noise", test_phi_against_engine},
        {NULL, NULL},
    };
    const int failed = sr_test_run("phi", tests);
    sr_test_remove_tree(dir);
    sr_comm_finalize(&comm);
    return failed;
}
