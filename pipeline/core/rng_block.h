/* One Philox4x32-10 block of a stream (core/rng.h) as four standard
 * normals: Box-Muller on its two pairs of words. The CPU's sr_rng_gaussian
 * and the CUDA backend's noise kernel both draw through this, and draw the
 * same bits: the log and the sine and cosine below use only +, -, *, / and
 * sqrt (each correctly rounded in IEEE single precision on both sides) in a
 * fixed order, built without fused multiply-adds (-ffp-contract=off for C,
 * --fmad=false for CUDA). libm's logf, sinf and cosf would round differently
 * on the GPU. This is noise version 2 (SR_RNG_NOISE_VERSION); version 1 used
 * logf, sinf and cosf. Accuracy against a double-precision Box-Muller on the
 * same words: tests/unit/test_rng.c and docs/formats.md. */
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

/* A word's top 24 bits as the odd number v in [1, 2^25) of the uniform
 * u = v 2^-25 in (0, 1): the value sr_rng_unit rounds to a float. */
static inline SR_HOST_DEVICE uint32_t sr_rng_odd(uint32_t word)
{
    return ((word >> 8) << 1) | 1u;
}

/* ln(v 2^-25), v odd in [1, 2^25): v = 2^e (1 + f) with 1 + f in
 * [sqrt(1/2), sqrt(2)) exactly in integers, then ln(1 + f) = 2 atanh(s),
 * s = f / (2 + f), in fdlibm's arrangement (log1pf), and (e - 25) ln 2 with
 * ln 2 split in two so that the first product is exact. */
static inline SR_HOST_DEVICE float sr_rng_log_odd(uint32_t v)
{
    int e = 0; /* floor(log2 v), by halving the bit range */
    for (int step = 16; step > 0; step >>= 1)
        if (v >> (e + step)) e += step;
    if ((uint64_t)v * v > (uint64_t)2 << (2 * e)) e++; /* v > sqrt(2) 2^e: 1 + f below 1 */
    const float f = (float)((int32_t)v - (int32_t)(1u << e)) / (float)(1u << e); /* exact: |numerator| < 2^24 */
    const float s = f / (2.0f + f), z = s * s, hfsq = 0.5f * f * f;
    const float r = z * (0.6666666666666666f + z * (0.4f + z * (0.2857142857142857f + z * (0.2222222222222222f +
                                                                                          z * 0.18181818181818182f))));
    const float k = (float)(e - 25);
    const float ln2_hi = 6.9313812256e-01f, ln2_lo = 9.0580006145e-06f; /* ln2_hi has 17 bits: k ln2_hi is exact */
    return k * ln2_hi - ((hfsq - (s * (hfsq + r) + k * ln2_lo)) - f);
}

/* sin and cos of 2 pi v 2^-25, v odd in [1, 2^25): the nearest quarter turn
 * q is taken off in integers, which leaves x = 2 pi r 2^-25 with r odd and
 * |x| <= pi / 4, where Taylor series to x^9 and x^10 are below float's
 * rounding; then sin and cos of q pi / 2 + x by swapping and negating. */
static inline SR_HOST_DEVICE void sr_rng_sincos_odd(uint32_t v, float *sine, float *cosine)
{
    const uint32_t quarters = (v + (1u << 22)) >> 23;                   /* 0 .. 4 */
    const int32_t r = (int32_t)v - (int32_t)(quarters << 23);           /* odd, |r| < 2^22 */
    const float x = (float)r * (6.283185307179586f / 33554432.0f), x2 = x * x; /* 2 pi / 2^25 */
    const float s = x + x * x2 * (-0.16666666666666666f + x2 * (0.008333333333333333f + x2 * (-1.984126984126984e-4f +
                                                                                         x2 * 2.7557319223985893e-6f)));
    const float c = (1.0f - 0.5f * x2) + x2 * x2 * (0.041666666666666664f + x2 * (-0.001388888888888889f +
                                                     x2 * (2.48015873015873e-5f + x2 * -2.755731922398589e-7f)));
    switch (quarters & 3u) {
    case 0: *sine = s, *cosine = c; break;
    case 1: *sine = c, *cosine = -s; break;
    case 2: *sine = -s, *cosine = -c; break;
    default: *sine = -c, *cosine = s; break;
    }
}

/* Elements 4 index .. 4 index + 3 of the stream's normals: words 0 and 2
 * give the radius sqrt(-2 ln u), words 1 and 3 the angle 2 pi u. */
static inline SR_HOST_DEVICE void sr_rng_gaussian_block(uint32_t seed, uint32_t domain, uint32_t i0, uint32_t i1,
                                                        uint32_t i2, uint32_t index, float z[4])
{
    const philox4x32_ctr_t r = sr_rng_block(seed, domain, i0, i1, i2, index);
    for (int pair = 0; pair < 2; pair++) {
        const float radius = sqrtf(-2.0f * sr_rng_log_odd(sr_rng_odd(r.v[2 * pair])));
        float sine, cosine;
        sr_rng_sincos_odd(sr_rng_odd(r.v[2 * pair + 1]), &sine, &cosine);
        z[2 * pair] = radius * cosine;
        z[2 * pair + 1] = radius * sine;
    }
}

#endif
