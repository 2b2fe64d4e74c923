/* Backends are instances: CPU backends with different thread counts live
 * side by side in one process, each keeps its own count (and leaves the
 * process's OpenMP default alone), and a table of op cases gives the same
 * bits on each: every output element is one thread's, every sum runs in a
 * fixed order, products are cut into fixed tiles. The cases are sized past
 * the point where the loops start their threads (32768 values) and the
 * products past one tile (256 columns or rows), the convolutions past one
 * chunk of oneDNN's (16 images). Not dot: its reduction's
 * order follows the threads, and only losses, which are reported, use it. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/backend.h"
#include "core/rng.h"
#include "nn/layers.h"
#include "test_util.h"

/* One case: runs ops on be from fixed inputs and writes every output it
 * makes (count floats) to out. */
typedef struct {
    const char *name;
    size_t count;
    void (*run)(const sr_backend *be, float *out);
} op_case;

static float *uniform(unsigned stream, size_t n)
{
    float *p = malloc(sizeof(float) * n);
    CU_ASSERT_FATAL(p != NULL);
    sr_test_uniform(stream, -1, 1, n, p);
    return p;
}

enum { GM = 300, GN = 700, GK = 64 };

static void gemm_case(const sr_backend *be, float *out)
{
    /* by columns (n >= m: three tiles of op(B)), then by rows, transposed */
    float *a = uniform(1, (size_t)GN * GK), *b = uniform(2, (size_t)GN * GK);
    memset(out, 0, sizeof(float) * 2 * GM * GN);
    sr_be_gemm(be, false, false, GM, GN, GK, 0.5f, a, GK, b, GN, 0.0f, out, GN);
    sr_be_gemm(be, true, true, GN, GM, GK, 1.0f, a, GN, b, GK, 0.0f, out + (size_t)GM * GN, GM);
    free(a), free(b);
}

/* Three products of one shape, transposed, at strides past their sizes;
 * small enough (one tile each) that only the batch gives the threads work. */
enum { BM = 96, BN = 200, BK = 40, BATCH = 3 };
static const sr_gemm_strides batch_strides = {(size_t)BK * BM + 5, (size_t)BN * BK + 3, (size_t)BM * BN + 7};

static void gemm_batched_case(const sr_backend *be, float *out)
{
    float *a = uniform(14, BATCH * batch_strides.a), *b = uniform(15, BATCH * batch_strides.b);
    sr_test_uniform(16, -1, 1, BATCH * batch_strides.c, out);
    sr_be_gemm_batched(be, BATCH, batch_strides, true, false, BM, BN, BK, 0.5f, a, BM, b, BN, 0.25f, out, BN);
    free(a), free(b);
}

enum { C = 4, N = 8, H = 32, W = 32, HW = H * W };

static void unfold_case(const sr_backend *be, float *out)
{
    float *x = uniform(3, (size_t)C * N * HW), *col = out, *dx = out + 9 * (size_t)C * N * HW;
    sr_be_im2col3x3(be, x, C, N, H, W, 0, N, col);
    memcpy(dx, x, sizeof(float) * C * N * HW);
    sr_be_col2im3x3(be, col, C, N, H, W, 0, N, dx);
    free(x);
}

static void winograd_case(const sr_backend *be, float *out)
{
    const size_t tiles = (size_t)N * (H / 2) * (W / 2);
    float *x = uniform(4, (size_t)C * N * HW), *v = out, *y = out + 16 * (size_t)C * tiles;
    sr_be_winograd_input(be, x, C, N, H, W, 0, N, v);
    memcpy(y, x, sizeof(float) * C * N * HW);
    sr_be_winograd_output(be, v, C, N, H, W, 0, N, y); /* the input's tiles as if they were products */
    free(x);
}

enum { K = 16 };

