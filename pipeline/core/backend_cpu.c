#define _GNU_SOURCE /* sysconf(_SC_PHYS_PAGES) */
/* The CPU backend: OpenBLAS sgemm for the products, OpenMP loops for the
 * rest. Every loop is split so that each output element is written by one
 * thread, and every reduction runs in a fixed order whatever the number of
 * threads, so results do not depend on the thread count. */
#include "core/backend.h"
#ifdef SEMREP_WITH_DNNL
#include "core/backend_dnnl.h"
#endif
#include "core/check.h"
#include "core/rng.h"
#include "core/rng_block.h"
#include "core/winograd_tile.h"

#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Below this many elements a loop runs on the calling thread: waking a team
 * costs more than it saves, and on a loaded machine a team of spinning
 * threads costs far more. */
static inline bool worth_threads(size_t elements) { return elements >= 32768; }

/* An instance's context: the threads its loops and products run on, and
 * oneDNN's engine, streams and primitives when built with it. */
typedef struct {
    int threads;
#ifdef SEMREP_WITH_DNNL
    sr_dnnl *dnnl;
#endif
} cpu_ctx;

static inline int threads_of(const sr_backend *be) { return ((const cpu_ctx *)be->ctx)->threads; }

static void cpu_describe(const sr_backend *be, char *text, size_t len)
{
    char conv[192] = "convolutions: im2col and Winograd F(2x2, 3x3) over the BLAS";
#ifdef SEMREP_WITH_DNNL
    sr_dnnl_describe(((const cpu_ctx *)be->ctx)->dnnl, conv, sizeof conv);
#endif
    snprintf(text, len, "%s, %s kernels, %d threads; %s", openblas_get_config(), openblas_get_corename(),
             threads_of(be), conv);
}

/* What the processor chose: oneDNN's ISA and OpenBLAS's kernels. */
static void cpu_kernels(const sr_backend *be, char *text, size_t len)
{
    char conv[96] = "";
#ifdef SEMREP_WITH_DNNL
    char dnnl[64];
    sr_dnnl_kernels(dnnl, sizeof dnnl);
    snprintf(conv, sizeof conv, "%s convolutions, ", dnnl);
#endif
    snprintf(text, len, "%sOpenBLAS %s sgemm", conv, openblas_get_corename());
}

static size_t cpu_memory_bytes(const sr_backend *be)
{
    return (size_t)sysconf(_SC_PHYS_PAGES) * (size_t)sysconf(_SC_PAGESIZE);
}

static void *cpu_alloc(const sr_backend *be, size_t bytes)
{
    /* 64-byte alignment: one cache line, a full AVX-512 vector. */
    size_t rounded = (bytes + 63) / 64 * 64;
    return aligned_alloc(64, rounded ? rounded : 64);
}

static void cpu_release(const sr_backend *be, void *p) { free(p); }
static void cpu_copy(const sr_backend *be, void *dst, const void *src, size_t bytes) { memcpy(dst, src, bytes); }
static void cpu_zero(const sr_backend *be, void *p, size_t bytes) { memset(p, 0, bytes); }
static void cpu_sync(const sr_backend *be) {}

/* Products are cut into fixed tiles of GEMM_TILE rows or columns (never the
 * k sum), each computed by a single-threaded sgemm inside one OpenMP region
 * (OpenBLAS runs one thread when called in a parallel region). So a product
 * comes out bit for bit the same whatever the number of threads, which
 * OpenBLAS's own threading does not promise. A team of one thread is not "in
 * parallel" to OpenBLAS, which would then take the process's default count:
 * each thread of the region sets its own default to one (OpenMP keeps that
 * setting to the region's tasks), so every tile is one thread's. */
#define GEMM_TILE 256

/* The tiles of all count products are dealt out together, so that small
 * products (a deep layer's, whose columns make one tile) still keep every
 * thread busy. */
