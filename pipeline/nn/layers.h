/* The UNet's layers as free functions with explicit shapes, on CNHW batches
 * in backend memory (core/backend.h). Forward passes write their output;
 * backward passes accumulate into the gradients they are given (NULL: not
 * wanted). Bias, normalisation and ReLU after a convolution are one fused
 * backend kernel (sr_unit); pooling, block means and concatenation need no
 * layer of their own (concatenation is two views of one buffer, see unet.c).
 *
 * Convolutions unfold their input into `col` (col_floats floats of backend
 * memory) for as many images at a time as fit, so each GEMM spans many images
 * while the scratch stays bounded. */
#ifndef SEMREP_NN_LAYERS_H
#define SEMREP_NN_LAYERS_H

#include <stddef.h>

#include "core/backend.h"

/* Images of cin x h x w whose 3x3 unfolding fits in col_floats (at least 1 needed). */
int sr_conv3x3_chunk(int cin, int n, int h, int w, size_t col_floats);
/* The scratch a convolution of n images needs, forward (unfolding, or
 * Winograd's tiles and transformed weights) and backward, taking as many
 * images at a time as fit in about `budget` floats (at least one). */
size_t sr_conv3x3_scratch(int cin, int cout, int n, int h, int w, size_t budget);

/* y[cout, n, h, w] = conv3x3(x[cin, n, h, w], weight[cout, cin, 3, 3]), no bias.
 * By the backend's own convolution where it has one for the shape (the
 * CPU's oneDNN); otherwise, with 8 or more input channels and even sides, by
 * Winograd F(2x2, 3x3), else unfolded. The backward the same way, each of
 * its two gradients. */
void sr_conv3x3_forward(const sr_backend *be, const float *x, int cin, int n, int h, int w,
                        const float *weight, int cout, float *y, float *col, size_t col_floats);
/* dweight += dy (x) x; dx += conv3x3^T(dy). */
void sr_conv3x3_backward(const sr_backend *be, const float *x, int cin, int n, int h, int w,
                         const float *weight, int cout, const float *dy, float *dweight,
                         float *dx, float *col, size_t col_floats);

/* ConvTranspose 2x2 stride 2, weight[cin, cout, 2, 2] (PyTorch's layout),
 * optional bias[cout]: y[cout, n, 2h, 2w]. col holds cout * 4 * n * h * w floats. */
void sr_convt2x2_forward(const sr_backend *be, const float *x, int cin, int n, int h, int w,
                         const float *weight, const float *bias, int cout, float *y, float *col);
void sr_convt2x2_backward(const sr_backend *be, const float *x, int cin, int n, int h, int w,
                          const float *weight, int cout, const float *dy, float *dweight,
                          float *dbias, float *dx, float *col);

#endif
