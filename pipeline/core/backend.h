/* The compute backend. A backend is an instance: a constant table of
 * operations (one per kind: the CPU's, the CUDA backend's) and a context of
 * its own (the CPU's thread count; a GPU's device, cuBLAS handle, stream and
 * scratch), so that a process may hold several side by side (a test, a CPU
 * and a GPU). Every operation takes the instance first; callers use the
 * sr_be_* wrappers below, never the table's members. The engine (nn/) calls
 * it for every allocation, copy, GEMM and elementwise kernel. The CPU
 * backend (OpenBLAS + OpenMP) is the reference every other backend is tested
 * against; a stage never knows which one runs.
 *
 * Layout conventions for the kernels (docs/architecture.md):
 *   - activations are channel-major, CNHW: channel c of image i at pixel p is
 *     x[(c * n + i) * hw + p]. A "row" is one channel over every image of the
 *     batch, so a convolution is one GEMM over all images.
 *   - "+=" in a comment means the kernel accumulates into its output.
 *   - pointers are backend (device) memory unless said otherwise.
 * Every kernel may run threaded; none allocates. An instance is used from
 * one thread at a time. */
#ifndef SEMREP_CORE_BACKEND_H
#define SEMREP_CORE_BACKEND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus /* the CUDA backend includes this from C++ */
extern "C" {
#endif

/* The normalisation that follows a convolution (SPEC.md section 1). */
typedef enum {
    SR_NORM_NONE = 0, /* no normalisation (first conv of block 0, final conv) */
    SR_NORM_LAYER,    /* x / (std over C,H,W of the image + 1e-5) * gamma_c */
    SR_NORM_BATCH,    /* inference form of the batch variant: x / running_sd_c * gamma_c */
} sr_norm;

#define SR_NORM_EPS 1e-5f

/* One conv unit's element-wise tail: bias, normalisation, ReLU. */
typedef struct {
    int k, n, hw;             /* channels, images, pixels per image */
    sr_norm norm;
    bool relu;
    const float *bias;        /* [k] or NULL */
    const float *gamma;       /* [k], for SR_NORM_LAYER and SR_NORM_BATCH */
    const float *running_sd;  /* [k], for SR_NORM_BATCH */
} sr_unit;

typedef struct sr_backend sr_backend;

/* The distances, in floats, between successive products' operands in a
 * batched gemm. */
typedef struct {
    size_t a, b, c;
} sr_gemm_strides;

/* The operations of one kind of backend, each taking the instance first. */
typedef struct sr_backend_ops {
    const char *name;         /* "cpu", "cuda" */
    /* true when backend memory is host memory (the CPU): a caller may then
     * hand it to MPI or read it directly; otherwise it goes through to_host. */
    bool host_memory;
    /* Releases the instance and everything its context holds. */
    void (*destroy)(sr_backend *be);
    /* One line on what runs the products, e.g. the BLAS, its kernels, threads. */
    void (*describe)(const sr_backend *be, char *text, size_t len);
    /* Optional (NULL: nothing): what, beyond the inputs, fixes the results'
     * last bits and is chosen by the processor, e.g. the CPU's "oneDNN 2.6.3
     * avx512_core_bf16 convolutions, OpenBLAS Haswell sgemm". Outputs'
     * fingerprints hash it, so that rows from other kernels never mix. */
    void (*kernels)(const sr_backend *be, char *text, size_t len);

    /* Memory: alloc returns NULL on failure (the caller names what failed). */
    void *(*alloc)(const sr_backend *be, size_t bytes);
    void (*release)(const sr_backend *be, void *p);
    /* Optional (NULL: the backend keeps nothing made from memory):
     * [p, p + bytes) is about to be released; drops what the backend keeps
     * that was made from it (the CPU's convolution weights in oneDNN's
     * layouts, core/backend_dnnl.h), so that it does not outlive them. */
    void (*forget)(const sr_backend *be, const void *p, size_t bytes);
    void (*to_device)(const sr_backend *be, void *dst, const void *host_src, size_t bytes);
    void (*to_host)(const sr_backend *be, void *host_dst, const void *src, size_t bytes);
    void (*zero)(const sr_backend *be, void *p, size_t bytes);
    void (*sync)(const sr_backend *be);

    /* Row-major C = alpha * op(A) op(B) + beta * C; op(A) is m x k, op(B) k x n. */
    void (*gemm)(const sr_backend *be, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta,
                 float *c, int ldc);

    /* count products of one shape at fixed strides (in floats) between the
     * operands: product j is the gemm above on a + j stride.a, b + j stride.b
     * and c + j stride.c, with the same bits as count calls of gemm (the
     * Winograd convolution's 16, one launch on a GPU). */
    void (*gemm_batched)(const sr_backend *be, int count, sr_gemm_strides stride, bool trans_a, bool trans_b, int m,
                         int n, int k, float alpha, const float *a, int lda, const float *b, int ldb, float beta,
                         float *c, int ldc);

    /* Layout conversion between NCHW (files, users) and CNHW (the engine). */
    void (*nchw_to_cnhw)(const sr_backend *be, const float *src, int n, int c, int hw, float *dst);
    void (*cnhw_to_nchw)(const sr_backend *be, const float *src, int n, int c, int hw, float *dst);

    /* 3x3 convolution, zero padding 1, on images [i0, i1) of a CNHW batch of n:
     * col[(ch * 9 + ky * 3 + kx), (i - i0) * h * w + p] = x[ch, i, y + ky - 1, x + kx - 1].
     * col2im is its adjoint and accumulates into dx. */
    void (*im2col3x3)(const sr_backend *be, const float *x, int c, int n, int h, int w, int i0, int i1, float *col);
    void (*col2im3x3)(const sr_backend *be, const float *col, int c, int n, int h, int w, int i0, int i1, float *dx);

    /* Winograd F(2x2, 3x3) for the same convolution (Lavin and Gray 2016):
     * 16 GEMMs over 4x4 input tiles make 2x2 output tiles, 2.25 times fewer
     * multiplies than unfolding. h and w even; tiles of images [i0, i1):
     *   weights: u[xi][k][c] = (G w[k][c] G^T)[xi]
     *   input:   v[xi][c][t] = (B^T d_t B)[xi], d_t the tile with its 1-pixel border
     *   output:  y[k, i, 2ty + a, 2tx + b] = (A^T m_t A)[a][b], m[xi][k][t] */
    void (*winograd_weights)(const sr_backend *be, const float *w, int k, int c, float *u);
    void (*winograd_input)(const sr_backend *be, const float *x, int c, int n, int h, int w, int i0, int i1, float *v);
    void (*winograd_output)(const sr_backend *be, const float *m, int k, int n, int h, int w, int i0, int i1, float *y);

    /* Optional whole 3x3 convolutions, zero padding 1, no bias, on n CNHW
     * images, weight [k][c][3][3] (NULL: nn/ convolves with the ops above;
     * the CPU's on oneDNN when built with it). Each returns false, having
     * written nothing, when it has no kernel for the shape (nn/ then uses
     * its own path); each uses scratch of its own and gives the same bits
     * for any thread count, like every op.
     *   forward:          y[k, i] = sum_c weight[k][c] (*) x[c, i]
     *   backward_data:    dx += its input gradient given dy (k channels)
     *   backward_weights: dweight += its weight gradient given x and dy */
    bool (*conv3x3_forward)(const sr_backend *be, const float *x, int c, int n, int h, int w, const float *weight,
                            int k, float *y);
    bool (*conv3x3_backward_data)(const sr_backend *be, const float *dy, int c, int n, int h, int w,
                                  const float *weight, int k, float *dx);
    bool (*conv3x3_backward_weights)(const sr_backend *be, const float *x, int c, int n, int h, int w,
                                     const float *dy, int k, float *dweight);

    /* Conv unit tail, forward: u += bias; stats, [3 n]: per image mean, std + eps
     * (SR_NORM_LAYER) and a scratch value for the backward; a = relu(norm(u)).
     * a may equal u (inference). */
    void (*unit_forward)(const sr_backend *be, const sr_unit *unit, float *u, float *a, float *stats);
    /* Backward of the above. da is the gradient of a and is overwritten with
     * the gradient of u; dgamma and dbias (either may be NULL) accumulate.
     * u is the pre-norm value the forward kept; a its output. */
    void (*unit_backward)(const sr_backend *be, const sr_unit *unit, const float *u, const float *a,
                          float *stats, float *da, float *dgamma, float *dbias);

    /* ConvTranspose 2x2 stride 2 on a CNHW batch at input size h x w:
     * scatter: y[kk, i, 2y + dy, 2x + dx] = col[(kk * 4 + dy * 2 + dx), (i, y, x)] + bias[kk]
     * gather:  its adjoint, dcol = that arrangement of dy; dbias += row sums. */
    void (*convt_scatter)(const sr_backend *be, const float *col, const float *bias, int k, int n, int h, int w,
          float *y);
    void (*convt_gather)(const sr_backend *be, const float *dy, int k, int n, int h, int w, float *dcol, float *dbias);

    /* Average pooling 2x2 stride 2, input h x w (even). Backward accumulates. */
    void (*pool2x2)(const sr_backend *be, const float *x, int c, int n, int h, int w, float *y);
    void (*pool2x2_backward)(const sr_backend *be, const float *dy, int c, int n, int h, int w, float *dx);

    /* Spatial means of each (channel, image) plane into means[i * c + ch];
     * the backward accumulates dmeans / hw into every pixel. */
    void (*plane_means)(const sr_backend *be, const float *x, int c, int n, int hw, float *means);
    void (*plane_means_backward)(const sr_backend *be, const float *dmeans, int c, int n, int hw, float *dx);

    /* phi's noisy copies, drawn where the engine runs: copy j = i * n + k of
     * image i of x (NCHW, b images of c x hw) is x_i + sigma z, z's element e
     * being element e of the normals of Philox stream (seed, domain; keys[i],
     * k, bits of sigma), as sr_rng_gaussian draws them (core/rng_block.h);
     * written to dst in CNHW over b * n images. keys is host memory; sigma 0
     * makes plain copies. */
    void (*noisy_copies)(const sr_backend *be, const float *x, int b, int n, int c, int hw, float sigma,
          uint32_t seed, uint32_t domain,
                         const uint32_t *keys, float *dst);

    /* sum of a[i] * b[i], accumulated in double (for losses, which are reported) */
    double (*dot)(const sr_backend *be, size_t count, const float *a, const float *b);
    /* dst[i] = alpha * src[i] + beta * dst[i]; beta == 0 ignores dst's old value. */
    void (*axpby)(const sr_backend *be, size_t count, float alpha, const float *src, float beta, float *dst);

    /* Memory this backend can give, in bytes (RAM for the CPU): what a model
     * and its workspaces are checked against before anything is allocated. */
    size_t (*memory_bytes)(const sr_backend *be);

    /* Adam (PyTorch's form) on count parameters; step counts from 1. */
    void (*adam)(const sr_backend *be, float *param, const float *grad, float *m, float *v, size_t count,
                 float lr, float beta1, float beta2, float eps, long step);
    /* Adam on n images of c x hw values in the engine's layout (CNHW: the
     * pixels a projection moves): the images whose active[i] is 0 (backend
     * memory, n bytes) keep their values and moments. The reconstruction's
     * form, the update in double: param -= lr (m / bc1) / (sqrt(v / bc2) + eps),
     * bc = 1 - beta^step; step counts from 1. */
    void (*adam_masked)(const sr_backend *be, float *param, const float *grad, float *m, float *v, int c, int n, int hw,
                        const uint8_t *active, double lr, float beta1, float beta2, float eps, long step);
} sr_backend_ops;

/* One backend: its kind's operations and its own state. */
struct sr_backend {
    const sr_backend_ops *ops;
    void *ctx; /* the kind's context (backend_cpu.c, backend_cuda.cu) */
};

/* The calls everything above core/ makes, one per operation. */
static inline const char *sr_be_name(const sr_backend *be) { return be->ops->name; }

static inline bool sr_be_host_memory(const sr_backend *be) { return be->ops->host_memory; }

static inline void sr_be_describe(const sr_backend *be, char *text, size_t len)
{
    be->ops->describe(be, text, len);
}

/* "" when the backend has no processor-chosen kernels to name. */
static inline void sr_be_kernels(const sr_backend *be, char *text, size_t len)
{
    if (len) text[0] = '\0';
    if (be->ops->kernels) be->ops->kernels(be, text, len);
}

static inline void *sr_be_alloc(const sr_backend *be, size_t bytes)
{
    return be->ops->alloc(be, bytes);
}

static inline void sr_be_release(const sr_backend *be, void *p)
{
    be->ops->release(be, p);
}

static inline void sr_be_forget(const sr_backend *be, const void *p, size_t bytes)
{
    if (be->ops->forget) be->ops->forget(be, p, bytes);
}

static inline void sr_be_to_device(const sr_backend *be, void *dst, const void *host_src, size_t bytes)
{
    be->ops->to_device(be, dst, host_src, bytes);
}

static inline void sr_be_to_host(const sr_backend *be, void *host_dst, const void *src, size_t bytes)
{
    be->ops->to_host(be, host_dst, src, bytes);
}

static inline void sr_be_zero(const sr_backend *be, void *p, size_t bytes)
{
    be->ops->zero(be, p, bytes);
}

static inline void sr_be_sync(const sr_backend *be)
{
    be->ops->sync(be);
}

static inline void sr_be_gemm(const sr_backend *be, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                              const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    be->ops->gemm(be, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static inline void sr_be_gemm_batched(const sr_backend *be, int count, sr_gemm_strides stride, bool trans_a,
                                      bool trans_b, int m, int n, int k, float alpha, const float *a, int lda,
                                      const float *b, int ldb, float beta, float *c, int ldc)
{
    be->ops->gemm_batched(be, count, stride, trans_a, trans_b, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

static inline void sr_be_nchw_to_cnhw(const sr_backend *be, const float *src, int n, int c, int hw, float *dst)
{
    be->ops->nchw_to_cnhw(be, src, n, c, hw, dst);
}

static inline void sr_be_cnhw_to_nchw(const sr_backend *be, const float *src, int n, int c, int hw, float *dst)
{
    be->ops->cnhw_to_nchw(be, src, n, c, hw, dst);
}

static inline void sr_be_im2col3x3(const sr_backend *be, const float *x, int c, int n, int h, int w, int i0, int i1,
                                   float *col)
{
    be->ops->im2col3x3(be, x, c, n, h, w, i0, i1, col);
}

static inline void sr_be_col2im3x3(const sr_backend *be, const float *col, int c, int n, int h, int w, int i0, int i1,
                                   float *dx)
{
    be->ops->col2im3x3(be, col, c, n, h, w, i0, i1, dx);
}

static inline void sr_be_winograd_weights(const sr_backend *be, const float *w, int k, int c, float *u)
{
    be->ops->winograd_weights(be, w, k, c, u);
}

static inline void sr_be_winograd_input(const sr_backend *be, const float *x, int c, int n, int h, int w, int i0,
                                        int i1, float *v)
{
    be->ops->winograd_input(be, x, c, n, h, w, i0, i1, v);
}

static inline void sr_be_winograd_output(const sr_backend *be, const float *m, int k, int n, int h, int w, int i0,
                                         int i1, float *y)
{
    be->ops->winograd_output(be, m, k, n, h, w, i0, i1, y);
}

/* The optional convolutions: false when the backend has none for the shape. */
static inline bool sr_be_conv3x3_forward(const sr_backend *be, const float *x, int c, int n, int h, int w,
                                         const float *weight, int k, float *y)
{
    return be->ops->conv3x3_forward && be->ops->conv3x3_forward(be, x, c, n, h, w, weight, k, y);
}

static inline bool sr_be_conv3x3_backward_data(const sr_backend *be, const float *dy, int c, int n, int h, int w,
                                               const float *weight, int k, float *dx)
{
    return be->ops->conv3x3_backward_data && be->ops->conv3x3_backward_data(be, dy, c, n, h, w, weight, k, dx);
}

static inline bool sr_be_conv3x3_backward_weights(const sr_backend *be, const float *x, int c, int n, int h, int w,
                                                  const float *dy, int k, float *dweight)
{
    return be->ops->conv3x3_backward_weights &&
           be->ops->conv3x3_backward_weights(be, x, c, n, h, w, dy, k, dweight);
}

static inline void sr_be_unit_forward(const sr_backend *be, const sr_unit *unit, float *u, float *a, float *stats)
{
    be->ops->unit_forward(be, unit, u, a, stats);
}

static inline void sr_be_unit_backward(const sr_backend *be, const sr_unit *unit, const float *u, const float *a,
                                       float *stats, float *da, float *dgamma, float *dbias)
{
    be->ops->unit_backward(be, unit, u, a, stats, da, dgamma, dbias);
}

static inline void sr_be_convt_scatter(const sr_backend *be, const float *col, const float *bias, int k, int n, int h,
                                       int w, float *y)
{
    be->ops->convt_scatter(be, col, bias, k, n, h, w, y);
}

static inline void sr_be_convt_gather(const sr_backend *be, const float *dy, int k, int n, int h, int w, float *dcol,
                                      float *dbias)
{
    be->ops->convt_gather(be, dy, k, n, h, w, dcol, dbias);
}

static inline void sr_be_pool2x2(const sr_backend *be, const float *x, int c, int n, int h, int w, float *y)
{
    be->ops->pool2x2(be, x, c, n, h, w, y);
}

static inline void sr_be_pool2x2_backward(const sr_backend *be, const float *dy, int c, int n, int h, int w, float *dx)
{
    be->ops->pool2x2_backward(be, dy, c, n, h, w, dx);
}

static inline void sr_be_plane_means(const sr_backend *be, const float *x, int c, int n, int hw, float *means)
{
    be->ops->plane_means(be, x, c, n, hw, means);
}

static inline void sr_be_plane_means_backward(const sr_backend *be, const float *dmeans, int c, int n, int hw,
                                              float *dx)
{
    be->ops->plane_means_backward(be, dmeans, c, n, hw, dx);
}

static inline void sr_be_noisy_copies(const sr_backend *be, const float *x, int b, int n, int c, int hw, float sigma,
                                      uint32_t seed, uint32_t domain, const uint32_t *keys, float *dst)
{
    be->ops->noisy_copies(be, x, b, n, c, hw, sigma, seed, domain, keys, dst);
}

static inline double sr_be_dot(const sr_backend *be, size_t count, const float *a, const float *b)
{
    return be->ops->dot(be, count, a, b);
}

static inline void sr_be_axpby(const sr_backend *be, size_t count, float alpha, const float *src, float beta,
                               float *dst)
{
    be->ops->axpby(be, count, alpha, src, beta, dst);
}

static inline size_t sr_be_memory_bytes(const sr_backend *be)
{
    return be->ops->memory_bytes(be);
}

static inline void sr_be_adam(const sr_backend *be, float *param, const float *grad, float *m, float *v, size_t count,
                              float lr, float beta1, float beta2, float eps, long step)
{
    be->ops->adam(be, param, grad, m, v, count, lr, beta1, beta2, eps, step);
}

static inline void sr_be_adam_masked(const sr_backend *be, float *param, const float *grad, float *m, float *v, int c,
                                     int n, int hw, const uint8_t *active, double lr, float beta1, float beta2,
                                     float eps, long step)
{
    be->ops->adam_masked(be, param, grad, m, v, c, n, hw, active, lr, beta1, beta2, eps, step);
}


/* What a run asks for; sr_backend_select turns it into a backend. */
typedef struct {
    const char *name;     /* "auto" (a GPU when one is visible, else the CPU), "cpu", "cuda" */
    int threads;          /* CPU threads; 0: OpenMP's default */
    int device;           /* GPU: this rank's node-local rank, taken modulo the visible GPUs */
    const char *gpu_math; /* GPU products: "fp32", "tf32" or "bf16" (tensor cores, FP32 sums) */
} sr_backend_request;

/* The CPU backend: OpenBLAS sgemm and OpenMP loops over `threads` threads
 * (0: OpenMP's default when it is made, all the cores this process may use),
 * and, when built with oneDNN (SEMREP_WITH_DNNL), the 3x3 convolutions on
 * oneDNN with an engine, streams and primitives of its own. Each instance
 * keeps its own count: two side by side do not change each other's, nor the
 * process's OpenMP default. Never NULL. */
sr_backend *sr_backend_cpu_new(int threads);

/* Called first in main(): when OpenBLAS picked its slowest kernels on a
 * processor it does not recognise (OPENBLAS_CORETYPE unset), sets
 * OPENBLAS_CORETYPE=Haswell and executes the program again. */
void sr_backend_cpu_prepare(char **argv);

/* The process's OpenMP and OpenBLAS default number of threads, for loops
 * outside the backend (a stage's k-means, its overlaps): what a run's
 * `threads` sets beside its CPU backend. No backend instance depends on it. */
void sr_backend_cpu_default_threads(int threads);

/* A new instance of the backend a run asks for; NULL with the reason in err. */
sr_backend *sr_backend_select(const sr_backend_request *request, char *err, size_t errlen);

/* Releases an instance and everything it holds; NULL does nothing. Memory
 * it allocated must be released first. */
void sr_backend_free(sr_backend *be);

/* The CUDA backend (built when the CUDA toolkit was found: SEMREP_WITH_CUDA):
 * the number of GPUs this process sees (0 with the reason in err when there
 * is no NVIDIA driver or no device; -1 with the reason when a driver is there
 * but CUDA cannot start: a broken driver never reads as "no GPU"), and a new
 * instance on GPU `device` with products in `gpu_math`, its own cuBLAS
 * handle, stream and scratch; NULL with the reason. Instances on the same
 * GPU or on different ones may live side by side. */
int sr_backend_cuda_devices(char *err, size_t errlen);
sr_backend *sr_backend_cuda_new(int device, const char *gpu_math, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
