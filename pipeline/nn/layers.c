#include "nn/layers.h"

#include "core/check.h"

int sr_conv3x3_chunk(int cin, int n, int h, int w, size_t col_floats)
{
    const size_t per_image = (size_t)cin * 9 * h * w;
    const size_t fit = col_floats / per_image;
    SR_CHECK(fit >= 1, "internal: conv scratch of %zu floats is smaller than one image's unfolding (%zu)",
             col_floats, per_image);
    return fit < (size_t)n ? (int)fit : n;
}

void sr_conv3x3_forward(const sr_backend *be, const float *x, int cin, int n, int h, int w,
                        const float *weight, int cout, float *y, float *col, size_t col_floats)
{
    const int hw = h * w, ld = n * hw, taps = cin * 9;
    const int chunk = sr_conv3x3_chunk(cin, n, h, w, col_floats);
    for (int i0 = 0; i0 < n; i0 += chunk) {
        const int i1 = i0 + chunk < n ? i0 + chunk : n, cols = (i1 - i0) * hw;
        be->im2col3x3(x, cin, n, h, w, i0, i1, col);
        be->gemm(false, false, cout, cols, taps, 1.0f, weight, taps, col, cols, 0.0f,
                 y + (size_t)i0 * hw, ld);
    }
}

void sr_conv3x3_backward(const sr_backend *be, const float *x, int cin, int n, int h, int w,
                         const float *weight, int cout, const float *dy, float *dweight,
                         float *dx, float *col, size_t col_floats)
{
    const int hw = h * w, ld = n * hw, taps = cin * 9;
    const int chunk = sr_conv3x3_chunk(cin, n, h, w, col_floats);
    for (int i0 = 0; i0 < n; i0 += chunk) {
        const int i1 = i0 + chunk < n ? i0 + chunk : n, cols = (i1 - i0) * hw;
        const float *g = dy + (size_t)i0 * hw;
        if (dweight) {
            be->im2col3x3(x, cin, n, h, w, i0, i1, col);
            be->gemm(false, true, cout, taps, cols, 1.0f, g, ld, col, cols, 1.0f, dweight, taps);
        }
        if (dx) {
            be->gemm(true, false, taps, cols, cout, 1.0f, weight, taps, g, ld, 0.0f, col, cols);
            be->col2im3x3(col, cin, n, h, w, i0, i1, dx);
        }
    }
}

void sr_convt2x2_forward(const sr_backend *be, const float *x, int cin, int n, int h, int w,
                         const float *weight, const float *bias, int cout, float *y, float *col)
{
    const int cols = n * h * w, outs = cout * 4;
    /* col[(k, dy, dx), pixel] = sum_c weight[c, (k, dy, dx)] x[c, pixel] */
    be->gemm(true, false, outs, cols, cin, 1.0f, weight, outs, x, cols, 0.0f, col, cols);
    be->convt_scatter(col, bias, cout, n, h, w, y);
}

void sr_convt2x2_backward(const sr_backend *be, const float *x, int cin, int n, int h, int w,
                          const float *weight, int cout, const float *dy, float *dweight,
                          float *dbias, float *dx, float *col)
{
    const int cols = n * h * w, outs = cout * 4;
    be->convt_gather(dy, cout, n, h, w, col, dbias);
    if (dweight)
        be->gemm(false, true, cin, outs, cols, 1.0f, x, cols, col, cols, 1.0f, dweight, outs);
    if (dx) be->gemm(false, false, cin, cols, outs, 1.0f, weight, outs, col, cols, 1.0f, dx, cols);
}
