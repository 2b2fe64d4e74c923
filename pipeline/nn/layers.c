#include "nn/layers.h"

#include "core/arena.h"
#include "core/check.h"

/* Winograd when there are enough input channels to pay for its transforms
 * (the first layer, with one or three, unfolds). */
static bool winograd(int cin, int h, int w) { return cin >= 8 && h % 2 == 0 && w % 2 == 0; }

static size_t per_image_unfold(int cin, int h, int w) { return (size_t)cin * 9 * h * w; }
/* the input tiles' 16 planes (4 cin h w) and the products' (4 cout h w) */
static size_t per_image_winograd(int cin, int cout, int h, int w) { return (size_t)4 * (cin + cout) * h * w; }
static size_t winograd_weights(int cin, int cout) { return sr_arena_floats_padded((size_t)16 * cin * cout); }

static int images_that_fit(size_t floats, size_t per_image, int n, const char *what)
{
    const size_t fit = floats / per_image;
    SR_CHECK(fit >= 1, "internal: conv scratch of %zu floats is smaller than one image's %s (%zu)", floats, what,
             per_image);
    return fit < (size_t)n ? (int)fit : n;
}

int sr_conv3x3_chunk(int cin, int n, int h, int w, size_t col_floats)
{
    return images_that_fit(col_floats, per_image_unfold(cin, h, w), n, "unfolding");
}

size_t sr_conv3x3_scratch(int cin, int cout, int n, int h, int w, size_t budget)
{
    const size_t unfold = per_image_unfold(cin, h, w);
    size_t need = unfold * (size_t)images_that_fit(budget > unfold ? budget : unfold, unfold, n, "unfolding");
    if (winograd(cin, h, w)) {
        const size_t per = per_image_winograd(cin, cout, h, w), u = winograd_weights(cin, cout);
        const size_t room = budget > u + per ? budget - u : per;
        const size_t wino = u + per * (size_t)images_that_fit(room, per, n, "Winograd tiles");
        need = wino > need ? wino : need;
    }
    return need;
}

void sr_conv3x3_forward(const sr_backend *be, const float *x, int cin, int n, int h, int w,
                        const float *weight, int cout, float *y, float *col, size_t col_floats)
{
    const int hw = h * w, ld = n * hw, taps = cin * 9;
    if (sr_be_conv3x3_forward(be, x, cin, n, h, w, weight, cout, y)) return;
    if (winograd(cin, h, w)) {
        float *u = col, *v = col + winograd_weights(cin, cout);
        const int chunk = images_that_fit(col_floats - winograd_weights(cin, cout), per_image_winograd(cin, cout, h, w),
                                          n, "Winograd tiles");
        sr_be_winograd_weights(be, weight, cout, cin, u);
        for (int i0 = 0; i0 < n; i0 += chunk) {
            const int i1 = i0 + chunk < n ? i0 + chunk : n, tiles = (i1 - i0) * hw / 4;
            float *m = v + (size_t)16 * cin * tiles;
            sr_be_winograd_input(be, x, cin, n, h, w, i0, i1, v);
            const sr_gemm_strides planes = {(size_t)cout * cin, (size_t)cin * tiles, (size_t)cout * tiles};
            sr_be_gemm_batched(be, 16, planes, false, false, cout, tiles, cin, 1.0f, u, cin, v, tiles, 0.0f, m, tiles);
            sr_be_winograd_output(be, m, cout, n, h, w, i0, i1, y);
        }
        return;
    }
    const int chunk = sr_conv3x3_chunk(cin, n, h, w, col_floats);
    for (int i0 = 0; i0 < n; i0 += chunk) {
        const int i1 = i0 + chunk < n ? i0 + chunk : n, cols = (i1 - i0) * hw;
        sr_be_im2col3x3(be, x, cin, n, h, w, i0, i1, col);
        sr_be_gemm(be, false, false, cout, cols, taps, 1.0f, weight, taps, col, cols, 0.0f,
                 y + (size_t)i0 * hw, ld);
    }
}

void sr_conv3x3_backward(const sr_backend *be, const float *x, int cin, int n, int h, int w,
                         const float *weight, int cout, const float *dy, float *dweight,
                         float *dx, float *col, size_t col_floats)
{
    const int hw = h * w, ld = n * hw, taps = cin * 9;
    /* the backend's own convolutions where it has them; the rest unfolds */
    if (dweight && sr_be_conv3x3_backward_weights(be, x, cin, n, h, w, dy, cout, dweight)) dweight = NULL;
    if (dx && sr_be_conv3x3_backward_data(be, dy, cin, n, h, w, weight, cout, dx)) dx = NULL;
    if (!dweight && !dx) return;
    const int chunk = sr_conv3x3_chunk(cin, n, h, w, col_floats);
    for (int i0 = 0; i0 < n; i0 += chunk) {
        const int i1 = i0 + chunk < n ? i0 + chunk : n, cols = (i1 - i0) * hw;
        const float *g = dy + (size_t)i0 * hw;
        if (dweight) {
            sr_be_im2col3x3(be, x, cin, n, h, w, i0, i1, col);
            sr_be_gemm(be, false, true, cout, taps, cols, 1.0f, g, ld, col, cols, 1.0f, dweight, taps);
        }
        if (dx) {
            sr_be_gemm(be, true, false, taps, cols, cout, 1.0f, weight, taps, g, ld, 0.0f, col, cols);
            sr_be_col2im3x3(be, col, cin, n, h, w, i0, i1, dx);
        }
    }
}

void sr_convt2x2_forward(const sr_backend *be, const float *x, int cin, int n, int h, int w,
                         const float *weight, const float *bias, int cout, float *y, float *col)
{
    const int cols = n * h * w, outs = cout * 4;
    /* col[(k, dy, dx), pixel] = sum_c weight[c, (k, dy, dx)] x[c, pixel] */
    sr_be_gemm(be, true, false, outs, cols, cin, 1.0f, weight, outs, x, cols, 0.0f, col, cols);
    sr_be_convt_scatter(be, col, bias, cout, n, h, w, y);
}

void sr_convt2x2_backward(const sr_backend *be, const float *x, int cin, int n, int h, int w,
                          const float *weight, int cout, const float *dy, float *dweight,
                          float *dbias, float *dx, float *col)
{
    const int cols = n * h * w, outs = cout * 4;
    sr_be_convt_gather(be, dy, cout, n, h, w, col, dbias);
    if (dweight)
        sr_be_gemm(be, false, true, cin, outs, cols, 1.0f, x, cols, col, cols, 1.0f, dweight, outs);
    if (dx) sr_be_gemm(be, false, false, cin, cols, outs, 1.0f, weight, outs, col, cols, 1.0f, dx, cols);
}