static void cpu_gemm_batched(const sr_backend *be, int count, sr_gemm_strides stride, bool trans_a, bool trans_b,
                             int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                             float beta, float *c, int ldc)
{
    const CBLAS_TRANSPOSE ta = trans_a ? CblasTrans : CblasNoTrans, tb = trans_b ? CblasTrans : CblasNoTrans;
    const bool by_columns = n >= m;
    const int extent = by_columns ? n : m, tiles = (extent + GEMM_TILE - 1) / GEMM_TILE;
#pragma omp parallel num_threads(threads_of(be))
    {
        omp_set_num_threads(1);
#pragma omp for schedule(static)
        for (long job = 0; job < (long)count * tiles; job++) {
            const int t = (int)(job % tiles), start = t * GEMM_TILE;
            const int len = extent - start < GEMM_TILE ? extent - start : GEMM_TILE;
            const size_t j = (size_t)(job / tiles);
            const float *aj = a + j * stride.a, *bj = b + j * stride.b;
            float *cj = c + j * stride.c;
            if (by_columns) /* columns [start, start + len) of op(B) and C */
                cblas_sgemm(CblasRowMajor, ta, tb, m, len, k, alpha, aj, lda,
                            trans_b ? bj + (size_t)start * ldb : bj + start, ldb, beta, cj + start, ldc);
            else /* rows [start, start + len) of op(A) and C */
                cblas_sgemm(CblasRowMajor, ta, tb, len, n, k, alpha,
                            trans_a ? aj + start : aj + (size_t)start * lda, lda, bj, ldb, beta,
                            cj + (size_t)start * ldc, ldc);
        }
    }
}

static void cpu_gemm(const sr_backend *be, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                     const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    cpu_gemm_batched(be, 1, (sr_gemm_strides){0}, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static void cpu_nchw_to_cnhw(const sr_backend *be, const float *src, int n, int c, int hw, float *dst)
{
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_of(be)) if (worth_threads((size_t)n * c * hw))
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            memcpy(dst + ((size_t)ch * n + i) * hw, src + ((size_t)i * c + ch) * hw,
                   sizeof(float) * (size_t)hw);
}

static void cpu_cnhw_to_nchw(const sr_backend *be, const float *src, int n, int c, int hw, float *dst)
{
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_of(be)) if (worth_threads((size_t)n * c * hw))
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            memcpy(dst + ((size_t)i * c + ch) * hw, src + ((size_t)ch * n + i) * hw,
                   sizeof(float) * (size_t)hw);
}

static void cpu_im2col3x3(const sr_backend *be, const float *x, int c, int n, int h, int w, int i0, int i1, float *col)
{
    const size_t hw = (size_t)h * w, cols = (size_t)(i1 - i0) * hw;
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_of(be)) \
    if (worth_threads(9 * (size_t)c * cols))
    for (int ch = 0; ch < c; ch++)
        for (int tap = 0; tap < 9; tap++) {
            const int ky = tap / 3 - 1, kx = tap % 3 - 1;
            const int x0 = kx < 0 ? 1 : 0, x1 = kx > 0 ? w - 1 : w;
            float *row = col + ((size_t)ch * 9 + tap) * cols;
            for (int i = i0; i < i1; i++) {
                const float *plane = x + ((size_t)ch * n + i) * hw;
                float *dst = row + (size_t)(i - i0) * hw;
                for (int y = 0; y < h; y++, dst += w) {
                    const int sy = y + ky;
                    if (sy < 0 || sy >= h) {
                        memset(dst, 0, sizeof(float) * (size_t)w);
                        continue;
                    }
                    const float *src = plane + (size_t)sy * w;
                    if (x0) dst[0] = 0.0f;
                    if (x1 < w) dst[w - 1] = 0.0f;
                    for (int xx = x0; xx < x1; xx++) dst[xx] = src[xx + kx];
                }
            }
        }
}

