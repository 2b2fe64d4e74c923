/* oneDNN's 3x3 convolutions for the CPU backend (core/backend_dnnl.h): one
 * context per backend instance, and the running of a plan (core/dnnl_plan.h).
 *
 * oneDNN JIT-compiles its kernels for the instruction set it finds (AVX-512
 * where Debian's OpenBLAS 0.3.21 is held to AVX2) and runs them in its
 * blocked layout nChw16c. The engine keeps CNHW, so each chunk of images is
 * reordered into that layout, convolved, and its result reordered back.
 *
 * Determinism: oneDNN's own threading is not bit-stable (its Winograd kernel
 * sums in another order with 1, 2 or 3 threads for some shapes:
 * tests/bench/onednn_conv.c). So no convolution threads inside oneDNN here:
 * the images go in chunks whose size depends on the shape alone, each chunk
 * runs on one thread with primitives made for one thread, and a chunk's
 * result is the same whichever thread runs it and however many there are.
 * Only the weights' reorder uses oneDNN's threads: it makes each value
 * alone (kept_weights, below). The weight
 * gradient, a sum over all images, is summed per chunk and the chunks' sums
 * are added to dweight in chunk order, whatever the threads (the tests
 * backend and unet_model check 1, 2 and 3 threads). */
#include "core/backend_dnnl.h"

#include "core/dnnl_plan.h"

#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One thread's stream and buffer (the plan says what lies where in it). */
typedef struct {
    dnnl_stream_t stream;
    char *buf;
    size_t bytes;
} thread_ws;

/* One layer's weights in a primitive's layout, kept across calls. phi,
 * the projection and the samplers run every layer with the same weights
 * thousands of times, and oneDNN's Winograd weight transform is slow: made
 * at every call, on one thread, it took 37% of oneDNN's time in `semrep
 * bench` at the paper's shape (verbose timings). An entry is found by the
 * caller's pointer and the layout, and used only while the oihw weights it
 * was made from (kept, compared byte for byte) equal those given, so that
 * training, which changes them every step, gets them made again. Dropped
 * when the memory they came from is released (sr_dnnl_forget). */
typedef struct {
    const float *source;      /* the caller's weights */
    dnnl_memory_desc_t layout;
    size_t plain_bytes;
    float *plain;             /* a copy of *source when blk was made */
    char *blk;                /* *source in layout */
} kept_weights;

struct sr_dnnl {
    dnnl_engine_t engine;
    int threads;
    thread_ws *ws;            /* [threads] */
    kept_weights *kept;       /* every layer's weights met so far, per layout */
    int nkept;
    sr_dnnl_plan *plans;      /* every shape met so far, kept */
    int nplans;
    char last_impl[64];
};

static void grow(char **buf, size_t *have, size_t need, const char *what)
{
    if (need <= *have) return;
    free(*buf);
    *buf = aligned_alloc(64, (need + 63) / 64 * 64);
    SR_CHECK(*buf, "out of memory: cannot allocate %zu bytes for oneDNN's %s", need, what);
    *have = need;
}

sr_dnnl *sr_dnnl_new(int threads)
{
    sr_dnnl *d = SR_CALLOC(1, sizeof *d, "oneDNN's context");
    d->threads = threads;
    SR_DNNL(dnnl_engine_create(&d->engine, dnnl_cpu, 0));
    d->ws = SR_CALLOC((size_t)threads, sizeof *d->ws, "oneDNN's thread workspaces");
    for (int t = 0; t < threads; t++)
        SR_DNNL(dnnl_stream_create(&d->ws[t].stream, d->engine, dnnl_stream_default_flags));
    return d;
}

void sr_dnnl_free(sr_dnnl *d)
{
    if (!d) return;
    for (int i = 0; i < d->nplans; i++) sr_dnnl_plan_destroy(&d->plans[i]);
    free(d->plans);
    for (int t = 0; t < d->threads; t++) {
        SR_DNNL(dnnl_stream_destroy(d->ws[t].stream));
        free(d->ws[t].buf);
    }
    free(d->ws);
    for (int i = 0; i < d->nkept; i++) {
        free(d->kept[i].plain);
        free(d->kept[i].blk);
    }
    free(d->kept);
    SR_DNNL(dnnl_engine_destroy(d->engine));
    free(d);
}

