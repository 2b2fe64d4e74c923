#include "stages/heldout.h"

#include <stdlib.h>

#include "comm/shard.h"
#include "core/check.h"
#include "core/rng.h"
#include "stages/train.h"

double sr_heldout_loss(const semrep_conf *conf, const sr_unet *net, sr_unet_work *wk, sr_dataset *ds, long count,
                       const semrep_comm *comm)
{
    const int batch = wk->capacity;
    const size_t per_image = (size_t)ds->channels * ds->size * ds->size;
    float *clean = SR_MALLOC(sizeof(float) * per_image * (size_t)batch, "a held-out batch");
    float *noisy = SR_MALLOC(sizeof(float) * per_image * (size_t)batch, "a held-out batch");
    float *denoised = SR_MALLOC(sizeof(float) * per_image * (size_t)batch, "a held-out batch");
    char err[1024];
    double sum = 0.0;
    long first, end;
    sr_shard(count, batch, comm->rank, comm->size, &first, &end);
    for (long b0 = first; b0 < end; b0 += batch) {
        const long n = end - b0 < batch ? end - b0 : batch;
        if (sr_dataset_read(ds, b0, n, clean, err, sizeof err)) SR_FAIL("%s", err);
        for (long k = 0; k < n; k++) {
            const long image = sr_dataset_origin(ds, b0 + k);
            sr_rng_stream st = {.seed = (uint32_t)conf->seed, .domain = SR_RNG_EVAL_NOISE, .i0 = (uint32_t)image,
                                .i1 = 1};
            float u;
            sr_rng_uniform(&st, 0, 1, &u);
            const float sigma = sr_train_sigma(conf, u);
            st.i1 = 2;
            sr_rng_add_gaussian(&st, clean + (size_t)k * per_image, sigma, per_image, noisy + (size_t)k * per_image);
        }
        sr_unet_work_resize(wk, (int)n);
        sr_unet_denoise(net, wk, noisy, denoised);
        for (size_t p = 0; p < (size_t)n * per_image; p++)
            sum += ((double)denoised[p] - clean[p]) * ((double)denoised[p] - clean[p]);
    }
    sr_unet_work_resize(wk, batch);
    free(clean), free(noisy), free(denoised);
    sr_comm_sum(comm, &sum, 1);
    return count ? sum / (double)count : 0.0;
}
