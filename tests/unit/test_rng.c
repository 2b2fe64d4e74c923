/* The counter-based generator: Random123's published Philox4x32-10 answers,
 * the mapping to (0, 1) and to normals computed by hand, purity (an element
 * does not depend on what else was drawn) and the moments of the normals;
 * the normals' bits against a committed digest on every path that draws them
 * (this header inline, sr_rng_gaussian, the backend's noisy copies: on the
 * GPU under the rng_cuda test) and their error in ulps against a
 * double-precision Box-Muller. Built at -O3 -march=native (rng) and at -O0
 * (rng_O0): the digest must not depend on the optimiser. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/rng.h"
#include "core/rng_block.h"
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

/* FNV-1a over the bits of the draws: a digest of the noise. */
static uint64_t digest(const float *z, size_t n)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) {
        const uint32_t bits = sr_rng_float_bits(z[i]);
        for (int byte = 0; byte < 4; byte++) h = (h ^ ((bits >> (8 * byte)) & 0xffu)) * 0x100000001b3ull;
    }
    return h;
}

/* The first draws of fixed streams, as phi names them (seed, PHI_NOISE, noise
 * key, draw, bits of sigma 1): images of 1003 values (the last Philox block
 * partial). The digest was made by this transform (noise version 2) on the
 * CPU at -O3 -march=native and at -O0; a change to it is a new noise version
 * (SR_RNG_NOISE_VERSION), never an update of this number alone. */
enum { KAT_IMAGES = 3, KAT_DRAWS = 2, KAT_VALUES = 1003 };
static const uint32_t kat_keys[KAT_IMAGES] = {0, 1, 0xffffffffu};
static const uint64_t kat_digest = 0x70b7e41f94a3c131ull;

static void test_gaussian_digest(void)
{
    enum { N = KAT_IMAGES * KAT_DRAWS * KAT_VALUES };
    static float inline_z[N], library[N], backend[N], zero[KAT_IMAGES * KAT_VALUES];
    for (int j = 0; j < KAT_IMAGES * KAT_DRAWS; j++) {
        const sr_rng_stream st = {.seed = 2024, .domain = SR_RNG_PHI_NOISE, .i0 = kat_keys[j / KAT_DRAWS],
                                  .i1 = (uint32_t)(j % KAT_DRAWS), .i2 = sr_rng_float_bits(1.0f)};
        sr_rng_gaussian(&st, 0, KAT_VALUES, library + j * KAT_VALUES);
        for (int e = 0; e < KAT_VALUES; e += 4) {
            float z[4];
            sr_rng_gaussian_block(st.seed, st.domain, st.i0, st.i1, st.i2, (uint32_t)(e / 4), z);
            for (int q = e; q < e + 4 && q < KAT_VALUES; q++) inline_z[j * KAT_VALUES + q] = z[q - e];
        }
    }
    /* x = 0, sigma = 1: the copies are the draws (0 + 1 z = z, and no draw is -0) */
    const sr_backend *be = sr_test_backend();
    float *dx = sr_be_alloc(be, sizeof zero), *dy = sr_be_alloc(be, sizeof backend);
    CU_ASSERT_FATAL(dx && dy);
    sr_be_to_device(be, dx, zero, sizeof zero);
    sr_be_noisy_copies(be, dx, KAT_IMAGES, KAT_DRAWS, 1, KAT_VALUES, 1.0f, 2024, SR_RNG_PHI_NOISE, kat_keys, dy);
    sr_be_to_host(be, backend, dy, sizeof backend);
    sr_be_release(be, dx), sr_be_release(be, dy);
    printf("\n    digests: inline %016llx, sr_rng_gaussian %016llx, %s noisy copies %016llx; committed %016llx",
           (unsigned long long)digest(inline_z, N), (unsigned long long)digest(library, N), sr_be_name(be),
           (unsigned long long)digest(backend, N), (unsigned long long)kat_digest);
    CU_ASSERT_EQUAL(digest(inline_z, N), kat_digest);
    CU_ASSERT_EQUAL(digest(library, N), kat_digest);
    CU_ASSERT_EQUAL(digest(backend, N), kat_digest);
}

