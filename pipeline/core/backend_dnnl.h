/* oneDNN's 3x3 convolutions for the CPU backend, built when CMake finds
 * Debian's libdnnl-dev (SEMREP_WITH_DNNL; option SEMREP_DNNL). Private to
 * core/: backend_cpu.c holds one sr_dnnl in each instance's context, and the
 * backend table (core/backend.h) is the interface everything else uses.
 *
 * An sr_dnnl holds everything oneDNN needs, nothing of it file-static: the
 * engine, one stream and one buffer per thread, the primitives made so far
 * (one plan per convolution shape, kept), each layer's weights in the
 * primitives' layouts (kept across calls while the weights stay the same,
 * reordered by all threads: each value is made alone). Every convolution
 * cuts its images into fixed chunks (at most 16 images, a number that
 * depends on the shape alone), and runs each chunk on one thread with
 * primitives made for one thread, so that results do not
 * depend on the thread count (oneDNN's own threading changes its Winograd
 * sums with it). Every failing oneDNN call ends the run naming the call. */
#ifndef SEMREP_CORE_BACKEND_DNNL_H
#define SEMREP_CORE_BACKEND_DNNL_H

#include <stdbool.h>
#include <stddef.h>

typedef struct sr_dnnl sr_dnnl;

/* oneDNN for a CPU instance of `threads` threads: the engine and the
 * threads' streams now, primitives and buffers when a shape first runs. */
sr_dnnl *sr_dnnl_new(int threads);
void sr_dnnl_free(sr_dnnl *d);

/* The convolutions of core/backend.h's optional ops (zero padding 1, no
 * bias; CNHW images, weight [cout][cin][3][3]): y = conv(x); dx += its input
 * gradient given dy; dweight += its weight gradient given x and dy, the
 * chunks' sums added in chunk order. Each returns false, having written
 * nothing, when oneDNN has no primitive for the shape. */
bool sr_dnnl_conv3x3_forward(sr_dnnl *d, const float *x, int cin, int n, int h, int w, const float *weight, int cout,
                             float *y);
bool sr_dnnl_conv3x3_backward_data(sr_dnnl *d, const float *dy, int cin, int n, int h, int w, const float *weight,
                                   int cout, float *dx);
bool sr_dnnl_conv3x3_backward_weights(sr_dnnl *d, const float *x, int cin, int n, int h, int w, const float *dy,
                                      int cout, float *dweight);

/* Drops the weights kept from [p, p + bytes), memory about to be released. */
void sr_dnnl_forget(sr_dnnl *d, const void *p, size_t bytes);

/* "oneDNN 2.6.3 3x3 convolutions, ISA avx512_core_bf16, last kernel
 * jit_wino_4x3:avx512_core" (what ran last, for describe). */
void sr_dnnl_describe(const sr_dnnl *d, char *text, size_t len);
/* "oneDNN 2.6.3 avx512_core_bf16": what fixes the convolutions' bits on
 * this processor (for the fingerprints), without threads or the last kernel. */
void sr_dnnl_kernels(char *text, size_t len);

#endif