/* The plan for a shape: found, or made; NULL when oneDNN has none. */
static sr_dnnl_plan *plan_for(sr_dnnl *d, sr_dnnl_kind kind, int cin, int n, int h, int w, int cout)
{
    for (int i = 0; i < d->nplans; i++) {
        sr_dnnl_plan *p = &d->plans[i];
        if (p->kind == kind && p->cin == cin && p->cout == cout && p->n == n && p->h == h && p->w == w)
            return p->ok ? p : NULL;
    }
    d->plans = SR_REALLOC(d->plans, (size_t)d->nplans + 1, sizeof *d->plans, "oneDNN convolution plans");
    sr_dnnl_plan *p = &d->plans[d->nplans++];
    *p = (sr_dnnl_plan){.kind = kind, .cin = cin, .cout = cout, .n = n, .h = h, .w = w};
    sr_dnnl_plan_make(p, d->engine, d->threads);
    if (!p->ok) return NULL;
    for (int t = 0; t < d->threads; t++) grow(&d->ws[t].buf, &d->ws[t].bytes, p->bytes, "convolution buffers");
    return p;
}

static void set(dnnl_memory_t m, const void *data) { SR_DNNL(dnnl_memory_set_data_handle(m, (void *)data)); }

static void execute(dnnl_primitive_t prim, dnnl_stream_t stream, int nargs, const dnnl_exec_arg_t *args,
                    const char *what)
{
    const dnnl_status_t st = dnnl_primitive_execute(prim, stream, nargs, args);
    SR_CHECK(st == dnnl_success, "oneDNN: running the %s failed (%s)", what, dnnl_status2str(st));
}

static void reorder(const sr_dnnl_tensor *t, const sr_dnnl_mems *m, int r, dnnl_stream_t stream, const char *what)
{
    const dnnl_exec_arg_t args[3] = {{DNNL_ARG_FROM, t->out ? m->blk[r] : m->user[r]},
                                     {DNNL_ARG_TO, t->out ? m->user[r] : m->blk[r]},
                                     {DNNL_ARG_SCRATCHPAD, m->rpad[r]}};
    execute(t->reorder, stream, 3, args, what);
}

static const char *const tensor_name[3][T_COUNT] = {
    [SR_DNNL_FWD] = {"input", "output", "weights"},
    [SR_DNNL_BWD_DATA] = {"output gradient", "input gradient", "weights"},
    [SR_DNNL_BWD_WEIGHTS] = {"input", "output gradient", "weight gradient"},
};

/* The kept entry for weight in layout, made empty when new. */
static kept_weights *kept_for(sr_dnnl *d, const float *weight, const dnnl_memory_desc_t *layout, size_t plain_bytes)
{
    for (int i = 0; i < d->nkept; i++) {
        kept_weights *k = &d->kept[i];
        if (k->source == weight && k->plain_bytes == plain_bytes && dnnl_memory_desc_equal(&k->layout, layout))
            return k;
    }
    d->kept = SR_REALLOC(d->kept, (size_t)d->nkept + 1, sizeof *d->kept, "oneDNN's kept weights");
    kept_weights *k = &d->kept[d->nkept++];
    *k = (kept_weights){.source = weight, .layout = *layout, .plain_bytes = plain_bytes};
    size_t have = 0;
    grow(&k->blk, &have, dnnl_memory_desc_get_size(layout), "convolution weights");
    return k;
}

void sr_dnnl_forget(sr_dnnl *d, const void *p, size_t bytes)
{
    const uintptr_t lo = (uintptr_t)p;
    int kept = 0;
    for (int i = 0; i < d->nkept; i++) {
        kept_weights *k = &d->kept[i];
        if ((uintptr_t)k->source - lo < bytes) {
            free(k->plain);
            free(k->blk);
        } else {
            d->kept[kept++] = *k;
        }
    }
    d->nkept = kept;
}

