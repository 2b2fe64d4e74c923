/* Probe: the default shape's forward 3x3 convolutions, semrep's own path
 * (sr_conv3x3_forward: im2col or Winograd F(2x2,3x3) over OpenBLAS sgemm in
 * fixed tiles) against oneDNN's convolution_forward (direct and Winograd, in
 * plain nchw and in the layout the primitive picks, usually nChw16c), with
 * the reorders between semrep's CNHW and that layout timed apart. For each
 * oneDNN configuration: is the output bit-identical when the primitive is
 * made and run with 1, 2 and 3 OpenMP threads?
 *
 *   tests/bench/onednn_conv.sh [N] [SECONDS] [all]   (builds and runs this file;
 *   all: the decoder's convolutions too)
 *
 * Not part of the build or the tests: a measurement, which asserts nothing. */
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>

#include "core/backend.h"
#include "core/check.h"
#include "core/clock.h"
#include "nn/layers.h"

#define DNNL(call)                                                                                           \
    do {                                                                                                     \
        dnnl_status_t st_ = (call);                                                                          \
        SR_CHECK(st_ == dnnl_success, "oneDNN: %s failed (%s)", #call, dnnl_status2str(st_));                \
    } while (0)

/* The probe's own oneDNN engine and stream (the backend's are its instance's). */
typedef struct {
    dnnl_engine_t eng;
    dnnl_stream_t strm;
} runtime;

static double least = 0.5;

typedef void (*fn)(void *ctx);

/* median seconds per call of at least 5 timed rounds of >= least/5 s each */
static double timeit(fn f, void *ctx)
{
    f(ctx);
    double t[5];
    for (int r = 0; r < 5; r++) {
        int calls = 0;
        const double s = sr_seconds();
        double e;
        do {
            f(ctx);
            calls++;
            e = sr_seconds() - s;
        } while (e < least / 5);
        t[r] = e / calls;
    }
    for (int i = 0; i < 5; i++)
        for (int j = i + 1; j < 5; j++)
            if (t[j] < t[i]) {
                double x = t[i];
                t[i] = t[j];
                t[j] = x;
            }
    return t[2];
}

typedef struct {
    const sr_backend *be;
    const float *x, *w;
    float *y, *col;
    int cin, cout, n, h;
    size_t col_floats;
} semrep_ctx;

static void run_semrep(void *p)
{
    semrep_ctx *c = p;
    sr_conv3x3_forward(c->be, c->x, c->cin, c->n, c->h, c->h, c->w, c->cout, c->y, c->col, c->col_floats);
}

typedef struct {
    dnnl_stream_t strm;
    dnnl_primitive_t prim;
    int nargs;
    dnnl_exec_arg_t args[4];
} exec_ctx;

static void run_prim(void *p)
{
    exec_ctx *c = p;
    DNNL(dnnl_primitive_execute(c->prim, c->strm, c->nargs, c->args));
    DNNL(dnnl_stream_wait(c->strm));
}

static dnnl_memory_t mem(const runtime *rt, const dnnl_memory_desc_t *md, void *ptr)
{
    dnnl_memory_t m;
    DNNL(dnnl_memory_create(&m, md, rt->eng, ptr ? ptr : DNNL_MEMORY_ALLOCATE));
    return m;
}

static void *mem_ptr(dnnl_memory_t m)
{
    void *p;
    DNNL(dnnl_memory_get_data_handle(m, &p));
    return p;
}

/* A reorder primitive from md a to md b (NULL when oneDNN has none). */
static dnnl_primitive_t reorder(const runtime *rt, const dnnl_memory_desc_t *a, const dnnl_memory_desc_t *b)
{
    dnnl_primitive_desc_t pd;
    if (dnnl_reorder_primitive_desc_create(&pd, a, rt->eng, b, rt->eng, NULL) != dnnl_success) return NULL;
    dnnl_primitive_t p;
    DNNL(dnnl_primitive_create(&p, pd));
    DNNL(dnnl_primitive_desc_destroy(pd));
    return p;
}

typedef struct {
    const char *name;
    dnnl_alg_kind_t alg;
    int blocked; /* 0: nchw src/dst; 1: format any */
} config;

/* One oneDNN convolution made and run at `threads`; writes the output in
 * CNHW to out; returns exec seconds (timed when time != 0), and reorders'. */
static int onednn_conv(const runtime *rt, const config *cf, int threads, const float *x_cnhw, const float *w_oihw, int cin, int cout, int n,
                       int h, float *out_cnhw, int time, double *t_conv, double *t_in, double *t_out, char *impl,
                       size_t impl_len)
{
    omp_set_num_threads(threads);
    const dnnl_dims_t sd = {n, cin, h, h}, dd = {n, cout, h, h}, wd = {cout, cin, 3, 3};
    const dnnl_dims_t cnhw_s = {(dnnl_dim_t)h * h, (dnnl_dim_t)n * h * h, h, 1};
    const dnnl_dims_t cnhw_d = {(dnnl_dim_t)h * h, (dnnl_dim_t)n * h * h, h, 1};
    dnnl_memory_desc_t src_md, dst_md, w_md, src_user, dst_user, w_user;
    const dnnl_format_tag_t tag = cf->blocked ? dnnl_format_tag_any : dnnl_nchw;
    DNNL(dnnl_memory_desc_init_by_tag(&src_md, 4, sd, dnnl_f32, tag));
    DNNL(dnnl_memory_desc_init_by_tag(&dst_md, 4, dd, dnnl_f32, tag));
    DNNL(dnnl_memory_desc_init_by_tag(&w_md, 4, wd, dnnl_f32, dnnl_format_tag_any));
    DNNL(dnnl_memory_desc_init_by_strides(&src_user, 4, sd, dnnl_f32, cnhw_s));
    DNNL(dnnl_memory_desc_init_by_strides(&dst_user, 4, dd, dnnl_f32, cnhw_d));
    DNNL(dnnl_memory_desc_init_by_tag(&w_user, 4, wd, dnnl_f32, dnnl_oihw));
    const dnnl_dims_t one = {1, 1}, pad = {1, 1};
    dnnl_convolution_desc_t cd;
    DNNL(dnnl_convolution_forward_desc_init(&cd, dnnl_forward_inference, cf->alg, &src_md, &w_md, NULL, &dst_md, one,
                                            pad, pad));
    dnnl_primitive_desc_t pd;
    if (dnnl_primitive_desc_create(&pd, &cd, NULL, rt->eng, NULL) != dnnl_success) return -1;
    const char *info;
    DNNL(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &info));
    snprintf(impl, impl_len, "%s", info);
    const dnnl_memory_desc_t *psrc = dnnl_primitive_desc_query_md(pd, dnnl_query_src_md, 0);
    const dnnl_memory_desc_t *pdst = dnnl_primitive_desc_query_md(pd, dnnl_query_dst_md, 0);
    const dnnl_memory_desc_t *pw = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
    dnnl_primitive_t conv;
    DNNL(dnnl_primitive_create(&conv, pd));

    dnnl_memory_t m_xu = mem(rt, &src_user, (void *)x_cnhw), m_yu = mem(rt, &dst_user, out_cnhw),
                  m_wu = mem(rt, &w_user, (void *)w_oihw);
    dnnl_memory_t m_x = mem(rt, psrc, NULL), m_y = mem(rt, pdst, NULL), m_w = mem(rt, pw, NULL);
    dnnl_primitive_t r_in = reorder(rt, &src_user, psrc), r_out = reorder(rt, pdst, &dst_user),
                     r_w = reorder(rt, &w_user, pw);
    SR_CHECK(r_in && r_out && r_w, "oneDNN has no reorder for %s", cf->name);
    exec_ctx ci = {rt->strm, r_in, 2, {{DNNL_ARG_FROM, m_xu}, {DNNL_ARG_TO, m_x}}};
    exec_ctx co = {rt->strm, r_out, 2, {{DNNL_ARG_FROM, m_y}, {DNNL_ARG_TO, m_yu}}};
    exec_ctx cw = {rt->strm, r_w, 2, {{DNNL_ARG_FROM, m_wu}, {DNNL_ARG_TO, m_w}}};
    exec_ctx cc = {rt->strm, conv, 3, {{DNNL_ARG_SRC, m_x}, {DNNL_ARG_WEIGHTS, m_w}, {DNNL_ARG_DST, m_y}}};
    run_prim(&cw);
    run_prim(&ci);
    run_prim(&cc);
    run_prim(&co);
    if (time) {
        *t_conv = timeit(run_prim, &cc);
        *t_in = timeit(run_prim, &ci);
        *t_out = timeit(run_prim, &co);
    }
    (void)mem_ptr;
    dnnl_primitive_destroy(conv);
    dnnl_primitive_destroy(r_in);
    dnnl_primitive_destroy(r_out);
    dnnl_primitive_destroy(r_w);
    dnnl_memory_destroy(m_xu);
    dnnl_memory_destroy(m_yu);
    dnnl_memory_destroy(m_wu);
    dnnl_memory_destroy(m_x);
    dnnl_memory_destroy(m_y);
    dnnl_memory_destroy(m_w);
    dnnl_primitive_desc_destroy(pd);
    return 0;
}

