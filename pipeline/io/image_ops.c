#include "io/image_ops.h"

#include <string.h>

float sr_luma(float r, float g, float b) { return (float)(0.299 * r + 0.587 * g + 0.114 * b); }

void sr_image_channels(const float *in, int cin, int hw, int cout, float *out)
{
    for (int c = 0; c < cout; c++) {
        float *dst = out + (size_t)c * hw;
        if (cin == 1 || cin == 2) { /* grey (and alpha, dropped) */
            memcpy(dst, in, sizeof(float) * (size_t)hw);
        } else if (cout == 1) {
            const float *r = in, *g = in + hw, *b = in + 2 * (size_t)hw;
            for (int p = 0; p < hw; p++) dst[p] = sr_luma(r[p], g[p], b[p]);
        } else {
            memcpy(dst, in + (size_t)c * hw, sizeof(float) * (size_t)hw);
        }
    }
}

void sr_image_pad_or_crop(const float *in, int c, int h, int w, int size, float *out)
{
    /* offsets of the overlap in the input (crop) and the output (pad) */
    const int iy = h > size ? (h - size) / 2 : 0, ix = w > size ? (w - size) / 2 : 0;
    const int oy = h < size ? (size - h) / 2 : 0, ox = w < size ? (size - w) / 2 : 0;
    const int rows = h < size ? h : size, cols = w < size ? w : size;
    memset(out, 0, sizeof(float) * (size_t)c * size * size);
    for (int ch = 0; ch < c; ch++)
        for (int y = 0; y < rows; y++)
            memcpy(out + ((size_t)ch * size + oy + y) * size + ox, in + ((size_t)ch * h + iy + y) * w + ix,
                   sizeof(float) * (size_t)cols);
}
