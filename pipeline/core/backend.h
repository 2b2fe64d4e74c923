/* The compute backend: a table of function pointers that the engine (nn/)
 * calls for every allocation, copy, GEMM and elementwise kernel. The CPU
 * backend (OpenBLAS + OpenMP) is the reference every other backend is tested
 * against; a stage never knows which one runs.
 *
 * Layout conventions for the kernels (docs/architecture.md):
 *   - activations are channel-major, CNHW: channel c of image i at pixel p is
 *     x[(c * n + i) * hw + p]. A "row" is one channel over every image of the
 *     batch, so a convolution is one GEMM over all images.
 *   - "+=" in a comment means the kernel accumulates into its output.
 *   - pointers are backend (device) memory unless said otherwise.
 * Every kernel may run threaded; none allocates. */
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

typedef struct sr_backend {
    const char *name;
    /* true when backend memory is host memory (the CPU): a caller may then
     * hand it to MPI or read it directly; otherwise it goes through to_host. */
    bool host_memory;
    /* One line on what runs the products, e.g. the BLAS, its kernels, threads. */
    void (*describe)(char *text, size_t len);

    /* Memory: alloc returns NULL on failure (the caller names what failed). */
    void *(*alloc)(size_t bytes);
    void (*release)(void *p);
    void (*to_device)(void *dst, const void *host_src, size_t bytes);
    void (*to_host)(void *host_dst, const void *src, size_t bytes);
    void (*zero)(void *p, size_t bytes);
    void (*sync)(void);

    /* Row-major C = alpha * op(A) op(B) + beta * C; op(A) is m x k, op(B) k x n. */
    void (*gemm)(bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                 const float *a, int lda, const float *b, int ldb, float beta,
                 float *c, int ldc);

    /* Layout conversion between NCHW (files, users) and CNHW (the engine). */
    void (*nchw_to_cnhw)(const float *src, int n, int c, int hw, float *dst);
    void (*cnhw_to_nchw)(const float *src, int n, int c, int hw, float *dst);

    /* 3x3 convolution, zero padding 1, on images [i0, i1) of a CNHW batch of n:
     * col[(ch * 9 + ky * 3 + kx), (i - i0) * h * w + p] = x[ch, i, y + ky - 1, x + kx - 1].
     * col2im is its adjoint and accumulates into dx. */
    void (*im2col3x3)(const float *x, int c, int n, int h, int w, int i0, int i1, float *col);
    void (*col2im3x3)(const float *col, int c, int n, int h, int w, int i0, int i1, float *dx);

    /* Winograd F(2x2, 3x3) for the same convolution (Lavin and Gray 2016):
     * 16 GEMMs over 4x4 input tiles make 2x2 output tiles, 2.25 times fewer
     * multiplies than unfolding. h and w even; tiles of images [i0, i1):
     *   weights: u[xi][k][c] = (G w[k][c] G^T)[xi]
     *   input:   v[xi][c][t] = (B^T d_t B)[xi], d_t the tile with its 1-pixel border
     *   output:  y[k, i, 2ty + a, 2tx + b] = (A^T m_t A)[a][b], m[xi][k][t] */
    void (*winograd_weights)(const float *w, int k, int c, float *u);
    void (*winograd_input)(const float *x, int c, int n, int h, int w, int i0, int i1, float *v);
    void (*winograd_output)(const float *m, int k, int n, int h, int w, int i0, int i1, float *y);

    /* Conv unit tail, forward: u += bias; stats, [3 n]: per image mean, std + eps
     * (SR_NORM_LAYER) and a scratch value for the backward; a = relu(norm(u)).
     * a may equal u (inference). */
    void (*unit_forward)(const sr_unit *unit, float *u, float *a, float *stats);
    /* Backward of the above. da is the gradient of a and is overwritten with
     * the gradient of u; dgamma and dbias (either may be NULL) accumulate.
     * u is the pre-norm value the forward kept; a its output. */
    void (*unit_backward)(const sr_unit *unit, const float *u, const float *a,
                          float *stats, float *da, float *dgamma, float *dbias);

    /* ConvTranspose 2x2 stride 2 on a CNHW batch at input size h x w:
     * scatter: y[kk, i, 2y + dy, 2x + dx] = col[(kk * 4 + dy * 2 + dx), (i, y, x)] + bias[kk]
     * gather:  its adjoint, dcol = that arrangement of dy; dbias += row sums. */
    void (*convt_scatter)(const float *col, const float *bias, int k, int n, int h, int w, float *y);
    void (*convt_gather)(const float *dy, int k, int n, int h, int w, float *dcol, float *dbias);

    /* Average pooling 2x2 stride 2, input h x w (even). Backward accumulates. */
    void (*pool2x2)(const float *x, int c, int n, int h, int w, float *y);
    void (*pool2x2_backward)(const float *dy, int c, int n, int h, int w, float *dx);

    /* Spatial means of each (channel, image) plane into means[i * c + ch];
     * the backward accumulates dmeans / hw into every pixel. */
    void (*plane_means)(const float *x, int c, int n, int hw, float *means);
    void (*plane_means_backward)(const float *dmeans, int c, int n, int hw, float *dx);

    /* phi's noisy copies, drawn where the engine runs: copy j = i * n + k of
     * image i of x (NCHW, b images of c x hw) is x_i + sigma z, z's element e
     * being element e of the normals of Philox stream (seed, domain; keys[i],
     * k, bits of sigma), as sr_rng_gaussian draws them (core/rng_block.h);
     * written to dst in CNHW over b * n images. keys is host memory; sigma 0
     * makes plain copies. */
    void (*noisy_copies)(const float *x, int b, int n, int c, int hw, float sigma, uint32_t seed, uint32_t domain,
                         const uint32_t *keys, float *dst);

    /* sum of a[i] * b[i], accumulated in double (for losses, which are reported) */
    double (*dot)(size_t count, const float *a, const float *b);
    /* dst[i] = alpha * src[i] + beta * dst[i]; beta == 0 ignores dst's old value. */
    void (*axpby)(size_t count, float alpha, const float *src, float beta, float *dst);

    /* Memory this backend can give, in bytes (RAM for the CPU): what a model
     * and its workspaces are checked against before anything is allocated. */
    size_t (*memory_bytes)(void);

    /* Adam (PyTorch's form) on count parameters; step counts from 1. */
    void (*adam)(float *param, const float *grad, float *m, float *v, size_t count,
                 float lr, float beta1, float beta2, float eps, long step);
    /* Adam on n images of c x hw values in the engine's layout (CNHW: the
     * pixels a projection moves): the images whose active[i] is 0 (backend
     * memory, n bytes) keep their values and moments. The reconstruction's
     * form, the update in double: param -= lr (m / bc1) / (sqrt(v / bc2) + eps),
     * bc = 1 - beta^step; step counts from 1. */
    void (*adam_masked)(float *param, const float *grad, float *m, float *v, int c, int n, int hw,
                        const uint8_t *active, double lr, float beta1, float beta2, float eps, long step);
} sr_backend;