static void cpu_col2im3x3(const sr_backend *be, const float *col, int c, int n, int h, int w, int i0, int i1, float *dx)
{
    const size_t hw = (size_t)h * w, cols = (size_t)(i1 - i0) * hw;
    const int ni = i1 - i0;
    /* Each thread owns whole (channel, image) planes of dx: no races. */
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_of(be)) \
    if (worth_threads(9 * (size_t)c * cols))
    for (int ch = 0; ch < c; ch++)
        for (int ii = 0; ii < ni; ii++) {
            float *plane = dx + ((size_t)ch * n + i0 + ii) * hw;
            for (int tap = 0; tap < 9; tap++) {
                const int ky = tap / 3 - 1, kx = tap % 3 - 1;
                const int x0 = kx < 0 ? 1 : 0, x1 = kx > 0 ? w - 1 : w;
                const float *src = col + ((size_t)ch * 9 + tap) * cols + (size_t)ii * hw;
                for (int y = 0; y < h; y++) {
                    const int sy = y + ky;
                    if (sy < 0 || sy >= h) continue;
                    float *dst = plane + (size_t)sy * w;
                    const float *s = src + (size_t)y * w;
                    for (int xx = x0; xx < x1; xx++) dst[xx + kx] += s[xx];
                }
            }
        }
}

static void cpu_winograd_weights(const sr_backend *be, const float *w, int k, int c, float *u)
{
    const size_t kc = (size_t)k * c;
#pragma omp parallel for schedule(static) num_threads(threads_of(be)) if (worth_threads(kc * 16))
    for (size_t p = 0; p < kc; p++) sr_winograd_weight_tile(w + p * 9, u + p, kc);
}

static void cpu_winograd_input(const sr_backend *be, const float *x, int c, int n, int h, int w, int i0, int i1,
                               float *v)
{
    const int th = h / 2, tw = w / 2, wp = w + 2;
    const size_t tiles = (size_t)(i1 - i0) * th * tw, hw = (size_t)h * w, plane = (size_t)c * tiles;
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_of(be)) if (worth_threads(16 * plane))
    for (int ch = 0; ch < c; ch++)
        for (int i = i0; i < i1; i++) {
            const float *src = x + ((size_t)ch * n + i) * hw;
            float *dst = v + (size_t)ch * tiles + (size_t)(i - i0) * th * tw;
            /* four input rows with their zero border, then B^T down the rows
             * for a whole row of tiles at once, then B along each tile */
            float rows[4][wp], t[4][wp];
            for (int ty = 0; ty < th; ty++) {
                for (int a = 0; a < 4; a++) {
                    const int y = 2 * ty + a - 1;
                    rows[a][0] = rows[a][wp - 1] = 0.0f;
                    if (y < 0 || y >= h) memset(rows[a], 0, sizeof(float) * (size_t)wp);
                    else memcpy(rows[a] + 1, src + (size_t)y * w, sizeof(float) * (size_t)w);
                }
                for (int b = 0; b < wp; b++) {
                    t[0][b] = rows[0][b] - rows[2][b];
                    t[1][b] = rows[1][b] + rows[2][b];
                    t[2][b] = rows[2][b] - rows[1][b];
                    t[3][b] = rows[1][b] - rows[3][b];
                }
                float *out = dst + (size_t)ty * tw;
                for (int a = 0; a < 4; a++) {
                    const float *r = t[a];
                    float *o0 = out + (size_t)(a * 4) * plane, *o1 = o0 + plane, *o2 = o1 + plane, *o3 = o2 + plane;
                    for (int tx = 0; tx < tw; tx++) {
                        const float *q = r + 2 * tx;
                        o0[tx] = q[0] - q[2];
                        o1[tx] = q[1] + q[2];
                        o2[tx] = q[2] - q[1];
                        o3[tx] = q[1] - q[3];
                    }
                }
            }
        }
}

