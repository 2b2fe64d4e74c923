/* Every op of the CUDA backend against the CPU backend, the reference: two
 * instances side by side, the same random inputs through both, the largest difference relative to the
 * largest magnitude of the CPU's result printed per op. The GPU sums in a
 * different order (and cuBLAS in its own), so agreement is to rounding:
 * TOL for FP32. Outputs a kernel overwrites start as the same random values
 * on both sides, so an element the GPU fails to write (a zero of the padding,
 * say) or writes outside its range shows. Exits 77 (skipped) when no GPU is
 * visible. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "test_util.h"

#define TOL 1e-5

static sr_backend *cpu, *gpu;

/* One array on both sides: host (the CPU backend's memory) and device. */
typedef struct {
    float *host, *dev;
    size_t n;
} pair;

static pair pair_new(size_t n, unsigned stream, float lo, float hi)
{
    pair p = {malloc(sizeof(float) * (n ? n : 1)), sr_be_alloc(gpu, sizeof(float) * (n ? n : 1)), n};
    CU_ASSERT_FATAL(p.host && p.dev);
    sr_test_uniform(stream, lo, hi, n, p.host);
    sr_be_to_device(gpu, p.dev, p.host, sizeof(float) * n);
    return p;
}

static void pair_free(pair *p)
{
    free(p->host);
    sr_be_release(gpu, p->dev);
}

/* The device copy against the host copy; prints and asserts. */
static void agree(const char *what, const pair *p)
{
    float *back = malloc(sizeof(float) * (p->n ? p->n : 1));
    sr_be_to_host(gpu, back, p->dev, sizeof(float) * p->n);
    const double d = sr_max_rel_diff(back, p->host, p->n);
    printf("\n    %-40s max rel diff %.2e", what, d);
    CU_ASSERT(d < TOL);
    free(back);
}

static void test_gemm(void)
{
    const int m = 67, n = 129, k = 301;
    for (int t = 0; t < 8; t++) {
        /* t & 4: beta 0 and leading dimensions past the operands' widths (the
         * engine's strided slices); the padding must come back untouched */
        const bool ta = t & 1, tb = t & 2;
        const int pad = t & 4 ? 7 : 0;
        const float beta = t & 4 ? 0.0f : 0.25f;
        const int lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
        pair a = pair_new((size_t)(ta ? k : m) * lda, 1, -1, 1), b = pair_new((size_t)(tb ? n : k) * ldb, 2, -1, 1),
             c = pair_new((size_t)m * ldc, 3, -1, 1);
        sr_be_gemm(cpu, ta, tb, m, n, k, 0.5f, a.host, lda, b.host, ldb, beta, c.host, ldc);
        sr_be_gemm(gpu, ta, tb, m, n, k, 0.5f, a.dev, lda, b.dev, ldb, beta, c.dev, ldc);
        char what[64];
        snprintf(what, sizeof what, "gemm %c%c, beta %g, ld + %d", ta ? 'T' : 'N', tb ? 'T' : 'N', beta, pad);
        agree(what, &c);
        pair_free(&a), pair_free(&b), pair_free(&c);
    }
}

static void test_gemm_batched(void)
{
    /* four transposed products at strides past their sizes: the gaps too */
    const int m = 33, n = 75, k = 130, count = 4;
    const sr_gemm_strides stride = {(size_t)k * m + 3, (size_t)n * k + 5, (size_t)m * n + 7};
    pair a = pair_new(count * stride.a, 6, -1, 1), b = pair_new(count * stride.b, 7, -1, 1),
         c = pair_new(count * stride.c, 8, -1, 1);
    sr_be_gemm_batched(cpu, count, stride, true, true, m, n, k, 0.5f, a.host, m, b.host, k, 0.25f, c.host, n);
    sr_be_gemm_batched(gpu, count, stride, true, true, m, n, k, 0.5f, a.dev, m, b.dev, k, 0.25f, c.dev, n);
    agree("gemm_batched TT, 4 products", &c);
    pair_free(&a), pair_free(&b), pair_free(&c);
}

static void test_layout(void)
{
    const int n = 5, c = 3, hw = 37;
    pair x = pair_new((size_t)n * c * hw, 4, -1, 1), y = pair_new((size_t)n * c * hw, 5, -1, 1);
    sr_be_nchw_to_cnhw(cpu, x.host, n, c, hw, y.host);
    sr_be_nchw_to_cnhw(gpu, x.dev, n, c, hw, y.dev);
    agree("nchw_to_cnhw", &y);
    sr_be_cnhw_to_nchw(cpu, y.host, n, c, hw, x.host);
    sr_be_cnhw_to_nchw(gpu, y.dev, n, c, hw, x.dev);
    agree("cnhw_to_nchw", &x);
    pair_free(&x), pair_free(&y);
}