static void unit_case(const sr_backend *be, float *out)
{
    const size_t count = (size_t)K * N * HW;
    float *u = out, *a = u + count, *da = a + count, *stats = da + count, *dgamma = stats + 3 * N, *dbias = dgamma + K;
    float *bias = uniform(5, K), *gamma = uniform(6, K), *x = uniform(7, count), *g = uniform(8, count);
    memcpy(u, x, sizeof(float) * count);
    memcpy(da, g, sizeof(float) * count);
    memset(dgamma, 0, sizeof(float) * 2 * K);
    const sr_unit unit = {.k = K, .n = N, .hw = HW, .norm = SR_NORM_LAYER, .relu = true, .bias = bias, .gamma = gamma};
    sr_be_unit_forward(be, &unit, u, a, stats);
    sr_be_unit_backward(be, &unit, u, a, stats, da, dgamma, dbias);
    free(bias), free(gamma), free(x), free(g);
}

static void convt_pool_case(const sr_backend *be, float *out)
{
    const size_t count = (size_t)K * N * HW; /* ConvTranspose's output at H x W from H/2 x W/2 */
    float *col = uniform(9, count), *bias = uniform(10, K), *y = out, *dcol = y + count, *dbias = dcol + count;
    float *pooled = dbias + K, *means = pooled + count / 4;
    sr_be_convt_scatter(be, col, bias, K, N, H / 2, W / 2, y);
    memset(dbias, 0, sizeof(float) * K);
    sr_be_convt_gather(be, y, K, N, H / 2, W / 2, dcol, dbias);
    sr_be_pool2x2(be, y, K, N, H, W, pooled);
    sr_be_plane_means(be, y, K, N, HW, means);
    sr_be_plane_means_backward(be, means, K, N, HW, y);
    free(col), free(bias);
}

static void noise_case(const sr_backend *be, float *out)
{
    const uint32_t keys[N] = {3, 1, 4, 1, 5, 9, 2, 6};
    float *x = uniform(11, (size_t)N * HW), *dev = sr_be_alloc(be, sizeof(float) * (size_t)N * HW);
    float *dst = sr_be_alloc(be, sizeof(float) * (size_t)N * 4 * HW);
    CU_ASSERT_FATAL(dev && dst);
    sr_be_to_device(be, dev, x, sizeof(float) * (size_t)N * HW);
    sr_be_noisy_copies(be, dev, N, 4, 1, HW, 0.5f, 2024, SR_RNG_PHI_NOISE, keys, dst);
    sr_be_to_host(be, out, dst, sizeof(float) * (size_t)N * 4 * HW);
    sr_be_release(be, dev), sr_be_release(be, dst);
    free(x);
}

enum { COUNT = K * N * HW };

static void vector_case(const sr_backend *be, float *out)
{
    float *g = uniform(12, COUNT), *p = out, *m = p + COUNT, *v = m + COUNT;
    sr_test_uniform(13, -1, 1, COUNT, p);
    memset(m, 0, sizeof(float) * 2 * COUNT);
    sr_be_axpby(be, COUNT, 0.5f, g, 0.25f, p);
    for (long step = 1; step <= 2; step++) sr_be_adam(be, p, g, m, v, COUNT, 1e-3f, 0.9f, 0.999f, 1e-8f, step);
    const uint8_t active[N] = {1, 0, 1, 1, 0, 1, 1, 1};
    sr_be_adam_masked(be, p, g, m, v, K, N, HW, active, 1e-2, 0.9f, 0.999f, 1e-8f, 3);
    free(g);
}

/* The 3x3 convolution through nn/ (the backend's own where it has one: the
 * CPU's oneDNN), forward, input and weight gradient, on n images that make
 * several chunks of oneDNN's (at most 16 images), the last one shorter. */
static void conv_run(const sr_backend *be, int cin, int cout, int n, int h, float *out)
{
    const size_t xs = (size_t)cin * n * h * h, ys = (size_t)cout * n * h * h, ws = (size_t)cout * cin * 9;
    float *x = uniform(20, xs), *wt = uniform(21, ws), *dy = uniform(22, ys);
    float *y = out, *dx = y + ys, *dw = dx + xs;
    const size_t colf = sr_conv3x3_scratch(cin, cout, n, h, h, (size_t)1 << 20);
    float *col = malloc(sizeof(float) * colf);
    CU_ASSERT_FATAL(col != NULL);
    sr_conv3x3_forward(be, x, cin, n, h, h, wt, cout, y, col, colf);
    memcpy(dx, x, sizeof(float) * xs); /* both gradients accumulate */
    sr_test_uniform(23, -1, 1, ws, dw);
    sr_conv3x3_backward(be, x, cin, n, h, h, wt, cout, dy, dw, dx, col, colf);
    free(x), free(wt), free(dy), free(col);
}

