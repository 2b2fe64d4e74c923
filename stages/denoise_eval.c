/* Stage denoise-eval (SPEC.md section 2): the standard check of a blind
 * denoiser. On the held-out images of `dataset`, for sigma in {5, 10, 25,
 * 50, 100, 200} of 255: PSNR of the noisy input and of D(noisy), averaged
 * over images (PSNR = 10 log10(1 / mean squared error), pixels in [0, 1]).
 * The noise of image i at sigma s is a pure function of (seed, i, bits of
 * s); images are shared among ranks in micro-batches. Writes denoise.nc and
 * prints the table. */
#include <math.h>
#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/shard.h"
#include "core/check.h"
#include "core/rng.h"
#include "io/nc.h"
#include "io/outdir.h"
#include "stages/data.h"
#include "stages/heldout.h"
#include "stages/model.h"
#include "stages/stage.h"

#define NSIGMA 6
static const double sigmas_255[NSIGMA] = {5, 10, 25, 50, 100, 200};

static double psnr(const float *a, const float *b, size_t n)
{
    double se = 0.0;
    for (size_t i = 0; i < n; i++) se += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    return se > 0.0 ? 10.0 * log10((double)n / se) : 99.0;
}

/* denoise.nc's variables (docs/formats.md), all along sigma. */
enum { V_SIGMA, V_INPUT, V_OUTPUT, V_OUTPUT_SD, NVARS };
static const sr_nc_var denoise_vars[NVARS] = {
    {"sigma", NC_DOUBLE, "sigma", "pixel units: 1.0 is 255 of 255", "the noise level"},
    {"input_psnr", NC_DOUBLE, "sigma", "dB", "PSNR of the noisy input: mean over images of 10 log10(1 / MSE)"},
    {"output_psnr", NC_DOUBLE, "sigma", "dB", "PSNR of the denoised image: mean over images of 10 log10(1 / MSE)"},
    {"output_psnr_sd", NC_DOUBLE, "sigma", "dB", "standard deviation over images of the output PSNR"},
};

/* The sums one rank adds: per sigma, of input PSNR, of output PSNR and of its square. */
typedef struct {
    double psnr[3 * NSIGMA];
} sums;

static void write_results(const semrep_conf *conf, const char *path, const double *cols[NVARS - 1], long images,
                          const char *checksum, double heldout)
{
    char tmp[4200];
    sr_tmp_path(path, tmp, sizeof tmp);
    int ncid, dim, var[NVARS], version = SR_DENOISE_FORMAT_VERSION;
    SR_NC(nc_create(tmp, NC_NETCDF4 | NC_CLOBBER, &ncid), tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "format", "semrep-denoise", tmp);
    sr_nc_put_ints(ncid, NC_GLOBAL, "format_version", &version, 1, tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "Conventions", "CF-1.8", tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "checkpoint_checksum", checksum, tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "conf", conf->text, tmp);
    const long long count = images;
    SR_NC(nc_put_att_longlong(ncid, NC_GLOBAL, "images", NC_INT64, 1, &count), tmp);
    SR_NC(nc_put_att_double(ncid, NC_GLOBAL, "heldout_loss", NC_DOUBLE, 1, &heldout), tmp);
    SR_NC(nc_def_dim(ncid, "sigma", NSIGMA, &dim), tmp);
    sr_nc_define_vars(ncid, denoise_vars, NVARS, "", var, tmp);
    SR_NC(nc_enddef(ncid), tmp);
    double sig[NSIGMA];
    for (int s = 0; s < NSIGMA; s++) sig[s] = sigmas_255[s] / 255.0;
    SR_NC(nc_put_var_double(ncid, var[V_SIGMA], sig), tmp);
    for (int v = V_INPUT; v < NVARS; v++) SR_NC(nc_put_var_double(ncid, var[v], cols[v - 1]), tmp);
    SR_NC(nc_close(ncid), tmp);
    sr_outdir_commit(tmp, conf->output_dir, "denoise.nc");
}

/* Images [b0, b0 + n) of the data set, read into clean: their PSNRs at every sigma. */
static void evaluate(const semrep_conf *conf, sr_dataset *ds, const sr_unet *net, sr_unet_work *wk, long b0, long n,
                     float *clean, float *noisy, float *denoised, sums *t)
{
    const size_t per_image = (size_t)ds->channels * ds->size * ds->size;
    for (int s = 0; s < NSIGMA; s++) {
        const float sigma = (float)(sigmas_255[s] / 255.0);
        memset(noisy, 0, sizeof(float) * per_image * (size_t)wk->n); /* unused tail images: zeros */
        for (long k = 0; k < n; k++) {
            const long image = sr_dataset_origin(ds, b0 + k);
            const sr_rng_stream st = {.seed = (uint32_t)conf->seed, .domain = SR_RNG_EVAL_NOISE,
                                      .i0 = (uint32_t)image, .i2 = sr_rng_float_bits(sigma)};
            sr_rng_add_gaussian(&st, clean + (size_t)k * per_image, sigma, per_image, noisy + (size_t)k * per_image);
        }
        sr_unet_denoise(net, wk, noisy, denoised);
        for (long k = 0; k < n; k++) {
            const size_t at = (size_t)k * per_image;
            const double out = psnr(denoised + at, clean + at, per_image);
            t->psnr[s] += psnr(noisy + at, clean + at, per_image);
            t->psnr[NSIGMA + s] += out;
            t->psnr[2 * NSIGMA + s] += out * out;
        }
    }
}