static void test_unfold(void)
{
    const int c = 3, n = 4, h = 6, w = 10, i0 = 1, i1 = 3;
    const size_t cols = (size_t)(i1 - i0) * h * w;
    pair x = pair_new((size_t)c * n * h * w, 6, -1, 1), col = pair_new(9 * c * cols, 7, -1, 1);
    sr_be_im2col3x3(cpu, x.host, c, n, h, w, i0, i1, col.host);
    sr_be_im2col3x3(gpu, x.dev, c, n, h, w, i0, i1, col.dev);
    agree("im2col3x3 (images 1..2 of 4)", &col);
    pair g = pair_new(9 * c * cols, 8, -1, 1);
    sr_be_col2im3x3(cpu, g.host, c, n, h, w, i0, i1, x.host);
    sr_be_col2im3x3(gpu, g.dev, c, n, h, w, i0, i1, x.dev);
    agree("col2im3x3, accumulating", &x);
    pair_free(&x), pair_free(&col), pair_free(&g);
}

static void test_winograd(void)
{
    const int k = 5, c = 3, n = 3, h = 8, w = 6, i0 = 1, i1 = 3;
    const size_t tiles = (size_t)(i1 - i0) * (h / 2) * (w / 2);
    pair wt = pair_new((size_t)k * c * 9, 9, -1, 1), u = pair_new(16 * (size_t)k * c, 10, -1, 1);
    sr_be_winograd_weights(cpu, wt.host, k, c, u.host);
    sr_be_winograd_weights(gpu, wt.dev, k, c, u.dev);
    agree("winograd_weights", &u);
    pair x = pair_new((size_t)c * n * h * w, 11, -1, 1), v = pair_new(16 * c * tiles, 12, -1, 1);
    sr_be_winograd_input(cpu, x.host, c, n, h, w, i0, i1, v.host);
    sr_be_winograd_input(gpu, x.dev, c, n, h, w, i0, i1, v.dev);
    agree("winograd_input", &v);
    pair m = pair_new(16 * k * tiles, 13, -1, 1), y = pair_new((size_t)k * n * h * w, 14, -1, 1);
    sr_be_winograd_output(cpu, m.host, k, n, h, w, i0, i1, y.host);
    sr_be_winograd_output(gpu, m.dev, k, n, h, w, i0, i1, y.dev);
    agree("winograd_output", &y);
    pair_free(&wt), pair_free(&u), pair_free(&x), pair_free(&v), pair_free(&m), pair_free(&y);
}

/* The fused tail forward and backward, for one normalisation; with `nulls`
 * no bias, dgamma or dbias (NULL). On the small shape k * hw and n * hw
 * exceed the reduction block (512), so each thread of the per-image and
 * per-channel sums loops; on the large one each channel's gradient is cut
 * into slices (9, the last one shorter) summed by a second kernel. */
static void unit_case(const char *name, sr_norm norm, bool relu, bool nulls, bool large)
{
    const int k = large ? 3 : 6, n = large ? 5 : 3, hw = large ? 1000 : 200;
    const size_t count = (size_t)k * n * hw;
    pair u = pair_new(count, 15, -1, 1), a = pair_new(count, 16, -1, 1), stats = pair_new(3 * n, 17, -1, 1);
    pair bias = pair_new(k, 18, -0.5f, 0.5f), gamma = pair_new(k, 19, 0.5f, 2), sd = pair_new(k, 20, 0.5f, 2);
    sr_unit hu = {.k = k, .n = n, .hw = hw, .norm = norm, .relu = relu, .bias = nulls ? NULL : bias.host,
                  .gamma = gamma.host, .running_sd = sd.host};
    sr_unit du = {.k = k, .n = n, .hw = hw, .norm = norm, .relu = relu, .bias = nulls ? NULL : bias.dev,
                  .gamma = gamma.dev, .running_sd = sd.dev};
    char what[80];
    sr_be_unit_forward(cpu, &hu, u.host, a.host, stats.host);
    sr_be_unit_forward(gpu, &du, u.dev, a.dev, stats.dev);
    snprintf(what, sizeof what, "unit_forward %s: u + bias", name);
    agree(what, &u);
    snprintf(what, sizeof what, "unit_forward %s: a", name);
    agree(what, &a);
    snprintf(what, sizeof what, "unit_forward %s: stats", name); /* untouched but for the layer norm */
    agree(what, &stats);
    /* dgamma and dbias: when NULL is passed, the arrays must come back as they were */
    pair da = pair_new(count, 21, -1, 1), dgamma = pair_new(k, 22, -1, 1), dbias = pair_new(k, 23, -1, 1);
    sr_be_unit_backward(cpu, &hu, u.host, a.host, stats.host, da.host, nulls ? NULL : dgamma.host, nulls ? NULL : dbias.host);
    sr_be_unit_backward(gpu, &du, u.dev, a.dev, stats.dev, da.dev, nulls ? NULL : dgamma.dev, nulls ? NULL : dbias.dev);
    snprintf(what, sizeof what, "unit_backward %s: du", name);
    agree(what, &da);
    snprintf(what, sizeof what, "unit_backward %s: stats", name);
    agree(what, &stats);
    snprintf(what, sizeof what, "unit_backward %s: dgamma", name);
    agree(what, &dgamma);
    snprintf(what, sizeof what, "unit_backward %s: dbias", name);
    agree(what, &dbias);
    /* inference: a == u, the output over its input */
    pair w = pair_new(count, 24, -1, 1);
    sr_be_unit_forward(cpu, &hu, w.host, w.host, stats.host);
    sr_be_unit_forward(gpu, &du, w.dev, w.dev, stats.dev);
    snprintf(what, sizeof what, "unit_forward %s, in place", name);
    agree(what, &w);
    pair_free(&u), pair_free(&a), pair_free(&stats), pair_free(&bias), pair_free(&gamma), pair_free(&sd);
    pair_free(&da), pair_free(&dgamma), pair_free(&dbias), pair_free(&w);
}

