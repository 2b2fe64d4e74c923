#include "core/rng.h"

#include <math.h>
#include <string.h>

#include "core/check.h"
#include "core/rng_block.h"

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
    return sr_rng_block(s->seed, s->domain, s->i0, s->i1, s->i2, (uint32_t)index);
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
        for (unsigned w = (unsigned)(e % 4); w < 4 && j < count; w++, j++) out[j] = sr_rng_unit(r.v[w]);
    }
}

void sr_rng_gaussian(const sr_rng_stream *s, uint64_t first, size_t count, float *out)
{
    for (size_t j = 0; j < count;) {
        const uint64_t e = first + j;
        SR_CHECK(e / 4 <= UINT32_MAX, "random stream element %llu is beyond 2^34; split the request",
                 (unsigned long long)e);
        float z[4];
        sr_rng_gaussian_block(s->seed, s->domain, s->i0, s->i1, s->i2, (uint32_t)(e / 4), z);
        for (unsigned w = (unsigned)(e % 4); w < 4 && j < count; w++, j++) out[j] = z[w];
    }
}

void sr_rng_add_gaussian(const sr_rng_stream *s, const float *x, float sigma, size_t count, float *y)
{
    sr_rng_gaussian(s, 0, count, y);
    for (size_t j = 0; j < count; j++) y[j] = x[j] + sigma * y[j];
}