static double max_rel(const float *a, const float *b, size_t count)
{
    double d = 0, m = 0;
    for (size_t i = 0; i < count; i++) {
        d = fmax(d, fabs((double)a[i] - b[i]));
        m = fmax(m, fabs((double)b[i]));
    }
    return d / (m > 0 ? m : 1);
}

int main(int argc, char **argv)
{
    const int n = argc > 1 ? atoi(argv[1]) : 512;
    least = argc > 2 ? atof(argv[2]) : 0.5;
    const int layers[][3] = {{1, 32, 32},    {32, 32, 32},   {32, 64, 16},   {64, 64, 16},
                             {64, 128, 8},   {128, 128, 8},  {128, 256, 4},  {256, 256, 4},
                             /* the decoder's: the concatenation's 2K channels in, then K */
                             {256, 128, 8},  {128, 64, 16},  {64, 32, 32},   {32, 1, 32}};
    const size_t nlayers = argc > 3 && !strcmp(argv[3], "all") ? 12 : 8;
    const config cfs[] = {{"direct nchw", dnnl_convolution_direct, 0},
                          {"direct any", dnnl_convolution_direct, 1},
                          {"winograd any", dnnl_convolution_winograd, 1}};
    const int ncf = sizeof cfs / sizeof cfs[0];
    runtime rt;
    DNNL(dnnl_engine_create(&rt.eng, dnnl_cpu, 0));
    DNNL(dnnl_stream_create(&rt.strm, rt.eng, dnnl_stream_default_flags));
    /* CPU instances with 1, 2 and 3 threads (cpu[1] times), and the same
     * instance without its own convolutions: nn/'s path over the BLAS */
    sr_backend *cpu[4] = {NULL, sr_backend_cpu_new(1), sr_backend_cpu_new(2), sr_backend_cpu_new(3)};
    sr_backend_ops own_ops = *cpu[2]->ops;
    own_ops.conv3x3_forward = NULL;
    const sr_backend own = {.ops = &own_ops, .ctx = cpu[2]->ctx};
    const dnnl_version_t *v = dnnl_version();
    printf("oneDNN %d.%d.%d (%s), max ISA %d; batch %d, 2 threads for the times, median of 5 rounds\n", v->major,
           v->minor, v->patch, v->hash, (int)dnnl_get_effective_cpu_isa(), n);
    printf("%-12s %-13s %9s %9s %9s %9s %7s %6s %9s  %s\n", "conv", "path", "conv ms", "in ms", "out ms", "total",
           "ratio", "det", "vs semrep", "impl");
    double sum_semrep = 0, sum_best = 0, sum_backend = 0;
    for (size_t l = 0; l < nlayers; l++) {
        const int cin = layers[l][0], cout = layers[l][1], h = layers[l][2];
        const size_t xs = (size_t)cin * n * h * h, ys = (size_t)cout * n * h * h, ws = (size_t)cout * cin * 9;
        float *x = SR_MALLOC(xs * sizeof(float), "input"), *w = SR_MALLOC(ws * sizeof(float), "weights");
        float *y0 = SR_MALLOC(ys * sizeof(float), "semrep output"), *y1 = SR_MALLOC(ys * sizeof(float), "output 1");
        float *yt = SR_MALLOC(ys * sizeof(float), "output t");
        srand(7 + (unsigned)l);
        for (size_t i = 0; i < xs; i++) x[i] = (float)rand() / RAND_MAX;
        for (size_t i = 0; i < ws; i++) w[i] = ((float)rand() / RAND_MAX - 0.5f) / sqrtf(9.0f * cin);
        const size_t colf = sr_conv3x3_scratch(cin, cout, n, h, h, (size_t)1 << 22);
        float *col = SR_MALLOC(colf * sizeof(float), "scratch");
        /* the engine's own path: the instance without its oneDNN op */
        semrep_ctx sc = {&own, x, w, y0, col, cin, cout, n, h, colf};
        const double ts = timeit(run_semrep, &sc);
        /* the same with 1, 2 and 3 threads: the same bits? */
        int sdet = 1;
        for (int t = 1; t <= 3; t++) {
            const sr_backend own_t = {.ops = &own_ops, .ctx = cpu[t]->ctx};
            semrep_ctx s2 = sc;
            s2.be = &own_t;
            s2.y = yt;
            run_semrep(&s2);
            if (memcmp(yt, y0, ys * sizeof(float))) sdet = 0;
        }
        char label[32];
        snprintf(label, sizeof label, "%d->%d@%d", cin, cout, h);
        printf("%-12s %-13s %9.3f %9s %9s %9.3f %7s %6s %9s  %s\n", label, "semrep own", ts * 1e3, "", "", ts * 1e3, "1.00",
               sdet ? "yes" : "NO", "", cin >= 8 ? "winograd F(2,3) + sgemm tiles" : "im2col + sgemm tiles");
        sum_semrep += ts;
        double best = ts;
        if (cpu[2]->ops->conv3x3_forward) { /* the backend's op: oneDNN in fixed single-threaded chunks */
            semrep_ctx s3 = sc;
            s3.be = cpu[2];
            s3.y = y1;
            const double tb = timeit(run_semrep, &s3);
            int bdet = 1;
            for (int t = 1; t <= 3; t++) {
                s3.be = cpu[t];
                s3.y = yt;
                run_semrep(&s3);
                if (memcmp(yt, y1, ys * sizeof(float))) bdet = 0;
            }
            char d[256];
            sr_be_describe(cpu[2], d, sizeof d);
            printf("%-12s %-13s %9.3f %9s %9s %9.3f %7.2f %6s %9.1e  %s\n", label, "semrep+dnnl", tb * 1e3, "", "",
                   tb * 1e3, ts / tb, bdet ? "yes" : "NO", max_rel(y1, y0, ys),
                   strstr(d, "last kernel ") ? strstr(d, "last kernel ") + 12 : d);
            sum_backend += tb;
        }
        for (int c = 0; c < ncf; c++) {
            char impl[256] = "";
            double tc = 0, ti = 0, to = 0;
            if (onednn_conv(&rt, &cfs[c], 1, x, w, cin, cout, n, h, y1, 0, NULL, NULL, NULL, impl, sizeof impl)) {
                printf("%-12s %-13s unimplemented\n", label, cfs[c].name);
                continue;
            }
            int det = 1;
            char impl_t[256];
            for (int t = 2; t <= 3; t++) {
                onednn_conv(&rt, &cfs[c], t, x, w, cin, cout, n, h, yt, 0, NULL, NULL, NULL, impl_t, sizeof impl_t);
                if (memcmp(yt, y1, ys * sizeof(float))) det = 0;
                if (strcmp(impl, impl_t)) det = -1;
            }
            onednn_conv(&rt, &cfs[c], 2, x, w, cin, cout, n, h, yt, 1, &tc, &ti, &to, impl_t, sizeof impl_t);
            const double tot = tc + ti + to;
            if (det == 1 && tot < best) best = tot;
            printf("%-12s %-13s %9.3f %9.3f %9.3f %9.3f %7.2f %6s %9.1e  %s\n", label, cfs[c].name, tc * 1e3, ti * 1e3,
                   to * 1e3, tot * 1e3, ts / tot, det == 1 ? "yes" : det == 0 ? "NO" : "impl", max_rel(y1, y0, ys), impl);
        }
        sum_best += best;
        free(x);
        free(w);
        free(y0);
        free(y1);
        free(yt);
        free(col);
        fflush(stdout);
    }
    if (sum_backend > 0)
        printf("all %zu convolutions: semrep's own path %.2f ms, the backend's oneDNN op %.2f ms: %.2fx\n", nlayers,
               sum_semrep * 1e3, sum_backend * 1e3, sum_semrep / sum_backend);
    printf("all %zu convolutions: semrep %.2f ms, best deterministic oneDNN (with reorders) %.2f ms: %.2fx\n",
           nlayers, sum_semrep * 1e3, sum_best * 1e3, sum_semrep / sum_best);
    for (int t = 1; t <= 3; t++) sr_backend_free(cpu[t]);
    dnnl_stream_destroy(rt.strm);
    dnnl_engine_destroy(rt.eng);
    return 0;
}
