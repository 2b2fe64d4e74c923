/* The per-tile arithmetic of Winograd F(2x2, 3x3) (Lavin and Gray 2016)
 * that the CPU and CUDA backends share: the weight transform G g G^T of one
 * 3x3 kernel and the output transform A^T m A of one 4x4 tile. Each value
 * of a tile lives `stride` floats after the one before (the 16 products are
 * 16 planes). Compiled as host code in C and as host and device code in
 * CUDA. */
#ifndef SEMREP_CORE_WINOGRAD_TILE_H
#define SEMREP_CORE_WINOGRAD_TILE_H

#include <stddef.h>

#include "core/host_device.h"

/* u[(i * 4 + j) * stride] = (G g G^T)[i][j] for the 3x3 kernel g (row-major). */
static inline SR_HOST_DEVICE void sr_winograd_weight_tile(const float *g, float *u, size_t stride)
{
    float t[4][3]; /* G g */
    for (int j = 0; j < 3; j++) {
        t[0][j] = g[j];
        t[1][j] = 0.5f * (g[j] + g[3 + j] + g[6 + j]);
        t[2][j] = 0.5f * (g[j] - g[3 + j] + g[6 + j]);
        t[3][j] = g[6 + j];
    }
    for (int i = 0; i < 4; i++) { /* (G g) G^T */
        const float r[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]), 0.5f * (t[i][0] - t[i][1] + t[i][2]),
                            t[i][2]};
        for (int j = 0; j < 4; j++) u[(size_t)(i * 4 + j) * stride] = r[j];
    }
}

/* The 2x2 output block at y (rows w floats apart) = A^T q A, q[e / 4][e % 4] = m[e * stride]. */
static inline SR_HOST_DEVICE void sr_winograd_output_tile(const float *m, size_t stride, float *y, int w)
{
    float q[4][4];
    for (int e = 0; e < 16; e++) q[e / 4][e % 4] = m[(size_t)e * stride];
    float t[2][4]; /* A^T q */
    for (int b = 0; b < 4; b++) {
        t[0][b] = q[0][b] + q[1][b] + q[2][b];
        t[1][b] = q[1][b] - q[2][b] - q[3][b];
    }
    for (int a = 0; a < 2; a++) { /* (A^T q) A */
        y[(size_t)a * w] = t[a][0] + t[a][1] + t[a][2];
        y[(size_t)a * w + 1] = t[a][1] - t[a][2] - t[a][3];
    }
}

#endif