/* What a run asks for; sr_backend_select turns it into a backend. */
typedef struct {
    const char *name;     /* "auto" (a GPU when one is visible, else the CPU), "cpu", "cuda" */
    int threads;          /* CPU threads; 0: OpenMP's default */
    int device;           /* GPU: this rank's node-local rank, taken modulo the visible GPUs */
    const char *gpu_math; /* GPU products: "fp32", "tf32" or "bf16" (tensor cores, FP32 sums) */
} sr_backend_request;

/* The CPU backend: OpenBLAS sgemm and OpenMP loops over `threads` threads
 * (0: OpenMP's default, all the cores this process may use). */
const sr_backend *sr_backend_cpu(int threads);

/* Called first in main(): when OpenBLAS picked its slowest kernels on a
 * processor it does not recognise (OPENBLAS_CORETYPE unset), sets
 * OPENBLAS_CORETYPE=Haswell and executes the program again. */
void sr_backend_cpu_prepare(char **argv);

/* The backend a run asks for; NULL with the reason in err. */
const sr_backend *sr_backend_select(const sr_backend_request *request, char *err, size_t errlen);

/* The CUDA backend (built when the CUDA toolkit was found: SEMREP_WITH_CUDA):
 * the number of GPUs this process sees (0 with the reason in err when there
 * is no NVIDIA driver or no device; -1 with the reason when a driver is there
 * but CUDA cannot start: a broken driver never reads as "no GPU"), and the
 * backend on GPU `device` with products in `gpu_math`; NULL with the reason.
 * One device per process: a second call must name the same one. */
int sr_backend_cuda_devices(char *err, size_t errlen);
const sr_backend *sr_backend_cuda(int device, const char *gpu_math, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