static void cpu_winograd_output(const sr_backend *be, const float *m, int k, int n, int h, int w, int i0, int i1,
                                float *y)
{
    const int th = h / 2, tw = w / 2;
    const size_t tiles = (size_t)(i1 - i0) * th * tw, hw = (size_t)h * w, plane = (size_t)k * tiles;
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_of(be)) if (worth_threads(16 * plane))
    for (int kk = 0; kk < k; kk++)
        for (int i = i0; i < i1; i++) {
            const float *src = m + (size_t)kk * tiles + (size_t)(i - i0) * th * tw;
            float *dst = y + ((size_t)kk * n + i) * hw;
            for (int ty = 0; ty < th; ty++)
                for (int tx = 0; tx < tw; tx++)
                    sr_winograd_output_tile(src + (size_t)ty * tw + tx, plane, dst + (size_t)(2 * ty) * w + 2 * tx, w);
        }
}

/* The divisor of channel ch of image i: u * gamma_c / divisor is the
 * normalised value (1 and no gamma without normalisation). */
static inline float unit_divisor(const sr_unit *unit, const float *stats, int ch, int i)
{
    switch (unit->norm) {
    case SR_NORM_LAYER: return stats[3 * i + 1];
    case SR_NORM_BATCH: return unit->running_sd[ch];
    default: return 1.0f;
    }
}

static inline float unit_scale(const sr_unit *unit, const float *stats, int ch, int i)
{
    return unit->norm == SR_NORM_NONE ? 1.0f : unit->gamma[ch] / unit_divisor(unit, stats, ch, i);
}

/* sum += sum of x, sumsq += sum of x^2, in double, over eight independent
 * lanes (a fixed order, so still deterministic) that the compiler can keep
 * in vector registers: a single running sum would be one long dependency
 * chain. */
static void add_moments(const float *x, size_t count, double *sum, double *sumsq)
{
    double s[8] = {0}, q[8] = {0};
    size_t p = 0;
    for (; p + 8 <= count; p += 8)
        for (int l = 0; l < 8; l++) {
            s[l] += x[p + l];
            q[l] += (double)x[p + l] * x[p + l];
        }
    for (; p < count; p++) {
        s[0] += x[p];
        q[0] += (double)x[p] * x[p];
    }
    for (int l = 0; l < 8; l++) {
        *sum += s[l];
        *sumsq += q[l];
    }
}

static void cpu_unit_forward(const sr_backend *be, const sr_unit *unit, float *u, float *a, float *stats)
{
    const int k = unit->k, n = unit->n;
    const size_t hw = (size_t)unit->hw;
    /* One image per iteration: its bias pass, its statistics (a fixed-order
     * sum in double) and its scaled ReLU, with no sharing between threads. */
#pragma omp parallel for schedule(static) num_threads(threads_of(be)) if (worth_threads((size_t)k * n * hw))
    for (int i = 0; i < n; i++) {
        const bool layer = unit->norm == SR_NORM_LAYER;
        double sum = 0.0, sumsq = 0.0;
        for (int ch = 0; ch < k; ch++) {
            float *up = u + ((size_t)ch * n + i) * hw;
            const float b = unit->bias ? unit->bias[ch] : 0.0f;
            for (size_t p = 0; p < hw; p++) up[p] += b;
            if (layer) add_moments(up, hw, &sum, &sumsq);
        }
        if (layer) {
            const double count = (double)k * (double)hw, mean = sum / count;
            const double var = fmax(sumsq / count - mean * mean, 0.0);
            stats[3 * i] = (float)mean;
            stats[3 * i + 1] = (float)sqrt(var) + SR_NORM_EPS;
        }
        for (int ch = 0; ch < k; ch++) {
            const float *up = u + ((size_t)ch * n + i) * hw;
            float *ap = a + ((size_t)ch * n + i) * hw;
            const float g = unit_scale(unit, stats, ch, i);
            if (unit->relu)
                for (size_t p = 0; p < hw; p++) {
                    const float v = up[p] * g;
                    ap[p] = v < 0.0f ? 0.0f : v; /* keeps a NaN a NaN, vectorises */
                }
            else
                for (size_t p = 0; p < hw; p++) ap[p] = up[p] * g;
        }
    }
}

