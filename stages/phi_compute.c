#include "stages/phi_compute.h"

#include "core/rng.h"

void sr_phi_compute(const sr_unet *net, sr_unet_work *wk, uint32_t seed, const uint32_t *keys, const float *clean,
                    int b, float sigma, int draws, float *means, float *mid, float *units)
{
    const size_t per_image = (size_t)net->shape.in_channels * wk->h * wk->w;
    const int n = sigma == 0.0f ? 1 : draws, mid_block = net->shape.levels;
    /* the clean images through the staging buffer; the noise drawn where the engine runs */
    sr_be_to_device(net->be, wk->staging, clean, sizeof(float) * per_image * (size_t)b);
    sr_be_noisy_copies(net->be, wk->staging, b, n, net->shape.in_channels, wk->h * wk->w, sigma, seed, SR_RNG_PHI_NOISE, keys,
                          sr_unet_input(wk));
    sr_unet_forward(net, wk, units ? SR_UPTO_OUTPUT : SR_UPTO_MID);
    sr_be_to_host(net->be, means, wk->means, sizeof(float) * sr_unet_means_count(wk));
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