/* Forward and input gradient: the weights in each slot's layout, made on
 * thread 0's stream by all the instance's threads before the chunks, unless
 * kept from an earlier call with the same weights; wblk[s] is where slot s's
 * lie. Called outside any parallel region. */
static void prepare_weights(sr_dnnl *d, const sr_dnnl_plan *p, const float *weight, const void *wblk[2])
{
    const size_t plain_bytes = (size_t)p->cout * p->cin * 9 * sizeof(float);
    const int before = omp_get_max_threads();
    omp_set_num_threads(d->threads); /* what the reorders were made for */
    for (int s = 0; s < 2; s++) {
        const sr_dnnl_slot *sl = &p->slot[s];
        wblk[s] = weight;
        if (!sl->conv || !sl->t[T_W].reorder) continue;
        kept_weights *k = kept_for(d, weight, &sl->t[T_W].blk, plain_bytes);
        wblk[s] = k->blk;
        if (k->plain && !memcmp(k->plain, weight, plain_bytes)) continue;
        if (!k->plain) k->plain = SR_MALLOC(plain_bytes, "a copy of a layer's weights");
        memcpy(k->plain, weight, plain_bytes);
        const sr_dnnl_mems *m = &p->mems[s];
        set(m->user[T_W], weight);
        set(m->blk[T_W], k->blk);
        set(m->rpad[T_W], d->ws[0].buf + p->at_pad);
        reorder(&sl->t[T_W], m, T_W, d->ws[0].stream, "weight reorder (oihw to the primitive's)");
        SR_DNNL(dnnl_stream_wait(d->ws[0].stream));
    }
    omp_set_num_threads(before);
}

/* Chunk q on the calling thread t alone: reads in0 (and in1, the weight
 * gradient's dy), writes out (forward: y; input gradient: dx +=) or thread
 * t's partial weight gradient. */
static void run_chunk(const sr_dnnl *d, const sr_dnnl_plan *p, int t, int q, const float *in0, const float *in1,
                      float *out, const void *const wblk[2])
{
    const size_t hw = (size_t)p->h * p->w, i0 = (size_t)q * p->chunk;
    const int s = i0 + (size_t)p->chunk > (size_t)p->n ? 1 : 0;
    const sr_dnnl_slot *sl = &p->slot[s];
    const sr_dnnl_mems *m = &p->mems[t * 2 + s];
    char *buf = d->ws[t].buf;
    const dnnl_stream_t stream = d->ws[t].stream;
    const bool bwd_w = p->kind == SR_DNNL_BWD_WEIGHTS;
    const void *user[T_COUNT] = {in0 + i0 * hw, (bwd_w ? in1 : out) + i0 * hw, buf + p->at_partial};
    set(m->pad, buf + p->at_pad);
    for (int r = 0; r < T_COUNT; r++) {
        const sr_dnnl_tensor *tn = &sl->t[r];
        set(m->rpad[r], buf + p->at_pad);
        if (r == T_W && !bwd_w) {
            set(m->blk[r], wblk[s]);
            continue;
        }
        set(m->user[r], user[r]);
        if (!tn->reorder) continue;
        set(m->blk[r], buf + p->at[r]);
        if (!tn->out) reorder(tn, m, r, stream, tensor_name[p->kind][r]);
    }
    dnnl_exec_arg_t args[T_COUNT + 1];
    for (int r = 0; r < T_COUNT; r++) args[r] = (dnnl_exec_arg_t){sl->t[r].arg, m->blk[r]};
    args[T_COUNT] = (dnnl_exec_arg_t){DNNL_ARG_SCRATCHPAD, m->pad};
    execute(sl->conv, stream, T_COUNT + 1, args, "convolution");
    for (int r = 0; r < T_COUNT; r++)
        if (sl->t[r].out && sl->t[r].reorder) reorder(&sl->t[r], m, r, stream, tensor_name[p->kind][r]);
    SR_DNNL(dnnl_stream_wait(stream));
}