/* Error in units in the last place of the float nearest to `want`. */
static double ulps(float got, double want)
{
    int exponent;
    frexp(want, &exponent);
    return fabs((double)got - want) / ldexp(1.0, exponent - 24);
}

/* The radius and the sine and cosine for every one of the 2^24 uniforms,
 * and the normals of a million draws, against Box-Muller in double on the
 * same uniforms u = v 2^-25. The bounds are docs/formats.md's. */
static void test_gaussian_ulps(void)
{
    double radius = 0, trig = 0, normal = 0;
    for (uint32_t k = 0; k < (1u << 24); k++) {
        const uint32_t v = 2 * k + 1;
        const double u = v / 33554432.0;
        float sine, cosine;
        sr_rng_sincos_odd(v, &sine, &cosine);
        radius = fmax(radius, ulps(sqrtf(-2.0f * sr_rng_log_odd(v)), sqrt(-2.0 * log(u))));
        trig = fmax(trig, fmax(ulps(sine, sin(6.283185307179586 * u)), ulps(cosine, cos(6.283185307179586 * u))));
    }
    enum { N = 1 << 20 };
    const sr_rng_stream s = {.seed = 5, .domain = SR_RNG_TEST};
    float *z = malloc(sizeof(float) * N);
    uint32_t *w = malloc(sizeof(uint32_t) * N);
    CU_ASSERT_FATAL(z && w);
    sr_rng_gaussian(&s, 0, N, z);
    sr_rng_words(&s, 0, N, w);
    for (int i = 0; i < N; i += 2) {
        const double r = sqrt(-2.0 * log(sr_rng_odd(w[i]) / 33554432.0));
        const double a = 6.283185307179586 * (sr_rng_odd(w[i + 1]) / 33554432.0);
        normal = fmax(normal, fmax(ulps(z[i], r * cos(a)), ulps(z[i + 1], r * sin(a))));
    }
    free(z), free(w);
    printf("\n    max error: radius %.2f ulp, sin and cos %.2f ulp, normals %.2f ulp", radius, trig, normal);
    CU_ASSERT(radius < 1.0);
    CU_ASSERT(trig < 2.0);
    CU_ASSERT(normal < 3.5); /* radius, sine or cosine, and the product's rounding: 1 + 2 + 0.5 */
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
    float *dx = sr_be_alloc(be, sizeof x), *dy = sr_be_alloc(be, sizeof got);
    CU_ASSERT_FATAL(dx && dy);
    sr_be_to_device(be, dx, x, sizeof x);
    sr_be_noisy_copies(be, dx, B, N, C, HW, sigma, 9, SR_RNG_PHI_NOISE, keys, dy);
    sr_be_to_host(be, got, dy, sizeof got);
    const double d = sr_max_rel_diff(got, want, B * N * C * HW);
    printf("\n    noisy copies on %s vs the host path: max rel diff %.2e", sr_be_name(be), d);
    CU_ASSERT(d == 0.0); /* the same bits on every backend (core/rng_block.h) */
    sr_be_noisy_copies(be, dx, B, 1, C, HW, 0.0f, 9, SR_RNG_PHI_NOISE, keys, dy); /* sigma 0: plain copies */
    sr_be_to_host(be, got, dy, sizeof x);
    int same = 1;
    for (int i = 0; i < B; i++)
        for (int ch = 0; ch < C; ch++)
            for (int p = 0; p < HW; p++) same &= got[(ch * B + i) * HW + p] == x[(i * C + ch) * HW + p];
    CU_ASSERT(same);
    sr_be_release(be, dx), sr_be_release(be, dy);
}

int main(void)
{
    const sr_test tests[] = {
        {"philox known answers", test_philox_known_answers},
        {"gaussian by hand", test_gaussian_by_hand},
        {"elements are pure functions of their indices", test_elements_are_pure},
        {"gaussian moments", test_gaussian_moments},
        {"gaussian draws against their committed digest", test_gaussian_digest},
        {"gaussian error in ulps against double Box-Muller", test_gaussian_ulps},
        {"the backend's noisy copies against the host path", test_noisy_copies},
        {NULL, NULL},
    };
    return sr_test_run("rng", tests);
}