#define CONV_COUNT(cin, cout, n, h) ((size_t)((cin) + (cout)) * (n) * (h) * (h) + (size_t)(cout) * (cin) * 9)

static void conv_case(const sr_backend *be, float *out) { conv_run(be, 16, 24, 40, 16, out); }
static void conv_first_case(const sr_backend *be, float *out) { conv_run(be, 1, 16, 20, 32, out); }

static const op_case cases[] = {
    {"gemm, three tiles by columns and by rows", 2 * (size_t)GM * GN, gemm_case},
    {"batched gemm, three small products", BATCH * batch_strides.c, gemm_batched_case},
    {"im2col3x3 and col2im3x3", 10 * (size_t)C * N * HW, unfold_case},
    {"Winograd input and output", 16 * (size_t)C * N * HW / 4 + (size_t)C * N * HW, winograd_case},
    {"layer norm + ReLU tail, forward and backward", 3 * (size_t)K * N * HW + 3 * N + 2 * K, unit_case},
    {"ConvTranspose, pooling, plane means", 2 * (size_t)K * N * HW + K + (size_t)K * N * HW / 4 + K * N,
     convt_pool_case},
    {"noisy copies", (size_t)N * 4 * HW, noise_case},
    {"axpby, Adam, masked Adam", 3 * (size_t)COUNT, vector_case},
    {"conv3x3 16->24, 40 images, forward and backward", CONV_COUNT(16, 24, 40, 16), conv_case},
    {"conv3x3 1->16, 20 images, forward and backward", CONV_COUNT(1, 16, 20, 32), conv_first_case},
};

/* The backend's own convolutions (the CPU's oneDNN, when built with it)
 * against nn/'s unfolding and Winograd over the same instance's other ops:
 * the same numbers to float rounding (another algorithm, another order). */
static void test_own_convolutions(void)
{
    sr_backend *cpu = sr_backend_cpu_new(2);
    sr_backend_ops plain_ops = *cpu->ops;
    plain_ops.conv3x3_forward = NULL;
    plain_ops.conv3x3_backward_data = NULL;
    plain_ops.conv3x3_backward_weights = NULL;
    const sr_backend plain = {.ops = &plain_ops, .ctx = cpu->ctx};
    char text[256];
    sr_be_describe(cpu, text, sizeof text);
    printf("\n    %s", text);
    const struct {
        int cin, cout, n, h;
    } shapes[] = {{16, 24, 40, 16}, {1, 16, 20, 32}, {64, 32, 18, 8}};
    for (size_t q = 0; q < sizeof shapes / sizeof *shapes; q++) {
        const int cin = shapes[q].cin, cout = shapes[q].cout, n = shapes[q].n, h = shapes[q].h;
        const size_t ys = (size_t)cout * n * h * h, xs = (size_t)cin * n * h * h, ws = (size_t)cout * cin * 9;
        float *a = malloc(sizeof(float) * CONV_COUNT(cin, cout, n, h));
        float *b = malloc(sizeof(float) * CONV_COUNT(cin, cout, n, h));
        CU_ASSERT_FATAL(a && b);
        conv_run(cpu, cin, cout, n, h, a);
        conv_run(&plain, cin, cout, n, h, b);
        const double dy = sr_max_rel_diff(a, b, ys), dx = sr_max_rel_diff(a + ys, b + ys, xs),
                     dw = sr_max_rel_diff(a + ys + xs, b + ys + xs, ws);
        printf("\n    conv3x3 %d->%d at %dx%d, %d images, own against nn/'s: y %.1e, dx %.1e, dweight %.1e", cin,
               cout, h, h, n, dy, dx, dw);
        CU_ASSERT(dy < 1e-5 && dx < 1e-5 && dw < 1e-5);
        free(a), free(b);
    }
    sr_backend_free(cpu);
}

/* The forward and input gradient of a convolution on be, into y and dx
 * (dx zeroed first; the weight gradient is made and dropped). */