static bool convolve(sr_dnnl *d, sr_dnnl_kind kind, const float *in, int cin, int n, int h, int w,
                     const float *weight, int cout, float *out)
{
    const sr_dnnl_plan *p = plan_for(d, kind, cin, n, h, w, cout);
    if (!p) return false;
    snprintf(d->last_impl, sizeof d->last_impl, "%s", p->impl);
    const int chunks = (n + p->chunk - 1) / p->chunk;
    const void *wblk[2];
    prepare_weights(d, p, weight, wblk);
#pragma omp parallel num_threads(d->threads)
    {
        omp_set_num_threads(1); /* oneDNN's loops inside a chunk: this thread alone */
#pragma omp for schedule(static)
        for (int q = 0; q < chunks; q++) run_chunk(d, p, omp_get_thread_num(), q, in, NULL, out, wblk);
    }
    return true;
}

bool sr_dnnl_conv3x3_forward(sr_dnnl *d, const float *x, int cin, int n, int h, int w, const float *weight, int cout,
                             float *y)
{
    return convolve(d, SR_DNNL_FWD, x, cin, n, h, w, weight, cout, y);
}

bool sr_dnnl_conv3x3_backward_data(sr_dnnl *d, const float *dy, int cin, int n, int h, int w, const float *weight,
                                   int cout, float *dx)
{
    return convolve(d, SR_DNNL_BWD_DATA, dy, cin, n, h, w, weight, cout, dx);
}

bool sr_dnnl_conv3x3_backward_weights(sr_dnnl *d, const float *x, int cin, int n, int h, int w, const float *dy,
                                      int cout, float *dweight)
{
    const sr_dnnl_plan *p = plan_for(d, SR_DNNL_BWD_WEIGHTS, cin, n, h, w, cout);
    if (!p) return false;
    snprintf(d->last_impl, sizeof d->last_impl, "%s", p->impl);
    const int chunks = (n + p->chunk - 1) / p->chunk, threads = d->threads;
    const size_t count = (size_t)cout * cin * 9;
    /* Rounds of one chunk a thread, each chunk's sum in its thread's
     * partial; then dweight += the partials in chunk order, element by
     * element: the same sums in the same order for any thread count. */
#pragma omp parallel num_threads(threads)
    {
        omp_set_num_threads(1);
        const int t = omp_get_thread_num();
        for (int q0 = 0; q0 < chunks; q0 += threads) {
            if (q0 + t < chunks) run_chunk(d, p, t, q0 + t, x, dy, NULL, NULL);
#pragma omp barrier
            const int round = chunks - q0 < threads ? chunks - q0 : threads;
#pragma omp for schedule(static)
            for (size_t e = 0; e < count; e++) {
                float sum = dweight[e];
                for (int j = 0; j < round; j++) sum += ((const float *)(d->ws[j].buf + p->at_partial))[e];
                dweight[e] = sum;
            }
        }
    }
    return true;
}

static const char *isa_name(dnnl_cpu_isa_t isa)
{
    switch (isa) {
    case dnnl_cpu_isa_sse41: return "sse41";
    case dnnl_cpu_isa_avx: return "avx";
    case dnnl_cpu_isa_avx2: return "avx2";
    case dnnl_cpu_isa_avx2_vnni: return "avx2_vnni";
    case dnnl_cpu_isa_avx512_core: return "avx512_core";
    case dnnl_cpu_isa_avx512_core_vnni: return "avx512_core_vnni";
    case dnnl_cpu_isa_avx512_core_bf16: return "avx512_core_bf16";
    case dnnl_cpu_isa_avx512_core_amx: return "avx512_core_amx";
    default: return "other";
    }
}

void sr_dnnl_kernels(char *text, size_t len)
{
    const dnnl_version_t *v = dnnl_version();
    snprintf(text, len, "oneDNN %d.%d.%d %s", v->major, v->minor, v->patch, isa_name(dnnl_get_effective_cpu_isa()));
}

void sr_dnnl_describe(const sr_dnnl *d, char *text, size_t len)
{
    const dnnl_version_t *v = dnnl_version();
    snprintf(text, len, "oneDNN %d.%d.%d 3x3 convolutions, ISA %s%s%s", v->major, v->minor, v->patch,
             isa_name(dnnl_get_effective_cpu_isa()), d->last_impl[0] ? ", last kernel " : "", d->last_impl);
}
