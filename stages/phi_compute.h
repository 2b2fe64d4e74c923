/* phi of a batch of images at one sigma (SPEC.md section 3), shared by the
 * phi stage and the reconstruction's targets: for image i, the mean over
 * `draws` noisy copies x_i + sigma z of its block means, z a pure function
 * of (seed, key_i, draw, bits of sigma). At sigma 0 there is one copy and
 * no noise. All copies of all images go through the engine as one batch. */
#ifndef SEMREP_STAGES_PHI_COMPUTE_H
#define SEMREP_STAGES_PHI_COMPUTE_H

#include <stdint.h>

#include "nn/unet.h"

/* wk holds b * draws images (b at sigma 0); means has room for
 * sr_unet_means_count(wk) floats. clean: b host NCHW images. Writes mid (b x
 * the middle block's channels) and, when units is not NULL, every block's
 * means (b x all blocks' channels; runs the decoder). keys[i]: the image's
 * noise key. The noisy copies are made by the backend (noisy_copies). */
void sr_phi_compute(const sr_unet *net, sr_unet_work *wk, uint32_t seed, const uint32_t *keys, const float *clean,
                    int b, float sigma, int draws, float *means, float *mid, float *units);

#endif
