/* The counter-based generator: Random123's published Philox4x32-10 answers,
 * the mapping to (0, 1) and to normals computed by hand, purity (an element
 * does not depend on what else was drawn) and the moments of the normals. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/rng.h"
#include "test_util.h"

static float unit_of(uint32_t word) { return ((float)(word >> 8) + 0.5f) / 16777216.0f; }

/* Known-answer vectors of Random123's kat_vectors for philox4x32 (10 rounds). */
static void test_philox_known_answers(void)
{
    const struct {
        uint32_t ctr[4], key[2], out[4];
    } kat[] = {
        {{0, 0, 0, 0}, {0, 0}, {0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8}},
        {{0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff}, {0xffffffff, 0xffffffff},
         {0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd}},
        {{0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344}, {0xa4093822, 0x299f31d0},
         {0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1}},
    };
    for (int t = 0; t < 3; t++) {
        /* stream: key (seed, domain), counter (element / 4, i0, i1, i2) */
        const sr_rng_stream s = {.seed = kat[t].key[0], .domain = kat[t].key[1],
                                 .i0 = kat[t].ctr[1], .i1 = kat[t].ctr[2], .i2 = kat[t].ctr[3]};
        float got[4];
        sr_rng_uniform(&s, (uint64_t)kat[t].ctr[0] * 4, 4, got);
        for (int w = 0; w < 4; w++) CU_ASSERT_EQUAL(got[w], unit_of(kat[t].out[w]));
    }
}

static void test_gaussian_by_hand(void)
{
    /* Element 0 and 1: Box-Muller on words 0 and 1 of the zero counter. */
    const sr_rng_stream s = {0};
    float z[2];
    sr_rng_gaussian(&s, 0, 2, z);
    const double u1 = unit_of(0x6627e8d5), u2 = unit_of(0xe169c58d);
    const double r = sqrt(-2.0 * log(u1)), a = 6.283185307179586 * u2;
    CU_ASSERT_DOUBLE_EQUAL(z[0], r * cos(a), 1e-5);
    CU_ASSERT_DOUBLE_EQUAL(z[1], r * sin(a), 1e-5);
}

static void test_elements_are_pure(void)
{
    const sr_rng_stream s = {.seed = 7, .domain = SR_RNG_PHI_NOISE, .i0 = 3, .i1 = 1,
                             .i2 = sr_rng_float_bits(0.2f)};
    enum { N = 1003 };
    float all[N], part[N];
    sr_rng_gaussian(&s, 0, N, all);
    for (size_t first = 0; first < N; first += 7) {
        const size_t len = first + 13 < N ? 13 : N - first;
        sr_rng_gaussian(&s, first, len, part);
        for (size_t j = 0; j < len; j++) CU_ASSERT_EQUAL(part[j], all[first + j]);
    }
    /* Another index is another stream. */
    sr_rng_stream other = s;
    other.i1 = 2;
    sr_rng_gaussian(&other, 0, N, part);
    int same = 0;
    for (int j = 0; j < N; j++) same += part[j] == all[j];
    CU_ASSERT(same < 3);
}

static void test_gaussian_moments(void)
{
    enum { N = 1 << 20 };
    float *z = malloc(sizeof(float) * N);
    const sr_rng_stream s = {.seed = 99, .domain = SR_RNG_TEST};
    sr_rng_gaussian(&s, 0, N, z);
    double m1 = 0, m2 = 0, m4 = 0;
    for (int i = 0; i < N; i++) {
        m1 += z[i];
        m2 += (double)z[i] * z[i];
        m4 += (double)z[i] * z[i] * z[i] * z[i];
    }
    m1 /= N;
    m2 /= N;
    m4 /= N;
    /* Five standard errors: sd(mean) = 1/sqrt(N), sd(m2) = sqrt(2/N), sd(m4) = sqrt(96/N). */
    CU_ASSERT(fabs(m1) < 5.0 / sqrt(N));
    CU_ASSERT(fabs(m2 - 1.0) < 5.0 * sqrt(2.0 / N));
    CU_ASSERT(fabs(m4 - 3.0) < 5.0 * sqrt(96.0 / N));
    free(z);
}

/* The backend's noisy copies (phi's draws, made where the engine runs)
 * against the host path they replace: sr_rng_add_gaussian on each image's
 * stream, then laid out channel-major by hand. Bit for bit on the CPU. */
static void test_noisy_copies(void)
{
    const sr_backend *be = sr_test_backend();
    enum { B = 3, N = 4, C = 2, HW = 15 }; /* HW * C not a multiple of 4: the last block is partial */
    const uint32_t keys[B] = {7, 0x7fffffff, 123456};
    const float sigma = 0.3f;
    float x[B * C * HW], want[B * N * C * HW], got[B * N * C * HW], one[C * HW];
    sr_test_uniform(5, 0.0f, 1.0f, B * C * HW, x);
    for (int i = 0; i < B; i++)
        for (int k = 0; k < N; k++) {
            const sr_rng_stream st = {.seed = 9, .domain = SR_RNG_PHI_NOISE, .i0 = keys[i], .i1 = (uint32_t)k,
                                      .i2 = sr_rng_float_bits(sigma)};
            sr_rng_add_gaussian(&st, x + i * C * HW, sigma, C * HW, one);
            for (int ch = 0; ch < C; ch++)
                for (int p = 0; p < HW; p++) want[(ch * B * N + i * N + k) * HW + p] = one[ch * HW + p];
        }
    float *dx = be->alloc(sizeof x), *dy = be->alloc(sizeof got);
    CU_ASSERT_FATAL(dx && dy);
    be->to_device(dx, x, sizeof x);
    be->noisy_copies(dx, B, N, C, HW, sigma, 9, SR_RNG_PHI_NOISE, keys, dy);
    be->to_host(got, dy, sizeof got);
    const double d = sr_max_rel_diff(got, want, B * N * C * HW);
    printf("\n    noisy copies on %s vs the host path: max rel diff %.2e", be->name, d);
    /* the CPU is the host path; a GPU's logf, sinf and cosf round differently */
    CU_ASSERT(be->host_memory ? d == 0.0 : d < 1e-6);
    be->noisy_copies(dx, B, 1, C, HW, 0.0f, 9, SR_RNG_PHI_NOISE, keys, dy); /* sigma 0: plain copies */
    be->to_host(got, dy, sizeof x);
    int same = 1;
    for (int i = 0; i < B; i++)
        for (int ch = 0; ch < C; ch++)
            for (int p = 0; p < HW; p++) same &= got[(ch * B + i) * HW + p] == x[(i * C + ch) * HW + p];
    CU_ASSERT(same);
    be->release(dx), be->release(dy);
}

int main(void)
{
    const sr_test tests[] = {
        {"philox known answers", test_philox_known_answers},
        {"gaussian by hand", test_gaussian_by_hand},
        {"elements are pure functions of their indices", test_elements_are_pure},
        {"gaussian moments", test_gaussian_moments},
        {"the backend's noisy copies against the host path", test_noisy_copies},
        {NULL, NULL},
    };
    return sr_test_run("rng", tests);
}