static void cpu_unit_backward(const sr_backend *be, const sr_unit *unit, const float *u, const float *a, float *stats,
                              float *da, float *dgamma, float *dbias)
{
    const int k = unit->k, n = unit->n;
    const size_t hw = (size_t)unit->hw;
    const bool layer = unit->norm == SR_NORM_LAYER;
    /* Per image: the ReLU mask, and for the layer norm the sum
     * S_i = sum_c gamma_c sum_p dy u that the std's derivative needs, kept in
     * the scratch third of the image's stats. */
#pragma omp parallel for schedule(static) num_threads(threads_of(be)) if (worth_threads((size_t)k * n * hw))
    for (int i = 0; i < n; i++) {
        double s = 0.0;
        for (int ch = 0; ch < k; ch++) {
            const size_t off = ((size_t)ch * n + i) * hw;
            float *dp = da + off;
            const float *ap = a + off, *up = u + off;
            double sc = 0.0;
            for (size_t p = 0; p < hw; p++) {
                if (unit->relu && ap[p] <= 0.0f) dp[p] = 0.0f;
                sc += (double)dp[p] * up[p];
            }
            if (layer) s += sc * unit->gamma[ch];
        }
        if (layer) stats[3 * i + 2] = (float)s;
    }
    /* Per channel, images in order: dgamma, the gradient of u in place, dbias.
     * d(std)/du_p = (u_p - mean) / (count * std); at std = 0 it is taken as 0. */
#pragma omp parallel for schedule(static) num_threads(threads_of(be)) if (worth_threads((size_t)k * n * hw))
    for (int ch = 0; ch < k; ch++) {
        double dg = 0.0, db = 0.0;
        for (int i = 0; i < n; i++) {
            const size_t off = ((size_t)ch * n + i) * hw;
            float *dp = da + off;
            const float *up = u + off;
            const float g = unit_scale(unit, stats, ch, i);
            const float inv = 1.0f / unit_divisor(unit, stats, ch, i);
            float coef = 0.0f, mean = 0.0f;
            if (layer) {
                const double d = stats[3 * i + 1], sd = d - SR_NORM_EPS;
                const double count = (double)k * (double)hw;
                coef = sd > 0.0 ? (float)(stats[3 * i + 2] / (d * d * count * sd)) : 0.0f;
                mean = stats[3 * i];
            }
            for (size_t p = 0; p < hw; p++) {
                const float dy = dp[p];
                dg += (double)dy * up[p] * inv;
                const float du = g * dy - coef * (up[p] - mean);
                dp[p] = du;
                db += du;
            }
        }
        if (dgamma && unit->norm != SR_NORM_NONE) dgamma[ch] += (float)dg;
        if (dbias) dbias[ch] += (float)db;
    }
}

static void cpu_convt_scatter(const sr_backend *be, const float *col, const float *bias, int k, int n, int h, int w,
                              float *y)
{
    const size_t hw = (size_t)h * w, cols = (size_t)n * hw;
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_of(be)) \
    if (worth_threads(4 * (size_t)k * n * hw))
    for (int kk = 0; kk < k; kk++)
        for (int i = 0; i < n; i++) {
            const float b = bias ? bias[kk] : 0.0f;
            float *out = y + ((size_t)kk * n + i) * 4 * hw;
            for (int q = 0; q < 4; q++) {
                const int dy = q / 2, dx = q % 2;
                const float *src = col + ((size_t)kk * 4 + q) * cols + (size_t)i * hw;
                for (int yy = 0; yy < h; yy++)
                    for (int xx = 0; xx < w; xx++)
                        out[(size_t)(2 * yy + dy) * 2 * w + 2 * xx + dx] =
                            src[(size_t)yy * w + xx] + b;
            }
        }
}