static void test_units(void)
{
    unit_case("layer norm + ReLU", SR_NORM_LAYER, true, false, false);
    unit_case("batch norm + ReLU", SR_NORM_BATCH, true, false, false);
    unit_case("bias + ReLU", SR_NORM_NONE, true, false, false);
    unit_case("bias only", SR_NORM_NONE, false, false, false);
    unit_case("layer norm, NULLs", SR_NORM_LAYER, false, true, false);
    unit_case("batch norm, NULLs", SR_NORM_BATCH, false, true, false);
    unit_case("ReLU, NULLs", SR_NORM_NONE, true, true, false);
    unit_case("layer norm + ReLU, sliced", SR_NORM_LAYER, true, false, true);
    unit_case("batch norm, sliced, NULLs", SR_NORM_BATCH, false, true, true);
}

static void test_convt(void)
{
    const int k = 4, n = 3, h = 5, w = 7;
    const size_t cols = (size_t)n * h * w;
    pair col = pair_new(4 * k * cols, 24, -1, 1), bias = pair_new(k, 25, -1, 1), y = pair_new(4 * k * cols, 26, -1, 1);
    sr_be_convt_scatter(cpu, col.host, bias.host, k, n, h, w, y.host);
    sr_be_convt_scatter(gpu, col.dev, bias.dev, k, n, h, w, y.dev);
    agree("convt_scatter", &y);
    pair dy = pair_new(4 * k * cols, 27, -1, 1), dbias = pair_new(k, 28, -1, 1);
    sr_be_convt_gather(cpu, dy.host, k, n, h, w, col.host, dbias.host);
    sr_be_convt_gather(gpu, dy.dev, k, n, h, w, col.dev, dbias.dev);
    agree("convt_gather: dcol", &col);
    agree("convt_gather: dbias, accumulating", &dbias);
    sr_be_convt_scatter(cpu, dy.host, NULL, k, n, h, w, y.host);
    sr_be_convt_scatter(gpu, dy.dev, NULL, k, n, h, w, y.dev);
    agree("convt_scatter, no bias", &y);
    sr_be_convt_gather(cpu, y.host, k, n, h, w, col.host, NULL);
    sr_be_convt_gather(gpu, y.dev, k, n, h, w, col.dev, NULL);
    agree("convt_gather, no dbias", &col);
    pair_free(&col), pair_free(&bias), pair_free(&y), pair_free(&dy), pair_free(&dbias);
}

static void test_pool_means(void)
{
    const int c = 3, n = 4, h = 6, w = 8, hw = h * w;
    pair x = pair_new((size_t)c * n * hw, 29, -1, 1), y = pair_new((size_t)c * n * hw / 4, 30, -1, 1);
    sr_be_pool2x2(cpu, x.host, c, n, h, w, y.host);
    sr_be_pool2x2(gpu, x.dev, c, n, h, w, y.dev);
    agree("pool2x2", &y);
    sr_be_pool2x2_backward(cpu, y.host, c, n, h, w, x.host);
    sr_be_pool2x2_backward(gpu, y.dev, c, n, h, w, x.dev);
    agree("pool2x2_backward, accumulating", &x);
    pair means = pair_new((size_t)c * n, 31, -1, 1);
    sr_be_plane_means(cpu, x.host, c, n, hw, means.host);
    sr_be_plane_means(gpu, x.dev, c, n, hw, means.dev);
    agree("plane_means", &means);
    sr_be_plane_means_backward(cpu, means.host, c, n, hw, x.host);
    sr_be_plane_means_backward(gpu, means.dev, c, n, hw, x.dev);
    agree("plane_means_backward, accumulating", &x);
    pair_free(&x), pair_free(&y), pair_free(&means);
}

