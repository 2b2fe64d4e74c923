/* The blind UNet (SPEC.md section 1) as a plan of operations over named
 * parameters, run on a backend.
 *
 * sr_unet holds the shape, the parameter table (names are the PyTorch
 * state-dict keys of the authors' layout) and the parameters themselves in
 * one arena. sr_unet_work holds everything one batch size needs: every
 * activation, the convolution scratch, the block means and, in gradient mode,
 * the activation gradients, in one arena. Nothing is allocated while a batch
 * runs.
 *
 * What the engine gives:
 *   sr_unet_forward(.., SR_UPTO_OUTPUT)  D(y) and every block mean abar_b
 *   sr_unet_forward(.., SR_UPTO_MID)     encoder + middle only: abar_0..abar_mid
 *   sr_unet_backward                     gradients of a loss of the output and/or
 *                                        of the block means, with respect to the
 *                                        parameters and/or the input image */
#ifndef SEMREP_NN_UNET_H
#define SEMREP_NN_UNET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/arena.h"
#include "core/backend.h"
#include "nn/unet_shape.h"

typedef struct {
    char name[48];        /* PyTorch state-dict key, e.g. "encoder.0.3.gammas" */
    int ndim, dims[4];    /* PyTorch's shape */
    size_t offset, count; /* floats, within the parameter arena */
    bool trainable;       /* false for buffers (running_sd) */
} sr_param;

typedef enum { SR_OP_CONV, SR_OP_POOL, SR_OP_UP } sr_op_kind;

typedef struct {
    sr_op_kind kind;
    int level;                            /* input size is (h >> level, w >> level) */
    int cin, cout;
    int src, dst;                         /* activation slots */
    int weight, bias, gamma, running_sd;  /* parameter indices; -1 when absent */
    sr_norm norm;
    bool relu;
    int block;                            /* block whose output this op completes; -1 if none */
} sr_op;

/* An activation buffer: its own storage, or a channel range of another
 * (concatenation is the upsampled half and the skip half of one buffer). */
typedef struct {
    int c, level;
    int parent, c0; /* parent slot and first channel in it; parent -1: own storage */
} sr_slot;

typedef struct {
    sr_unet_shape shape;
    int nparams, nops, nslots;
    sr_param *params;
    sr_op *ops;
    sr_slot *slots;
    size_t param_floats;    /* size of the parameter (and gradient) arena, padded */
    size_t trainable_count; /* what a parameter count reports */
    int output_slot, mid_last_op;
    int nblocks, block_offset[2 * SR_MAX_LEVELS + 1]; /* channel prefix sums of the blocks */
    const sr_backend *be;   /* set by sr_unet_alloc */
    sr_arena param_arena;
    float *param;           /* backend memory, param_floats */
} sr_unet;

typedef enum { SR_UPTO_MID, SR_UPTO_OUTPUT } sr_upto;

/* Builds the plan and the parameter table; no parameter memory yet. Returns
 * -1 with a one-line reason in err for an unusable shape. */
int sr_unet_plan(sr_unet *net, const sr_unet_shape *shape, char *err, size_t errlen);
/* Allocates the parameters (zeroed) on a backend. */
void sr_unet_alloc(sr_unet *net, const sr_backend *be);
void sr_unet_free(sr_unet *net);

const sr_param *sr_unet_param(const sr_unet *net, const char *name); /* NULL if absent */
/* SPEC.md's initialisation, from Philox streams keyed by (seed, parameter index). */
void sr_unet_init_weights(sr_unet *net, uint32_t seed);

typedef struct {
    const sr_unet *net;
    int n, h, w;
    int capacity;          /* the most images it was allocated for (sr_unet_work_resize) */
    bool grad;
    sr_arena arena;
    float **act, **dact;   /* per slot; dact only in gradient mode */
    float *dact_base;      /* dact storage, zeroed by one call per backward */
    size_t dact_floats;
    float **pre, **stats;  /* per op: a conv's pre-norm output (gradient mode) and its [3n] stats */
    float *col;
    size_t col_floats;
    float *means;          /* block b at means + n * block_offset[b], laid out [n][C_b] */
    float *d_means, *d_output; /* gradient mode: where callers put the incoming gradients */
    float *staging;        /* n x in x h x w, for NCHW <-> CNHW */
} sr_unet_work;

/* 0 when n images of h x w can run as one batch; -1 with the reason. */
int sr_unet_work_check(const sr_unet *net, int n, int h, int w, char *err, size_t errlen);
/* Bytes a workspace for n images of h x w needs (refuse before allocating). */
size_t sr_unet_work_bytes(const sr_unet *net, int n, int h, int w, bool grad);
void sr_unet_work_init(sr_unet_work *wk, const sr_unet *net, int n, int h, int w, bool grad);
void sr_unet_work_free(sr_unet_work *wk);
/* Lays the workspace out again for n images, 1 to the n it was made for,
 * in the memory it has: a batch of another size runs without allocating,
 * exactly as in a workspace made for n (the same scratch chunks). */
void sr_unet_work_resize(sr_unet_work *wk, int n);

/* Host NCHW <-> backend CNHW buffers of in_channels x h x w images (the input,
 * the output, d_output and the input gradient all have this shape). */
void sr_unet_put_images(sr_unet_work *wk, const float *host_nchw, float *dev_cnhw);
void sr_unet_get_images(sr_unet_work *wk, const float *dev_cnhw, float *host_nchw);
float *sr_unet_input(const sr_unet_work *wk);
float *sr_unet_output(const sr_unet_work *wk);
float *sr_unet_input_grad(const sr_unet_work *wk);
size_t sr_unet_means_count(const sr_unet_work *wk); /* floats in means */
size_t sr_unet_image_floats(const sr_unet_work *wk); /* floats in n images of in_channels x h x w */

void sr_unet_forward(const sr_unet *net, sr_unet_work *wk, sr_upto upto);
/* Back-propagates from the output (d_output, NULL for none; needs a forward
 * SR_UPTO_OUTPUT) or from the middle block, adding d_means (NULL for none) at
 * every block. Parameter gradients accumulate into param_grad (backend memory
 * laid out like net->param; NULL to skip them); the input gradient is written
 * to sr_unet_input_grad() when input_grad is set. */
void sr_unet_backward(const sr_unet *net, sr_unet_work *wk, sr_upto from, const float *d_output,
                      const float *d_means, float *param_grad, bool input_grad);

/* D(y) of the workspace's n images, host NCHW in and out. */
void sr_unet_denoise(const sr_unet *net, sr_unet_work *wk, const float *host_y, float *host_out);

/* Floating-point operations (two per multiply-add) of the convolutions of
 * one image through the ops a forward runs (benchmarks). */
double sr_unet_forward_flops(const sr_unet *net, int h, int w, sr_upto upto);

#endif
