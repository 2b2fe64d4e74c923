#include "stages/phi_compute.h"

#include <string.h>

#include "core/rng.h"

void sr_phi_compute(const sr_unet *net, sr_unet_work *wk, uint32_t seed, const long *keys, const float *clean, int b,
                    float sigma, int draws, float *noisy, float *means, float *mid, float *units)
{
    const size_t per_image = (size_t)net->shape.in_channels * wk->h * wk->w;
    const int n = sigma == 0.0f ? 1 : draws, mid_block = net->shape.levels;
    for (int i = 0; i < b; i++) {
        const float *x = clean + (size_t)i * per_image;
        for (int k = 0; k < n; k++) {
            float *y = noisy + ((size_t)i * n + k) * per_image;
            if (sigma == 0.0f) {
                memcpy(y, x, sizeof(float) * per_image);
                continue;
            }
            const sr_rng_stream st = {.seed = seed, .domain = SR_RNG_PHI_NOISE, .i0 = (uint32_t)keys[i],
                                      .i1 = (uint32_t)k, .i2 = sr_rng_float_bits(sigma)};
            sr_rng_add_gaussian(&st, x, sigma, per_image, y);
        }
    }
    sr_unet_put_images(wk, noisy, sr_unet_input(wk));
    sr_unet_forward(net, wk, units ? SR_UPTO_OUTPUT : SR_UPTO_MID);
    net->be->to_host(means, wk->means, sizeof(float) * sr_unet_means_count(wk));
    /* mean over draws, in draw order */
    const int kmid = net->block_offset[mid_block + 1] - net->block_offset[mid_block], total = net->block_offset[net->nblocks];
    for (int j = 0; j < net->nblocks; j++) {
        if (!units && j != mid_block) continue;
        const int cj = net->block_offset[j + 1] - net->block_offset[j];
        const float *m = means + (size_t)b * n * net->block_offset[j];
        for (int i = 0; i < b; i++)
            for (int ch = 0; ch < cj; ch++) {
                double sum = 0.0;
                for (int k = 0; k < n; k++) sum += m[((size_t)i * n + k) * cj + ch];
                const float v = (float)(sum / n);
                if (j == mid_block) mid[(size_t)i * kmid + ch] = v;
                if (units) units[(size_t)i * total + net->block_offset[j] + ch] = v;
            }
    }
}