/* Rank 0: denoise.nc and the table. */
static void results(const semrep_conf *conf, const sr_dataset *ds, const sr_unet *net, const sums *t, double heldout)
{
    double in[NSIGMA], out[NSIGMA], sd[NSIGMA];
    const double count = (double)ds->count;
    for (int s = 0; s < NSIGMA; s++) {
        in[s] = t->psnr[s] / count;
        out[s] = t->psnr[NSIGMA + s] / count;
        sd[s] = sqrt(fmax(t->psnr[2 * NSIGMA + s] / count - out[s] * out[s], 0.0));
    }
    char path[SR_PATH_MAX + 32], sum[17];
    sr_model_checksum(net, sum);
    snprintf(path, sizeof path, "%s/denoise.nc", conf->output_dir);
    write_results(conf, path, (const double *[]){in, out, sd}, ds->count, sum, heldout);
    printf("denoise-eval: %ld held-out images, %s\n", ds->count, ds->description);
    printf("  %10s %12s %12s %10s\n", "sigma/255", "input dB", "output dB", "sd dB");
    for (int s = 0; s < NSIGMA; s++)
        printf("  %10.0f %12.2f %12.2f %10.2f%s\n", sigmas_255[s], in[s], out[s], sd[s],
               sigmas_255[s] / 255.0 > conf->train.sigma_max ? "  (above the training range: extrapolation)" : "");
    printf("  held-out loss at the training sigmas: %.4f (sum over pixels of (D(y) - x)^2, mean over images)\n", heldout);
    printf("  written to %s\n", path);
}

int stage_denoise_eval(const semrep_conf *conf, semrep_comm *comm)
{
    char err[1024] = "";
    if (sr_outputs_ours(conf, comm, (const char *[]){"denoise.nc"}, 1)) return 1;
    const sr_backend *be = sr_stage_backend(conf, comm, 0, err, sizeof err);
    const int batch = conf->phi.batch;
    sr_unet net = {0};
    sr_dataset *ds = NULL;
    int rc = !be || sr_output_ready(conf->output_dir, err, sizeof err) ||
             sr_model_open(conf, be, batch, false, &net, err, sizeof err);
    if (sr_comm_any(comm, rc)) {
        if (net.params) sr_unet_free(&net);
        return sr_comm_error(comm, 1, "%s", err[0] ? err : "denoise-eval: another rank could not start");
    }
    if (sr_data_open(&conf->dataset, conf->output_dir, comm, &ds, err, sizeof err)) {
        sr_unet_free(&net);
        return sr_comm_error(comm, 1, "%s", err);
    }
    const int size = ds->size;
    const size_t per_image = (size_t)ds->channels * size * size;
    sr_unet_work wk;
    sr_unet_work_init(&wk, &net, batch, size, size, false);
    float *clean = SR_MALLOC(sizeof(float) * per_image * (size_t)batch, "a batch");
    float *noisy = SR_MALLOC(sizeof(float) * per_image * (size_t)batch, "a batch");
    float *denoised = SR_MALLOC(sizeof(float) * per_image * (size_t)batch, "a batch");
    sums t = {{0}};
    long first, end;
    sr_shard(ds->count, batch, comm->rank, comm->size, &first, &end);
    for (long b0 = first; b0 < end; b0 += batch) {
        const long n = end - b0 < batch ? end - b0 : batch;
        if (sr_dataset_read(ds, b0, n, clean, err, sizeof err)) SR_FAIL("%s", err);
        evaluate(conf, ds, &net, &wk, b0, n, clean, noisy, denoised, &t);
    }
    sr_comm_sum(comm, t.psnr, 3 * NSIGMA);
    const double heldout = sr_heldout_loss(conf, &net, &wk, ds, ds->count, comm);
    if (comm->rank == 0) results(conf, ds, &net, &t, heldout);
    free(clean);
    free(noisy);
    free(denoised);
    sr_unet_work_free(&wk);
    sr_unet_free(&net);
    sr_dataset_close(ds);
    return 0;
}