static void cpu_convt_gather(const sr_backend *be, const float *dy, int k, int n, int h, int w, float *dcol,
                             float *dbias)
{
    const size_t hw = (size_t)h * w, cols = (size_t)n * hw;
#pragma omp parallel for schedule(static) num_threads(threads_of(be)) if (worth_threads(4 * (size_t)k * cols))
    for (int kk = 0; kk < k; kk++) {
        double db = 0.0;
        for (int i = 0; i < n; i++) {
            const float *g = dy + ((size_t)kk * n + i) * 4 * hw;
            for (int q = 0; q < 4; q++) {
                const int oy = q / 2, ox = q % 2;
                float *dst = dcol + ((size_t)kk * 4 + q) * cols + (size_t)i * hw;
                for (int yy = 0; yy < h; yy++)
                    for (int xx = 0; xx < w; xx++) {
                        const float v = g[(size_t)(2 * yy + oy) * 2 * w + 2 * xx + ox];
                        dst[(size_t)yy * w + xx] = v;
                        db += v;
                    }
            }
        }
        if (dbias) dbias[kk] += (float)db;
    }
}

static void cpu_pool2x2(const sr_backend *be, const float *x, int c, int n, int h, int w, float *y)
{
    const int oh = h / 2, ow = w / 2;
#pragma omp parallel for schedule(static) num_threads(threads_of(be)) if (worth_threads((size_t)c * n * h * w))
    for (size_t plane = 0; plane < (size_t)c * n; plane++) {
        const float *src = x + plane * h * w;
        float *dst = y + plane * oh * ow;
        for (int yy = 0; yy < oh; yy++)
            for (int xx = 0; xx < ow; xx++) {
                const float *s = src + (size_t)2 * yy * w + 2 * xx;
                dst[yy * ow + xx] = 0.25f * (s[0] + s[1] + s[w] + s[w + 1]);
            }
    }
}

static void cpu_pool2x2_backward(const sr_backend *be, const float *dy, int c, int n, int h, int w, float *dx)
{
    const int oh = h / 2, ow = w / 2;
#pragma omp parallel for schedule(static) num_threads(threads_of(be)) if (worth_threads((size_t)c * n * h * w))
    for (size_t plane = 0; plane < (size_t)c * n; plane++) {
        const float *src = dy + plane * oh * ow;
        float *dst = dx + plane * h * w;
        for (int yy = 0; yy < oh; yy++)
            for (int xx = 0; xx < ow; xx++) {
                const float g = 0.25f * src[yy * ow + xx];
                float *d = dst + (size_t)2 * yy * w + 2 * xx;
                d[0] += g;
                d[1] += g;
                d[w] += g;
                d[w + 1] += g;
            }
    }
}

static void cpu_plane_means(const sr_backend *be, const float *x, int c, int n, int hw, float *means)
{
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_of(be)) if (worth_threads((size_t)c * n * hw))
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < n; i++) {
            const float *p = x + ((size_t)ch * n + i) * hw;
            double s = 0.0;
            for (int q = 0; q < hw; q++) s += p[q];
            means[(size_t)i * c + ch] = (float)(s / hw);
        }
}

static void cpu_plane_means_backward(const sr_backend *be, const float *dmeans, int c, int n, int hw, float *dx)
{
#pragma omp parallel for collapse(2) schedule(static) num_threads(threads_of(be)) if (worth_threads((size_t)c * n * hw))
    for (int ch = 0; ch < c; ch++)
        for (int i = 0; i < n; i++) {
            float *p = dx + ((size_t)ch * n + i) * hw;
            const float g = dmeans[(size_t)i * c + ch] / (float)hw;
            for (int q = 0; q < hw; q++) p[q] += g;
        }
}

