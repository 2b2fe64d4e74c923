/* One Philox4x32-10 block of a stream (core/rng.h) as four standard
 * normals: Box-Muller on its two pairs of words. The CPU's sr_rng_gaussian
 * and the CUDA backend's noise kernel both draw through this, so they use
 * the same generator, keys and arithmetic (CUDA's logf, sinf and cosf round
 * differently from glibc's in the last bits: docs/formats.md). */
#ifndef SEMREP_CORE_RNG_BLOCK_H
#define SEMREP_CORE_RNG_BLOCK_H

#include <math.h>
#include <stdint.h>

#include <Random123/philox.h>

#include "core/host_device.h"

/* A 32-bit word to the open interval (0, 1): the top 24 bits, centred. */
static inline SR_HOST_DEVICE float sr_rng_unit(uint32_t word)
{
    return ((float)(word >> 8) + 0.5f) * (1.0f / 16777216.0f);
}

/* The raw words of block `index` of stream (seed, domain; i0, i1, i2). */
static inline SR_HOST_DEVICE philox4x32_ctr_t sr_rng_block(uint32_t seed, uint32_t domain, uint32_t i0, uint32_t i1,
                                                           uint32_t i2, uint32_t index)
{
    const philox4x32_ctr_t ctr = {{index, i0, i1, i2}};
    const philox4x32_key_t key = {{seed, domain}};
    return philox4x32(ctr, key);
}

/* Elements 4 index .. 4 index + 3 of the stream's normals. */
static inline SR_HOST_DEVICE void sr_rng_gaussian_block(uint32_t seed, uint32_t domain, uint32_t i0, uint32_t i1,
                                                        uint32_t i2, uint32_t index, float z[4])
{
    const float two_pi = 6.283185307179586f;
    const philox4x32_ctr_t r = sr_rng_block(seed, domain, i0, i1, i2, index);
    for (int pair = 0; pair < 2; pair++) {
        const float radius = sqrtf(-2.0f * logf(sr_rng_unit(r.v[2 * pair])));
        const float angle = two_pi * sr_rng_unit(r.v[2 * pair + 1]);
        z[2 * pair] = radius * cosf(angle);
        z[2 * pair + 1] = radius * sinf(angle);
    }
}

#endif
