/* One oneDNN convolution shape made ready to run (core/backend_dnnl.c runs
 * it): the primitives for its chunks of images, each made for one thread
 * (but the weights' reorders, made for all), and where each tensor of a
 * chunk lies in a thread's buffer. Private to
 * the two oneDNN files of core/. */
#ifndef SEMREP_CORE_DNNL_PLAN_H
#define SEMREP_CORE_DNNL_PLAN_H

#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/check.h"

/* A oneDNN call that must succeed: otherwise the run ends naming it. */
#define SR_DNNL(call)                                                                                                  \
    do {                                                                                                               \
        const dnnl_status_t st_ = (call);                                                                              \
        SR_CHECK(st_ == dnnl_success, "oneDNN: %s failed (%s)", #call, dnnl_status2str(st_));                          \
    } while (0)

typedef enum { SR_DNNL_FWD, SR_DNNL_BWD_DATA, SR_DNNL_BWD_WEIGHTS } sr_dnnl_kind;

/* The tensors of one chunk, by role:
 *   FWD:          IN0 src (x, cin),      IN1 dst (y, cout, written),   W weights (read)
 *   BWD_DATA:     IN0 diff_dst (dy),     IN1 diff_src (dx, cin, +=),   W weights (read)
 *   BWD_WEIGHTS:  IN0 src (x),           IN1 diff_dst (dy, read),      W diff_weights (the chunk's sum) */
enum { T_IN0, T_IN1, T_W, T_COUNT };

/* One tensor: the engine's layout (CNHW images, or oihw weights), the
 * primitive's, and the reorder between them (NULL: the same layout). */
typedef struct {
    int arg;                       /* DNNL_ARG_SRC, ... */
    bool out;                      /* the reorder runs primitive -> engine (else engine -> primitive) */
    dnnl_memory_desc_t user, blk;
    dnnl_memory_desc_t pad;        /* the reorder's scratchpad */
    dnnl_primitive_t reorder;
} sr_dnnl_tensor;

/* The primitives for one chunk size. */
typedef struct {
    int images;
    dnnl_primitive_t conv;
    dnnl_memory_desc_t pad;        /* the convolution's scratchpad */
    sr_dnnl_tensor t[T_COUNT];
} sr_dnnl_slot;

/* One thread's memory objects for one slot (handles set before each run). */
typedef struct {
    dnnl_memory_t user[T_COUNT], blk[T_COUNT], rpad[T_COUNT], pad;
} sr_dnnl_mems;

/* A shape: chunks of `chunk` images, the last one `last` (0: all full). */
typedef struct {
    sr_dnnl_kind kind;
    int cin, cout, n, h, w, chunk, last;
    bool ok;                       /* false: oneDNN has no primitive for it */
    sr_dnnl_slot slot[2];          /* full chunks, the last shorter one */
    /* a thread's buffer: the blocked copies of the chunk's tensors (not the
     * forward's and input gradient's weights: core/backend_dnnl.c keeps
     * those), the weight gradient in oihw (BWD_WEIGHTS), then the scratchpads */
    size_t at[T_COUNT], at_partial, at_pad, bytes;
    int threads;
    sr_dnnl_mems *mems;            /* [thread * 2 + slot] */
    char impl[64];
} sr_dnnl_plan;

/* Makes the plan for its shape (kind, cin, cout, n, h, w set), on engine,
 * for `threads` threads: primitives made under one OpenMP thread, the
 * forward's and input gradient's weight reorders for `threads`. plan->ok
 * false when oneDNN has none; the plan then holds nothing to destroy. */
void sr_dnnl_plan_make(sr_dnnl_plan *plan, dnnl_engine_t engine, int threads);
void sr_dnnl_plan_destroy(sr_dnnl_plan *plan);

#endif