static void test_vectors(void)
{
    const size_t count = 1000003;
    pair a = pair_new(count, 32, -1, 1), b = pair_new(count, 33, -1, 1);
    const double dc = sr_be_dot(cpu, count, a.host, b.host), dg = sr_be_dot(gpu, count, a.dev, b.dev);
    printf("\n    %-40s %.9g vs %.9g", "dot of 1000003", dg, dc);
    CU_ASSERT(fabs(dg - dc) < 1e-6); /* exact products summed in double: ~1e-11 apart */
    for (size_t i = 0; i < count; i++) b.host[i] = NAN; /* beta 0 must not read dst */
    sr_be_to_device(gpu, b.dev, b.host, sizeof(float) * count);
    sr_be_axpby(cpu, count, 0.5f, a.host, 0.0f, b.host);
    sr_be_axpby(gpu, count, 0.5f, a.dev, 0.0f, b.dev);
    agree("axpby, beta 0", &b);
    sr_be_axpby(cpu, count, -2.0f, a.host, 0.75f, b.host);
    sr_be_axpby(gpu, count, -2.0f, a.dev, 0.75f, b.dev);
    agree("axpby, beta 0.75", &b);
    pair p = pair_new(count, 34, -1, 1), m = pair_new(count, 35, -0.1f, 0.1f), v = pair_new(count, 36, 0, 0.01f);
    for (long step = 1; step <= 3; step++) {
        sr_be_adam(cpu, p.host, a.host, m.host, v.host, count, 1e-3f, 0.9f, 0.999f, 1e-8f, step);
        sr_be_adam(gpu, p.dev, a.dev, m.dev, v.dev, count, 1e-3f, 0.9f, 0.999f, 1e-8f, step);
    }
    agree("adam, 3 steps: parameters", &p);
    agree("adam, 3 steps: first moments", &m);
    agree("adam, 3 steps: second moments", &v);
    /* the projection's: images 1 and 3 of 4 (CNHW) frozen */
    const int c = 3, n = 4, hw = (int)(count / 12);
    const uint8_t active[4] = {1, 0, 1, 0};
    uint8_t *d_active = sr_be_alloc(gpu, sizeof active);
    CU_ASSERT_FATAL(d_active != NULL);
    sr_be_to_device(gpu, d_active, active, sizeof active);
    for (long step = 1; step <= 3; step++) {
        sr_be_adam_masked(cpu, p.host, a.host, m.host, v.host, c, n, hw, active, 1e-2, 0.9f, 0.999f, 1e-8f, step);
        sr_be_adam_masked(gpu, p.dev, a.dev, m.dev, v.dev, c, n, hw, d_active, 1e-2, 0.9f, 0.999f, 1e-8f, step);
    }
    agree("masked adam, 3 steps: parameters", &p);
    agree("masked adam, 3 steps: first moments", &m);
    agree("masked adam, 3 steps: second moments", &v);
    sr_be_release(gpu, d_active);
    pair_free(&a), pair_free(&b), pair_free(&p), pair_free(&m), pair_free(&v);
}

int main(void)
{
    char err[256];
    const int devices = sr_backend_cuda_devices(err, sizeof err);
    if (devices < 0) { /* a broken driver fails: it is not a CPU machine */
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (devices == 0) {
        printf("SKIPPED: no GPU visible (%s); the CUDA backend was built but not run\n", err);
        return 77;
    }
    cpu = sr_backend_cpu_new(0);
    gpu = sr_backend_cuda_new(0, "fp32", err, sizeof err);
    if (!gpu) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    char text[256];
    sr_be_describe(gpu, text, sizeof text);
    printf("GPU: %s\n", text);
    const sr_test tests[] = {
        {"gemm, the four transposes", test_gemm},
        {"gemm_batched", test_gemm_batched},
        {"NCHW <-> CNHW", test_layout},
        {"im2col / col2im", test_unfold},
        {"Winograd transforms", test_winograd},
        {"conv unit tails, forward and backward", test_units},
        {"ConvTranspose scatter / gather", test_convt},
        {"pooling and plane means", test_pool_means},
        {"dot, axpby, Adam", test_vectors},
        {NULL, NULL},
    };
    const int rc = sr_test_run("cuda_backend", tests);
    sr_backend_free(gpu);
    sr_backend_free(cpu);
    return rc;
}
