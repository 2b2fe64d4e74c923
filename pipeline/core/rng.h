/* Counter-based random numbers: Random123's Philox4x32-10.
 *
 * A stream is named by a seed, a domain (what the numbers are for) and three
 * indices (for example image, draw and the bits of sigma); element e of the
 * stream is a pure function of those and e. So a noise image never depends on
 * which rank made it, in what order, or what else was drawn before it.
 *   key     = (seed, domain)
 *   counter = (e / 4, i0, i1, i2); word e % 4 of Philox's output.
 * The same generator and keys run on the GPU (docs/formats.md). */
#ifndef SEMREP_CORE_RNG_H
#define SEMREP_CORE_RNG_H

#include <stddef.h>
#include <stdint.h>

/* The version of the bits-to-normals transform (core/rng_block.h): 1 was
 * libm's logf, sinf and cosf; 2 is arithmetic that rounds the same on the CPU
 * and the GPU. The fingerprints of files made from noise hash it, so rows
 * drawn with one version are never mixed with rows drawn with another. */
#define SR_RNG_NOISE_VERSION 2

typedef enum {
    SR_RNG_INIT = 1,     /* weight initialisation */
    SR_RNG_TRAIN_NOISE,  /* training noise images */
    SR_RNG_TRAIN_SIGMA,  /* training sigma per image */
    SR_RNG_TRAIN_ORDER,  /* the order of the training images per epoch */
    SR_RNG_PHI_NOISE,    /* phi's noise draws */
    SR_RNG_EVAL_NOISE,   /* denoise-eval's noise */
    SR_RNG_RECON,        /* reconstruction noise */
    SR_RNG_CLUSTER,      /* k-means seeding */
    SR_RNG_TEST,         /* tests and benchmarks */
} sr_rng_domain;

typedef struct {
    uint32_t seed, domain, i0, i1, i2;
} sr_rng_stream;

/* The bits of a float, as an index: a sigma's value names its stream. */
uint32_t sr_rng_float_bits(float value);

/* out[j] = the raw 32-bit word of element first + j. */
void sr_rng_words(const sr_rng_stream *s, uint64_t first, size_t count, uint32_t *out);
/* out[j] = uniform in (0, 1), element first + j of the stream (24-bit grid). */
void sr_rng_uniform(const sr_rng_stream *s, uint64_t first, size_t count, float *out);
/* out[j] = standard normal (Box-Muller on pairs of words), element first + j. */
void sr_rng_gaussian(const sr_rng_stream *s, uint64_t first, size_t count, float *out);

/* y[j] = x[j] + sigma * (element j of the stream's normals): a noisy image. */
void sr_rng_add_gaussian(const sr_rng_stream *s, const float *x, float sigma, size_t count, float *y);

#endif
