/* A float32 image batch as users and files see it: N images, C channels,
 * H x W pixels, row-major NCHW. Inside the UNet, activations are kept
 * channel-major (CNHW) so that one GEMM covers every image of a batch
 * (docs/architecture.md); the engine converts at its boundary. */
#ifndef SEMREP_CORE_TENSOR_H
#define SEMREP_CORE_TENSOR_H

#include <stddef.h>

typedef struct {
    float *data;
    int n, c, h, w;
} sr_tensor;

static inline size_t sr_tensor_count(const sr_tensor *t)
{
    return (size_t)t->n * (size_t)t->c * (size_t)t->h * (size_t)t->w;
}

#endif