static void conv_pass(const sr_backend *be, const float *x, const float *wt, const float *dy, int cin, int cout,
                      int n, int h, float *y, float *dx)
{
    const size_t colf = sr_conv3x3_scratch(cin, cout, n, h, h, (size_t)1 << 20);
    float *col = malloc(sizeof(float) * colf), *dw = calloc((size_t)cout * cin * 9, sizeof(float));
    CU_ASSERT_FATAL(col && dw);
    sr_conv3x3_forward(be, x, cin, n, h, h, wt, cout, y, col, colf);
    memset(dx, 0, sizeof(float) * (size_t)cin * n * h * h);
    sr_conv3x3_backward(be, x, cin, n, h, h, wt, cout, dy, dw, dx, col, colf);
    free(col), free(dw);
}

/* A backend may keep a layer's weights in its convolutions' layout across
 * calls (the CPU's oneDNN does, found by their address): weights changed in
 * place, as training changes them, must give the convolution of the new
 * weights, the same bits as an instance that never saw the old ones; and so
 * must new weights after the old ones' memory was forgotten and released. */
static void test_weights_changed_in_place(void)
{
    const int cin = 16, cout = 24, n = 20, h = 8;
    const size_t xs = (size_t)cin * n * h * h, ys = (size_t)cout * n * h * h, ws = (size_t)cout * cin * 9;
    float *x = uniform(30, xs), *wt = uniform(31, ws), *dy = uniform(32, ys);
    float *y[3], *dx[3]; /* the old weights, the new ones kept, the new ones fresh */
    for (int i = 0; i < 3; i++) {
        y[i] = malloc(sizeof(float) * ys), dx[i] = malloc(sizeof(float) * xs);
        CU_ASSERT_FATAL(y[i] && dx[i]);
    }
    sr_backend *kept = sr_backend_cpu_new(2), *fresh = sr_backend_cpu_new(2);
    conv_pass(kept, x, wt, dy, cin, cout, n, h, y[0], dx[0]);
    for (size_t i = 0; i < ws; i++) wt[i] = 0.5f - wt[i];
    conv_pass(kept, x, wt, dy, cin, cout, n, h, y[1], dx[1]);
    conv_pass(fresh, x, wt, dy, cin, cout, n, h, y[2], dx[2]);
    CU_ASSERT(memcmp(y[0], y[2], sizeof(float) * ys) != 0);
    CU_ASSERT(memcmp(y[1], y[2], sizeof(float) * ys) == 0);
    CU_ASSERT(memcmp(dx[1], dx[2], sizeof(float) * xs) == 0);
    /* released weights are forgotten: new ones, wherever they lie, are convolved as new */
    sr_be_forget(kept, wt, sizeof(float) * ws);
    free(wt);
    wt = uniform(33, ws);
    conv_pass(kept, x, wt, dy, cin, cout, n, h, y[1], dx[1]);
    conv_pass(fresh, x, wt, dy, cin, cout, n, h, y[2], dx[2]);
    CU_ASSERT(memcmp(y[1], y[2], sizeof(float) * ys) == 0);
    CU_ASSERT(memcmp(dx[1], dx[2], sizeof(float) * xs) == 0);
    sr_backend_free(kept), sr_backend_free(fresh);
    for (int i = 0; i < 3; i++) free(y[i]), free(dx[i]);
    free(x), free(wt), free(dy);
}

/* Instances with 1, 2 and 3 threads, made together and used in turns. */
static void test_side_by_side(void)
{
    sr_backend *be[3];
    for (int t = 0; t < 3; t++) be[t] = sr_backend_cpu_new(t + 1);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float *got[3];
        for (int t = 0; t < 3; t++) {
            got[t] = malloc(sizeof(float) * cases[c].count);
            CU_ASSERT_FATAL(got[t] != NULL);
            memset(got[t], 0xff, sizeof(float) * cases[c].count); /* NaNs where a case fails to write */
            cases[c].run(be[t], got[t]);
        }
        size_t differing = 0;
        for (int t = 1; t < 3; t++) differing += memcmp(got[t], got[0], sizeof(float) * cases[c].count) != 0;
        printf("\n    %-48s %zu values, %s", cases[c].name, cases[c].count,
               differing ? "DIFFERENT between thread counts" : "the same bits with 1, 2 and 3 threads");
        CU_ASSERT_EQUAL(differing, 0);
        for (int t = 0; t < 3; t++) free(got[t]);
    }
    for (int t = 0; t < 3; t++) sr_backend_free(be[t]);
}