static void cpu_noisy_copies(const sr_backend *be, const float *x, int b, int n, int c, int hw, float sigma,
                             uint32_t seed, uint32_t domain, const uint32_t *keys, float *dst)
{
    const size_t per_image = (size_t)c * hw, copies = (size_t)b * n;
    const uint32_t bits = sr_rng_float_bits(sigma);
    SR_CHECK(per_image / 4 <= UINT32_MAX, "an image of %zu values is beyond the noise streams' 2^34", per_image);
#pragma omp parallel for schedule(static) num_threads(threads_of(be)) if (worth_threads(copies * per_image))
    for (size_t j = 0; j < copies; j++) {
        const float *src = x + (j / n) * per_image;
        for (size_t e = 0; e < per_image; e += 4) {
            float z[4] = {0};
            if (sigma != 0.0f) sr_rng_gaussian_block(seed, domain, keys[j / n], (uint32_t)(j % n), bits,
                (uint32_t)(e / 4), z);
            for (size_t q = e; q < e + 4 && q < per_image; q++)
                dst[((q / hw) * copies + j) * hw + q % hw] = sigma != 0.0f ? src[q] + sigma * z[q - e] : src[q];
        }
    }
}

static double cpu_dot(const sr_backend *be, size_t count, const float *a, const float *b)
{
    double sum = 0.0;
#pragma omp parallel for schedule(static) reduction(+ : sum) num_threads(threads_of(be)) if (worth_threads(count))
    for (size_t i = 0; i < count; i++) sum += (double)a[i] * b[i];
    return sum;
}

static void cpu_axpby(const sr_backend *be, size_t count, float alpha, const float *src, float beta, float *dst)
{
    if (beta == 0.0f) {
#pragma omp parallel for schedule(static) num_threads(threads_of(be)) if (worth_threads(count))
        for (size_t i = 0; i < count; i++) dst[i] = alpha * src[i];
        return;
    }
#pragma omp parallel for schedule(static) num_threads(threads_of(be)) if (worth_threads(count))
    for (size_t i = 0; i < count; i++) dst[i] = alpha * src[i] + beta * dst[i];
}

static void cpu_adam(const sr_backend *be, float *param, const float *grad, float *m, float *v, size_t count,
                     float lr, float beta1, float beta2, float eps, long step)
{
    const double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    const float step_size = (float)(lr / bc1), inv_sqrt_bc2 = (float)(1.0 / sqrt(bc2));
#pragma omp parallel for schedule(static) num_threads(threads_of(be)) if (worth_threads(count))
    for (size_t i = 0; i < count; i++) {
        const float g = grad[i];
        m[i] = beta1 * m[i] + (1.0f - beta1) * g;
        v[i] = beta2 * v[i] + (1.0f - beta2) * g * g;
        param[i] -= step_size * m[i] / (sqrtf(v[i]) * inv_sqrt_bc2 + eps);
    }
}

static void cpu_adam_masked(const sr_backend *be, float *param, const float *grad, float *m, float *v, int c, int n,
                            int hw, const uint8_t *active, double lr, float beta1, float beta2, float eps, long step)
{
    const double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    const size_t planes = (size_t)c * n;
#pragma omp parallel for schedule(static) num_threads(threads_of(be)) if (worth_threads(planes * hw))
    for (size_t plane = 0; plane < planes; plane++) {
        if (!active[plane % n]) continue;
        for (size_t e = plane * hw; e < (plane + 1) * hw; e++) {
            const float g = grad[e];
            m[e] = beta1 * m[e] + (1.0f - beta1) * g;
            v[e] = beta2 * v[e] + (1.0f - beta2) * g * g;
            param[e] -= (float)(lr * (m[e] / bc1) / (sqrt(v[e] / bc2) + eps));
        }
    }
}

#ifdef SEMREP_WITH_DNNL
static sr_dnnl *dnnl_of(const sr_backend *be) { return ((cpu_ctx *)be->ctx)->dnnl; }

static bool cpu_conv3x3_forward(const sr_backend *be, const float *x, int c, int n, int h, int w, const float *weight,
                                int k, float *y)
{
    return sr_dnnl_conv3x3_forward(dnnl_of(be), x, c, n, h, w, weight, k, y);
}

static bool cpu_conv3x3_backward_data(const sr_backend *be, const float *dy, int c, int n, int h, int w,
                                      const float *weight, int k, float *dx)
{
    return sr_dnnl_conv3x3_backward_data(dnnl_of(be), dy, c, n, h, w, weight, k, dx);
}

