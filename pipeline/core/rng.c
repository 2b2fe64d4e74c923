#include "core/rng.h"

#include <math.h>
#include <string.h>

#include <Random123/philox.h>

#include "core/check.h"

uint32_t sr_rng_float_bits(float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return bits;
}

static philox4x32_ctr_t block(const sr_rng_stream *s, uint64_t index)
{
    SR_CHECK(index <= UINT32_MAX, "random stream element %llu is beyond 2^34; split the request",
             (unsigned long long)index * 4);
    philox4x32_ctr_t ctr = {{(uint32_t)index, s->i0, s->i1, s->i2}};
    philox4x32_key_t key = {{s->seed, s->domain}};
    return philox4x32(ctr, key);
}

/* A 32-bit word to the open interval (0, 1): the top 24 bits, centred. */
static inline float to_unit(uint32_t word)
{
    return ((float)(word >> 8) + 0.5f) * (1.0f / 16777216.0f);
}

void sr_rng_words(const sr_rng_stream *s, uint64_t first, size_t count, uint32_t *out)
{
    for (size_t j = 0; j < count;) {
        const uint64_t e = first + j;
        const philox4x32_ctr_t r = block(s, e / 4);
        for (unsigned w = (unsigned)(e % 4); w < 4 && j < count; w++, j++) out[j] = r.v[w];
    }
}

void sr_rng_uniform(const sr_rng_stream *s, uint64_t first, size_t count, float *out)
{
    for (size_t j = 0; j < count;) {
        const uint64_t e = first + j;
        const philox4x32_ctr_t r = block(s, e / 4);
        for (unsigned w = (unsigned)(e % 4); w < 4 && j < count; w++, j++) out[j] = to_unit(r.v[w]);
    }
}

void sr_rng_gaussian(const sr_rng_stream *s, uint64_t first, size_t count, float *out)
{
    const float two_pi = 6.283185307179586f;
    for (size_t j = 0; j < count;) {
        const uint64_t e = first + j;
        const philox4x32_ctr_t r = block(s, e / 4);
        float z[4];
        for (int pair = 0; pair < 2; pair++) {
            const float radius = sqrtf(-2.0f * logf(to_unit(r.v[2 * pair])));
            const float angle = two_pi * to_unit(r.v[2 * pair + 1]);
            z[2 * pair] = radius * cosf(angle);
            z[2 * pair + 1] = radius * sinf(angle);
        }
        for (unsigned w = (unsigned)(e % 4); w < 4 && j < count; w++, j++) out[j] = z[w];
    }
}

void sr_rng_add_gaussian(const sr_rng_stream *s, const float *x, float sigma, size_t count, float *y)
{
    sr_rng_gaussian(s, 0, count, y);
    for (size_t j = 0; j < count; j++) y[j] = x[j] + sigma * y[j];
}