/* A batched gemm gives the bits of the same products made one by one, each
 * within rounding of a plain sum in double, and leaves the gaps between its
 * outputs alone. */
static void test_batched_as_one_by_one(void)
{
    sr_backend *be = sr_backend_cpu_new(2);
    const size_t count = BATCH * batch_strides.c;
    float *batched = malloc(sizeof(float) * count), *single = uniform(16, count), *before = uniform(16, count);
    float *a = uniform(14, BATCH * batch_strides.a), *b = uniform(15, BATCH * batch_strides.b);
    CU_ASSERT_FATAL(batched != NULL);
    gemm_batched_case(be, batched);
    for (int j = 0; j < BATCH; j++)
        sr_be_gemm(be, true, false, BM, BN, BK, 0.5f, a + j * batch_strides.a, BM, b + j * batch_strides.b, BN, 0.25f,
                   single + j * batch_strides.c, BN);
    CU_ASSERT_EQUAL(memcmp(batched, single, sizeof(float) * count), 0);
    double worst = 0;
    for (size_t at = 0; at < count; at++) {
        const size_t j = at / batch_strides.c, r = at % batch_strides.c / BN, q = at % batch_strides.c % BN;
        double want = before[at]; /* a gap keeps its value */
        if (r < BM) {
            double sum = 0;
            for (int t = 0; t < BK; t++)
                sum += (double)a[j * batch_strides.a + (size_t)t * BM + r] * b[j * batch_strides.b + (size_t)t * BN + q];
            want = 0.5 * sum + 0.25 * before[at];
        }
        const double d = fabs(batched[at] - want);
        worst = d > worst ? d : worst;
    }
    printf("\n    batched against one by one: %s; against double: max abs diff %.2e",
           memcmp(batched, single, sizeof(float) * count) ? "DIFFERENT" : "the same bits", worst);
    CU_ASSERT(worst < 1e-5);
    free(batched), free(single), free(before), free(a), free(b);
    sr_backend_free(be);
}

/* Each instance says its own count; making one changes neither another's
 * nor the process's OpenMP default. */
static void test_own_threads(void)
{
    const int before = omp_get_max_threads();
    sr_backend *one = sr_backend_cpu_new(1), *three = sr_backend_cpu_new(3), *deflt = sr_backend_cpu_new(0);
    char a[256], b[256], c[256];
    sr_be_describe(one, a, sizeof a);
    sr_be_describe(three, b, sizeof b);
    sr_be_describe(deflt, c, sizeof c);
    printf("\n    %s\n    %s\n    %s", a, b, c);
    CU_ASSERT_PTR_NOT_NULL(strstr(a, ", 1 threads"));
    CU_ASSERT_PTR_NOT_NULL(strstr(b, ", 3 threads"));
    char want[32];
    snprintf(want, sizeof want, ", %d threads", before);
    CU_ASSERT_PTR_NOT_NULL(strstr(c, want));
    CU_ASSERT_EQUAL(omp_get_max_threads(), before);
    CU_ASSERT_STRING_EQUAL(sr_be_name(one), "cpu");
    CU_ASSERT(sr_be_host_memory(one));
    sr_backend_free(one), sr_backend_free(three), sr_backend_free(deflt);
    sr_backend_free(NULL);
}

int main(void)
{
    const sr_test tests[] = {
        {"CPU instances with 1, 2 and 3 threads give the same bits", test_side_by_side},
        {"an instance keeps its own thread count", test_own_threads},
        {"a batched gemm as its products one by one", test_batched_as_one_by_one},
        {"the backend's own convolutions agree with nn/'s", test_own_convolutions},
        {"weights changed in place give the new weights' convolution", test_weights_changed_in_place},
        {NULL, NULL},
    };
    return sr_test_run("backend", tests);
}