static bool cpu_conv3x3_backward_weights(const sr_backend *be, const float *x, int c, int n, int h, int w,
                                         const float *dy, int k, float *dweight)
{
    return sr_dnnl_conv3x3_backward_weights(dnnl_of(be), x, c, n, h, w, dy, k, dweight);
}

static void cpu_forget(const sr_backend *be, const void *p, size_t bytes) { sr_dnnl_forget(dnnl_of(be), p, bytes); }
#endif

static void cpu_destroy(sr_backend *be)
{
#ifdef SEMREP_WITH_DNNL
    sr_dnnl_free(dnnl_of(be));
#endif
    free(be->ctx);
    free(be);
}

static const sr_backend_ops cpu_ops = {
    .name = "cpu",
    .host_memory = true,
    .destroy = cpu_destroy,
    .describe = cpu_describe,
    .kernels = cpu_kernels,
    .alloc = cpu_alloc,
    .release = cpu_release,
    .to_device = cpu_copy,
    .to_host = cpu_copy,
    .zero = cpu_zero,
    .sync = cpu_sync,
    .gemm = cpu_gemm,
    .gemm_batched = cpu_gemm_batched,
    .nchw_to_cnhw = cpu_nchw_to_cnhw,
    .cnhw_to_nchw = cpu_cnhw_to_nchw,
    .im2col3x3 = cpu_im2col3x3,
    .col2im3x3 = cpu_col2im3x3,
    .winograd_weights = cpu_winograd_weights,
    .winograd_input = cpu_winograd_input,
    .winograd_output = cpu_winograd_output,
#ifdef SEMREP_WITH_DNNL
    .conv3x3_forward = cpu_conv3x3_forward,
    .conv3x3_backward_data = cpu_conv3x3_backward_data,
    .conv3x3_backward_weights = cpu_conv3x3_backward_weights,
    .forget = cpu_forget,
#endif
    .unit_forward = cpu_unit_forward,
    .unit_backward = cpu_unit_backward,
    .convt_scatter = cpu_convt_scatter,
    .convt_gather = cpu_convt_gather,
    .pool2x2 = cpu_pool2x2,
    .pool2x2_backward = cpu_pool2x2_backward,
    .plane_means = cpu_plane_means,
    .plane_means_backward = cpu_plane_means_backward,
    .noisy_copies = cpu_noisy_copies,
    .dot = cpu_dot,
    .axpby = cpu_axpby,
    .memory_bytes = cpu_memory_bytes,
    .adam = cpu_adam,
    .adam_masked = cpu_adam_masked,
};

void sr_backend_cpu_prepare(char **argv)
{
    /* Debian's OpenBLAS 0.3.21 does not recognise the newest Xeons and falls
     * back to its SSE3 (Prescott) kernels, three times slower. It reads
     * OPENBLAS_CORETYPE only when it loads, so set it and start again. */
    const char *core = openblas_get_corename();
    if (getenv("OPENBLAS_CORETYPE") || !core || strcmp(core, "Prescott") ||
        !__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return;
    setenv("OPENBLAS_CORETYPE", "Haswell", 1);
    execv("/proc/self/exe", argv);
    unsetenv("OPENBLAS_CORETYPE"); /* could not start again: go on as we are */
}

void sr_backend_cpu_default_threads(int threads)
{
    omp_set_num_threads(threads);
    openblas_set_num_threads(threads);
}

sr_backend *sr_backend_cpu_new(int threads)
{
    cpu_ctx *ctx = SR_CALLOC(1, sizeof *ctx, "a CPU backend");
    ctx->threads = threads > 0 ? threads : omp_get_max_threads();
#ifdef SEMREP_WITH_DNNL
    ctx->dnnl = sr_dnnl_new(ctx->threads);
#endif
    sr_backend *be = SR_MALLOC(sizeof *be, "a CPU backend");
    *be = (sr_backend){.ops = &cpu_ops, .ctx = ctx};
    return be;
}
