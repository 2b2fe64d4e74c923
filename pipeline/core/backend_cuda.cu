/* The CUDA backend: cuBLAS for the products, one kernel per elementwise or
 * reduction op of backend.h, every launch and library call checked.
 *
 * Each instance (sr_backend_cuda_new) holds its own context: its GPU, one
 * stream, a cuBLAS handle on that stream and its scratch; no state lives
 * outside the instances. Everything an instance does runs on its stream, in
 * order, so a to_host after a kernel sees its result and nothing needs
 * events. Reductions never use atomics: each sum is one block's fixed-order
 * tree over fixed-stride partial sums (in double, like the CPU's), so a run
 * repeats bit for bit on the same GPU and launch shape. Results differ from the CPU's by rounding
 * only (documented tolerance: tests/gpu/test_cuda_backend.c). */
#include "core/backend.h"
#include "core/check.h"
#include "core/rng_block.h"
#include "core/winograd_tile.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CU(call)                                                                                        \
    do {                                                                                                \
        const cudaError_t e_ = (call);                                                                  \
        if (e_ != cudaSuccess)                                                                          \
            sr_die(__FILE__, __LINE__, "CUDA: %s failed: %s; check the GPU with nvidia-smi", #call,     \
                   cudaGetErrorString(e_));                                                             \
    } while (0)

#define CUBLAS(call)                                                                                    \
    do {                                                                                                \
        const cublasStatus_t s_ = (call);                                                               \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                                \
            sr_die(__FILE__, __LINE__, "cuBLAS: %s failed with status %d (%s)", #call, (int)s_,         \
                   cublasGetStatusString(s_));                                                          \
    } while (0)

/* After every launch: a bad configuration shows here, a fault at the next
 * sync, which may be another kernel's. With SEMREP_CUDA_SYNC=1 (the op tests
 * set it; benchmarks must not) every launch is waited for, so a fault names
 * the line of the kernel that made it. */
#define LAUNCHED(g)                                                                                     \
    do {                                                                                                \
        CU(cudaGetLastError());                                                                         \
        if ((g)->sync_launches) {                                                                       \
            const cudaError_t k_ = cudaStreamSynchronize((g)->stream);                                  \
            if (k_ != cudaSuccess)                                                                      \
                sr_die(__FILE__, __LINE__, "CUDA: the kernel launched here failed: %s (SEMREP_CUDA_SYNC=1)", \
                       cudaGetErrorString(k_));                                                         \
        }                                                                                               \
    } while (0)

static const int THREADS = 256;   /* elementwise kernels */
static const int REDUCE = 512;    /* reduction blocks: a power of two */
static const int DOT_BLOCKS = 1024;
static const size_t GRAD_TARGET = 1024; /* k_unit_grad's blocks when the shape allows: several per SM */
static const size_t GRAD_BLOCKS = 2048; /* and never more: partials holds two sums for each */
static const size_t PARTIALS = 2 * GRAD_BLOCKS > DOT_BLOCKS ? 2 * GRAD_BLOCKS : DOT_BLOCKS;
static_assert((REDUCE & (REDUCE - 1)) == 0, "block_sum halves blockDim: REDUCE must be a power of two");
static_assert(THREADS % 32 == 0, "k_plane_means gives each warp one plane: THREADS must be whole warps");

/* An instance's context: everything one backend holds on its GPU. */
typedef struct {
    int device;
    cudaStream_t stream;          /* every kernel, product and copy, in order */
    cublasHandle_t blas;          /* on `stream` */
    cublasComputeType_t compute;
    char math[8];
    double *partials;             /* PARTIALS: dot's, and k_unit_grad's per slice */
    uint32_t *keys;               /* noisy_copies' keys */
    size_t keys_cap;
    bool sync_launches;           /* SEMREP_CUDA_SYNC=1: wait for every kernel */
} gpu_ctx;

/* The instance's context, with its GPU made the calling thread's current
 * one (instances on different GPUs may take turns on one thread). */
static gpu_ctx *use(const sr_backend *be)
{
    gpu_ctx *g = (gpu_ctx *)be->ctx;
    CU(cudaSetDevice(g->device));
    return g;
}

static int blocks_for(size_t count)
{
    const size_t b = (count + THREADS - 1) / THREADS;
    return (int)(b < 1 ? 1 : b > 65535u * 32u ? 65535u * 32u : b); /* grid-stride loops cover the rest */
}

#define FOR_EACH(idx, count) \
    for (size_t idx = blockIdx.x * (size_t)blockDim.x + threadIdx.x; idx < (count); idx += (size_t)gridDim.x * blockDim.x)

/* Sums v over the block, in a fixed order; the result is valid in thread 0. */
__device__ static double block_sum(double v, double *shared)
{
    shared[threadIdx.x] = v;
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) shared[threadIdx.x] += shared[threadIdx.x + half];
        __syncthreads();
    }
    const double total = shared[0];
    __syncthreads(); /* shared is reused by the caller's next sum */
    return total;
}

/* ---- memory ------------------------------------------------------------------ */

static void *gpu_alloc(const sr_backend *be, size_t bytes)
{
    use(be);
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 64) == cudaSuccess) return p;
    cudaGetLastError(); /* or the next LAUNCHED() reports this failure as its own */
    return NULL;
}

static void gpu_release(const sr_backend *be, void *p)
{
    use(be);
    CU(cudaFree(p));
}

/* Copies wait for the stream: the host may reuse or read its buffer at once. */
static void gpu_to_device(const sr_backend *be, void *dst, const void *src, size_t bytes)
{
    gpu_ctx *g = use(be);
    CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, g->stream));
    CU(cudaStreamSynchronize(g->stream));
}

static void gpu_to_host(const sr_backend *be, void *dst, const void *src, size_t bytes)
{
    gpu_ctx *g = use(be);
    CU(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, g->stream));
    CU(cudaStreamSynchronize(g->stream));
}

static void gpu_zero(const sr_backend *be, void *p, size_t bytes)
{
    gpu_ctx *g = use(be);
    CU(cudaMemsetAsync(p, 0, bytes, g->stream));
}

static void gpu_sync(const sr_backend *be)
{
    gpu_ctx *g = use(be);
    CU(cudaStreamSynchronize(g->stream));
}

static size_t gpu_memory_bytes(const sr_backend *be)
{
    use(be);
    size_t free_bytes = 0, total = 0;
    CU(cudaMemGetInfo(&free_bytes, &total));
    return free_bytes;
}

static void gpu_describe(const sr_backend *be, char *text, size_t len)
{
    gpu_ctx *g = use(be);
    cudaDeviceProp prop;
    CU(cudaGetDeviceProperties(&prop, g->device));
    int runtime = 0, driver = 0, blas = 0;
    CU(cudaRuntimeGetVersion(&runtime));
    CU(cudaDriverGetVersion(&driver));
    CUBLAS(cublasGetVersion(g->blas, &blas));
    snprintf(text, len, "%s (GPU %d, sm_%d%d, %.0f GiB), CUDA runtime %d, driver %d, cuBLAS %d, %s products",
             prop.name, g->device, prop.major, prop.minor, prop.totalGlobalMem / 1073741824.0, runtime, driver,
             blas, g->math);
}

/* ---- products ---------------------------------------------------------------- */

/* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the same
 * buffers with the operands swapped. */
static void gpu_gemm(const sr_backend *be, bool trans_a, bool trans_b, int m, int n, int k, float alpha,
                     const float *a, int lda, const float *b, int ldb, float beta, float *c, int ldc)
{
    gpu_ctx *g = use(be);
    CUBLAS(cublasGemmEx(g->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, n, m, k,
                        &alpha, b, CUDA_R_32F, ldb, a, CUDA_R_32F, lda, &beta, c, CUDA_R_32F, ldc, g->compute,
                        CUBLAS_GEMM_DEFAULT));
}

static void gpu_gemm_batched(const sr_backend *be, int count, sr_gemm_strides stride, bool trans_a, bool trans_b,
                             int m, int n, int k, float alpha, const float *a, int lda, const float *b, int ldb,
                             float beta, float *c, int ldc)
{
    gpu_ctx *g = use(be);
    CUBLAS(cublasGemmStridedBatchedEx(g->blas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N,
                                      n, m, k, &alpha, b, CUDA_R_32F, ldb, (long long)stride.b, a, CUDA_R_32F, lda,
                                      (long long)stride.a, &beta, c, CUDA_R_32F, ldc, (long long)stride.c, count,
                                      g->compute, CUBLAS_GEMM_DEFAULT));
}

/* ---- layout ------------------------------------------------------------------- */

__global__ static void k_transpose_planes(const float *src, int outer, int inner, int hw, float *dst)
{
    /* src planes [outer][inner], dst planes [inner][outer] */
    const size_t count = (size_t)outer * inner * hw;
    FOR_EACH(e, count) {
        const size_t p = e % hw, plane = e / hw;
        const size_t o = plane / inner, in = plane % inner;
        dst[(in * outer + o) * hw + p] = src[e];
    }
}

static void gpu_nchw_to_cnhw(const sr_backend *be, const float *src, int n, int c, int hw, float *dst)
{
    gpu_ctx *g = use(be);
    k_transpose_planes<<<blocks_for((size_t)n * c * hw), THREADS, 0, g->stream>>>(src, n, c, hw, dst);
    LAUNCHED(g);
}

static void gpu_cnhw_to_nchw(const sr_backend *be, const float *src, int n, int c, int hw, float *dst)
{
    gpu_ctx *g = use(be);
    k_transpose_planes<<<blocks_for((size_t)n * c * hw), THREADS, 0, g->stream>>>(src, c, n, hw, dst);
    LAUNCHED(g);
}

/* ---- 3x3 convolution by unfolding ---------------------------------------------- */

__global__ static void k_im2col3x3(const float *x, int c, int n, int h, int w, int i0, int i1, float *col)
{
    const size_t hw = (size_t)h * w, cols = (size_t)(i1 - i0) * hw, count = 9 * (size_t)c * cols;
    FOR_EACH(e, count) {
        const size_t row = e / cols, j = e % cols;
        const int ch = (int)(row / 9), tap = (int)(row % 9);
        const int i = i0 + (int)(j / hw), p = (int)(j % hw), y = p / w + tap / 3 - 1, xx = p % w + tap % 3 - 1;
        col[e] = (y >= 0 && y < h && xx >= 0 && xx < w) ? x[((size_t)ch * n + i) * hw + (size_t)y * w + xx] : 0.0f;
    }
}

/* One thread per pixel of dx gathers its nine taps in the CPU's order. */
__global__ static void k_col2im3x3(const float *col, int c, int n, int h, int w, int i0, int i1, float *dx)
{
    const size_t hw = (size_t)h * w, cols = (size_t)(i1 - i0) * hw, count = (size_t)c * cols;
    FOR_EACH(e, count) {
        const int ch = (int)(e / cols);
        const size_t j = e % cols;
        const int ii = (int)(j / hw), p = (int)(j % hw), y = p / w, xx = p % w;
        float *d = dx + ((size_t)ch * n + i0 + ii) * hw + p;
        float acc = *d;
        for (int tap = 0; tap < 9; tap++) {
            const int sy = y - (tap / 3 - 1), sx = xx - (tap % 3 - 1);
            if (sy < 0 || sy >= h || sx < 0 || sx >= w) continue;
            acc += col[((size_t)ch * 9 + tap) * cols + (size_t)ii * hw + (size_t)sy * w + sx];
        }
        *d = acc;
    }
}

static void gpu_im2col3x3(const sr_backend *be, const float *x, int c, int n, int h, int w, int i0, int i1, float *col)
{
    gpu_ctx *g = use(be);
    k_im2col3x3<<<blocks_for(9 * (size_t)c * (i1 - i0) * h * w), THREADS, 0, g->stream>>>(x, c, n, h, w, i0, i1, col);
    LAUNCHED(g);
}

static void gpu_col2im3x3(const sr_backend *be, const float *col, int c, int n, int h, int w, int i0, int i1, float *dx)
{
    gpu_ctx *g = use(be);
    k_col2im3x3<<<blocks_for((size_t)c * (i1 - i0) * h * w), THREADS, 0, g->stream>>>(col, c, n, h, w, i0, i1, dx);
    LAUNCHED(g);
}

/* ---- Winograd F(2x2, 3x3): the CPU's transforms, one thread per tile ------------ */

__global__ static void k_winograd_weights(const float *w, int k, int c, float *u)
{
    const size_t kc = (size_t)k * c;
    FOR_EACH(p, kc) sr_winograd_weight_tile(w + p * 9, u + p, kc);
}

/* Value e of a Winograd plane (channel-major over the tiles of images
 * i0..): where its channel's image starts in the CNHW batch, and the
 * tile's row and column. */
__device__ static size_t tile_of(size_t e, size_t tiles, int n, int i0, int th, int tw, size_t hw, int *ty, int *tx)
{
    const size_t ch = e / tiles, t = e % tiles, per_image = (size_t)th * tw;
    *ty = (int)((t % per_image) / tw);
    *tx = (int)(t % tw);
    return (ch * n + i0 + t / per_image) * hw;
}

__global__ static void k_winograd_input(const float *x, int c, int n, int h, int w, int i0, int i1, float *v)
{
    const int th = h / 2, tw = w / 2;
    const size_t tiles = (size_t)(i1 - i0) * th * tw, hw = (size_t)h * w, plane = (size_t)c * tiles;
    FOR_EACH(e, plane) {
        int ty, tx;
        const float *src = x + tile_of(e, tiles, n, i0, th, tw, hw, &ty, &tx);
        float d[4][4];
        for (int a = 0; a < 4; a++)
            for (int b = 0; b < 4; b++) {
                const int y = 2 * ty + a - 1, xx = 2 * tx + b - 1;
                d[a][b] = (y >= 0 && y < h && xx >= 0 && xx < w) ? src[(size_t)y * w + xx] : 0.0f;
            }
        float r[4][4]; /* B^T d */
        for (int b = 0; b < 4; b++) {
            r[0][b] = d[0][b] - d[2][b];
            r[1][b] = d[1][b] + d[2][b];
            r[2][b] = d[2][b] - d[1][b];
            r[3][b] = d[1][b] - d[3][b];
        }
        float *out = v + e;
        for (int a = 0; a < 4; a++) { /* (B^T d) B */
            out[(size_t)(a * 4 + 0) * plane] = r[a][0] - r[a][2];
            out[(size_t)(a * 4 + 1) * plane] = r[a][1] + r[a][2];
            out[(size_t)(a * 4 + 2) * plane] = r[a][2] - r[a][1];
            out[(size_t)(a * 4 + 3) * plane] = r[a][1] - r[a][3];
        }
    }
}

__global__ static void k_winograd_output(const float *m, int k, int n, int h, int w, int i0, int i1, float *y)
{
    const int th = h / 2, tw = w / 2;
    const size_t tiles = (size_t)(i1 - i0) * th * tw, hw = (size_t)h * w, plane = (size_t)k * tiles;
    FOR_EACH(e, plane) {
        int ty, tx;
        const size_t at = tile_of(e, tiles, n, i0, th, tw, hw, &ty, &tx);
        sr_winograd_output_tile(m + e, plane, y + at + (size_t)(2 * ty) * w + 2 * tx, w);
    }
}

static void gpu_winograd_weights(const sr_backend *be, const float *w, int k, int c, float *u)
{
    gpu_ctx *g = use(be);
    k_winograd_weights<<<blocks_for((size_t)k * c), THREADS, 0, g->stream>>>(w, k, c, u);
    LAUNCHED(g);
}

static void gpu_winograd_input(const sr_backend *be, const float *x, int c, int n, int h, int w, int i0, int i1,
                               float *v)
{
    gpu_ctx *g = use(be);
    k_winograd_input<<<blocks_for((size_t)c * (i1 - i0) * (h / 2) * (w / 2)), THREADS, 0, g->stream>>>(x, c, n, h, w,
                                                                                                       i0, i1, v);
    LAUNCHED(g);
}

static void gpu_winograd_output(const sr_backend *be, const float *m, int k, int n, int h, int w, int i0, int i1,
                                float *y)
{
    gpu_ctx *g = use(be);
    k_winograd_output<<<blocks_for((size_t)k * (i1 - i0) * (h / 2) * (w / 2)), THREADS, 0, g->stream>>>(m, k, n, h, w,
                                                                                                        i0, i1, y);
    LAUNCHED(g);
}

/* ---- a conv unit's tail: bias, normalisation, ReLU ------------------------------ */

__device__ static float unit_divisor(const sr_unit &unit, const float *stats, int ch, int i)
{
    switch (unit.norm) {
    case SR_NORM_LAYER: return stats[3 * i + 1];
    case SR_NORM_BATCH: return unit.running_sd[ch];
    default: return 1.0f;
    }
}

__device__ static float unit_scale(const sr_unit &unit, const float *stats, int ch, int i)
{
    return unit.norm == SR_NORM_NONE ? 1.0f : unit.gamma[ch] / unit_divisor(unit, stats, ch, i);
}

/* Layer norm, one block per image: u += bias and the image's mean and std. */
__global__ static void k_unit_moments(sr_unit unit, float *u, float *stats)
{
    extern __shared__ double shared[];
    const int i = blockIdx.x, n = unit.n;
    const size_t hw = (size_t)unit.hw, count = (size_t)unit.k * hw;
    double sum = 0.0, sumsq = 0.0;
    for (size_t e = threadIdx.x; e < count; e += blockDim.x) {
        const int ch = (int)(e / hw);
        float *up = u + ((size_t)ch * n + i) * hw + e % hw;
        const float v = *up + (unit.bias ? unit.bias[ch] : 0.0f);
        *up = v;
        sum += v;
        sumsq += (double)v * v;
    }
    sum = block_sum(sum, shared);
    sumsq = block_sum(sumsq, shared);
    if (threadIdx.x == 0) {
        const double mean = sum / (double)count, var = fmax(sumsq / (double)count - mean * mean, 0.0);
        stats[3 * i] = (float)mean;
        stats[3 * i + 1] = (float)sqrt(var) + SR_NORM_EPS;
    }
}

/* a = relu(u * scale); without layer norm the bias is added here too. */
__global__ static void k_unit_apply(sr_unit unit, bool add_bias, float *u, float *a, const float *stats)
{
    const size_t hw = (size_t)unit.hw, count = (size_t)unit.k * unit.n * hw;
    FOR_EACH(e, count) {
        const size_t plane = e / hw;
        const int ch = (int)(plane / unit.n), i = (int)(plane % unit.n);
        float v = u[e];
        if (add_bias) u[e] = v = v + unit.bias[ch];
        v *= unit_scale(unit, stats, ch, i);
        a[e] = unit.relu ? (v < 0.0f ? 0.0f : v) : v;
    }
}

static void gpu_unit_forward(const sr_backend *be, const sr_unit *unit, float *u, float *a, float *stats)
{
    gpu_ctx *g = use(be);
    const bool layer = unit->norm == SR_NORM_LAYER;
    if (unit->n < 1) return; /* a grid of no blocks is an error; the CPU does nothing */
    if (layer) {
        k_unit_moments<<<unit->n, REDUCE, REDUCE * sizeof(double), g->stream>>>(*unit, u, stats);
        LAUNCHED(g);
    }
    k_unit_apply<<<blocks_for((size_t)unit->k * unit->n * unit->hw), THREADS, 0, g->stream>>>(*unit,
                                                                                              !layer && unit->bias, u,
                                                                                              a,
                                                                               stats);
    LAUNCHED(g);
}

/* Backward, per image (one block each): the ReLU mask on da and, for the
 * layer norm, S_i = sum_c gamma_c sum_p dy u into the stats' third slot. */
__global__ static void k_unit_mask(sr_unit unit, const float *u, const float *a, float *stats, float *da)
{
    extern __shared__ double shared[];
    const int i = blockIdx.x, n = unit.n;
    const size_t hw = (size_t)unit.hw, count = (size_t)unit.k * hw;
    const bool layer = unit.norm == SR_NORM_LAYER;
    double s = 0.0;
    for (size_t e = threadIdx.x; e < count; e += blockDim.x) {
        const int ch = (int)(e / hw);
        const size_t off = ((size_t)ch * n + i) * hw + e % hw;
        if (unit.relu && a[off] <= 0.0f) da[off] = 0.0f;
        if (layer) s += (double)da[off] * u[off] * unit.gamma[ch];
    }
    if (!layer) return;
    s = block_sum(s, shared);
    if (threadIdx.x == 0) stats[3 * i + 2] = (float)s;
}

/* k_unit_grad's grid: each channel's n * hw values cut into slices, so that
 * a layer of few channels still fills the GPU (one block per channel left
 * most SMs idle: 32 blocks at the default shape's first level, a tenth of
 * the training step's time on an H200). The slices follow the shape alone,
 * never the device, so the sums' order is fixed; each slice keeps at least
 * one block's worth of values, and the partial sums fit GRAD_BLOCKS. */
static int grad_slices(int k, size_t count)
{
    size_t slices = (GRAD_TARGET + (size_t)k - 1) / (size_t)k;
    const size_t fit = GRAD_BLOCKS / (size_t)k, full = count / REDUCE;
    slices = slices < fit ? slices : fit;
    slices = slices < full ? slices : full;
    return slices < 1 ? 1 : (int)slices;
}

/* Per (channel, slice) block: the gradient of u in place over the slice and
 * its sums for dgamma and dbias, added at once when the channel is one
 * slice, else left in partials[2 (ch * slices + slice) + {0, 1}]. */
__global__ static void k_unit_grad(sr_unit unit, const float *u, const float *stats, float *da, float *dgamma,
                                   float *dbias, double *partials)
{
    extern __shared__ double shared[];
    const int ch = blockIdx.x, slice = blockIdx.y, slices = gridDim.y, n = unit.n, k = unit.k;
    const size_t hw = (size_t)unit.hw, count = (size_t)n * hw, len = (count + slices - 1) / slices;
    const size_t begin = slice * len, end = begin + len < count ? begin + len : count;
    const bool layer = unit.norm == SR_NORM_LAYER;
    float *dp = da + (size_t)ch * count;
    const float *up = u + (size_t)ch * count;
    double dg = 0.0, db = 0.0;
    for (size_t e = begin + threadIdx.x; e < end; e += blockDim.x) {
        const int i = (int)(e / hw);
        const float g = unit_scale(unit, stats, ch, i), inv = 1.0f / unit_divisor(unit, stats, ch, i);
        float coef = 0.0f, mean = 0.0f;
        if (layer) {
            const double d = stats[3 * i + 1], sd = d - SR_NORM_EPS;
            coef = sd > 0.0 ? (float)(stats[3 * i + 2] / (d * d * ((double)k * (double)hw) * sd)) : 0.0f;
            mean = stats[3 * i];
        }
        const float dy = dp[e];
        dg += (double)dy * up[e] * inv;
        const float du = g * dy - coef * (up[e] - mean);
        dp[e] = du;
        db += du;
    }
    dg = block_sum(dg, shared);
    db = block_sum(db, shared);
    if (threadIdx.x != 0) return;
    if (slices > 1) {
        partials[2 * ((size_t)ch * slices + slice)] = dg;
        partials[2 * ((size_t)ch * slices + slice) + 1] = db;
        return;
    }
    if (dgamma && unit.norm != SR_NORM_NONE) dgamma[ch] += (float)dg;
    if (dbias) dbias[ch] += (float)db;
}

/* The slices' sums of each channel, in slice order. */
__global__ static void k_unit_grad_sums(sr_unit unit, int slices, const double *partials, float *dgamma, float *dbias)
{
    FOR_EACH(ch, (size_t)unit.k) {
        double dg = 0.0, db = 0.0;
        for (int s = 0; s < slices; s++) {
            dg += partials[2 * (ch * slices + s)];
            db += partials[2 * (ch * slices + s) + 1];
        }
        if (dgamma && unit.norm != SR_NORM_NONE) dgamma[ch] += (float)dg;
        if (dbias) dbias[ch] += (float)db;
    }
}

static void gpu_unit_backward(const sr_backend *be, const sr_unit *unit, const float *u, const float *a, float *stats,
                              float *da, float *dgamma, float *dbias)
{
    gpu_ctx *g = use(be);
    /* grids of n and k blocks: skip the empty ones (a launch error), as the CPU's loops do */
    if (unit->n > 0 && (unit->relu || unit->norm == SR_NORM_LAYER)) {
        k_unit_mask<<<unit->n, REDUCE, REDUCE * sizeof(double), g->stream>>>(*unit, u, a, stats, da);
        LAUNCHED(g);
    }
    if (unit->k < 1) return;
    const int slices = grad_slices(unit->k, (size_t)unit->n * unit->hw);
    k_unit_grad<<<dim3(unit->k, slices), REDUCE, REDUCE * sizeof(double), g->stream>>>(*unit, u, stats, da, dgamma,
                                                                                     dbias, g->partials);
    LAUNCHED(g);
    if (slices > 1 && (dgamma || dbias)) {
        k_unit_grad_sums<<<blocks_for(unit->k), THREADS, 0, g->stream>>>(*unit, slices, g->partials, dgamma, dbias);
        LAUNCHED(g);
    }
}

/* ---- ConvTranspose 2x2 stride 2 -------------------------------------------------- */

/* y[kk, i, 2y + dy, 2x + dx] <-> col[(kk * 4 + dy * 2 + dx), (i, y, x)]: the
 * index of col that pixel e of y (size 2h x 2w) comes from. */
__device__ static size_t convt_source(size_t e, int n, int h, int w)
{
    const size_t hw4 = (size_t)4 * h * w, plane = e / hw4, p = e % hw4;
    const int kk = (int)(plane / n), i = (int)(plane % n), Y = (int)(p / (2 * w)), X = (int)(p % (2 * w));
    const int q = (Y % 2) * 2 + X % 2;
    return ((size_t)kk * 4 + q) * ((size_t)n * h * w) + (size_t)i * h * w + (size_t)(Y / 2) * w + X / 2;
}

__global__ static void k_convt_scatter(const float *col, const float *bias, int k, int n, int h, int w, float *y)
{
    const size_t count = (size_t)k * n * 4 * h * w;
    FOR_EACH(e, count) y[e] = col[convt_source(e, n, h, w)] + (bias ? bias[e / ((size_t)n * 4 * h * w)] : 0.0f);
}

__global__ static void k_convt_gather(const float *dy, int k, int n, int h, int w, float *dcol)
{
    const size_t count = (size_t)k * n * 4 * h * w;
    FOR_EACH(e, count) dcol[convt_source(e, n, h, w)] = dy[e];
}

/* dbias[c] += sum of channel c's contiguous `count` values (one block each). */
__global__ static void k_channel_sums(const float *x, size_t count, float *out)
{
    extern __shared__ double shared[];
    const float *p = x + (size_t)blockIdx.x * count;
    double s = 0.0;
    for (size_t e = threadIdx.x; e < count; e += blockDim.x) s += p[e];
    s = block_sum(s, shared);
    if (threadIdx.x == 0) out[blockIdx.x] += (float)s;
}

static void gpu_convt_scatter(const sr_backend *be, const float *col, const float *bias, int k, int n, int h, int w,
                              float *y)
{
    gpu_ctx *g = use(be);
    k_convt_scatter<<<blocks_for((size_t)k * n * 4 * h * w), THREADS, 0, g->stream>>>(col, bias, k, n, h, w, y);
    LAUNCHED(g);
}

static void gpu_convt_gather(const sr_backend *be, const float *dy, int k, int n, int h, int w, float *dcol,
                             float *dbias)
{
    gpu_ctx *g = use(be);
    k_convt_gather<<<blocks_for((size_t)k * n * 4 * h * w), THREADS, 0, g->stream>>>(dy, k, n, h, w, dcol);
    LAUNCHED(g);
    if (!dbias || k < 1) return;
    k_channel_sums<<<k, REDUCE, REDUCE * sizeof(double), g->stream>>>(dy, (size_t)n * 4 * h * w, dbias);
    LAUNCHED(g);
}

/* ---- pooling and means ------------------------------------------------------------- */

__global__ static void k_pool2x2(const float *x, size_t planes, int h, int w, float *y)
{
    const int oh = h / 2, ow = w / 2;
    FOR_EACH(e, planes * oh * ow) {
        const size_t plane = e / ((size_t)oh * ow);
        const int p = (int)(e % ((size_t)oh * ow)), yy = p / ow, xx = p % ow;
        const float *s = x + plane * h * w + (size_t)2 * yy * w + 2 * xx;
        y[e] = 0.25f * (s[0] + s[1] + s[w] + s[w + 1]);
    }
}

__global__ static void k_pool2x2_backward(const float *dy, size_t planes, int h, int w, float *dx)
{
    const int oh = h / 2, ow = w / 2;
    FOR_EACH(e, planes * h * w) {
        const size_t plane = e / ((size_t)h * w);
        const int p = (int)(e % ((size_t)h * w)), yy = p / w, xx = p % w;
        dx[e] += 0.25f * dy[plane * oh * ow + (size_t)(yy / 2) * ow + xx / 2];
    }
}

/* One warp per (channel, image) plane; lanes sum strided, then a fixed tree.
 * The early return is warp-uniform (THREADS is whole warps, so all 32 lanes
 * share `plane`): every lane that reaches the full-mask shuffle is present. */
__global__ static void k_plane_means(const float *x, int c, int n, int hw, float *means)
{
    const size_t plane = (blockIdx.x * (size_t)blockDim.x + threadIdx.x) / 32;
    const int lane = threadIdx.x % 32;
    if (plane >= (size_t)c * n) return;
    const float *p = x + plane * hw;
    double s = 0.0;
    for (int q = lane; q < hw; q += 32) s += p[q];
    for (int off = 16; off > 0; off /= 2) s += __shfl_down_sync(0xffffffffu, s, off);
    const int ch = (int)(plane / n), i = (int)(plane % n);
    if (lane == 0) means[(size_t)i * c + ch] = (float)(s / hw);
}

__global__ static void k_plane_means_backward(const float *dmeans, int c, int n, int hw, float *dx)
{
    FOR_EACH(e, (size_t)c * n * hw) {
        const size_t plane = e / hw;
        const int ch = (int)(plane / n), i = (int)(plane % n);
        dx[e] += dmeans[(size_t)i * c + ch] / (float)hw;
    }
}

static void gpu_pool2x2(const sr_backend *be, const float *x, int c, int n, int h, int w, float *y)
{
    gpu_ctx *g = use(be);
    k_pool2x2<<<blocks_for((size_t)c * n * h * w / 4), THREADS, 0, g->stream>>>(x, (size_t)c * n, h, w, y);
    LAUNCHED(g);
}

static void gpu_pool2x2_backward(const sr_backend *be, const float *dy, int c, int n, int h, int w, float *dx)
{
    gpu_ctx *g = use(be);
    k_pool2x2_backward<<<blocks_for((size_t)c * n * h * w), THREADS, 0, g->stream>>>(dy, (size_t)c * n, h, w, dx);
    LAUNCHED(g);
}

static void gpu_plane_means(const sr_backend *be, const float *x, int c, int n, int hw, float *means)
{
    gpu_ctx *g = use(be);
    const size_t threads = (size_t)c * n * 32;
    if (!threads) return;
    k_plane_means<<<(unsigned)((threads + THREADS - 1) / THREADS), THREADS, 0, g->stream>>>(x, c, n, hw, means);
    LAUNCHED(g);
}

static void gpu_plane_means_backward(const sr_backend *be, const float *dmeans, int c, int n, int hw, float *dx)
{
    gpu_ctx *g = use(be);
    k_plane_means_backward<<<blocks_for((size_t)c * n * hw), THREADS, 0, g->stream>>>(dmeans, c, n, hw, dx);
    LAUNCHED(g);
}

/* ---- phi's noise ------------------------------------------------------------------------ */

/* One thread per value of dst (CNHW): it draws the Philox block its
 * element falls in (four threads draw each block: cheaper than sharing). */
__global__ static void k_noisy_copies(const float *x, int n, int hw, size_t copies, size_t per_image, float sigma,
                                      uint32_t bits, uint32_t seed, uint32_t domain, const uint32_t *keys, float *dst)
{
    FOR_EACH(o, copies * per_image) {
        const size_t plane = o / hw, j = plane % copies, e = (plane / copies) * hw + o % hw, i = j / n;
        float v = x[i * per_image + e];
        if (sigma != 0.0f) {
            float z[4];
            sr_rng_gaussian_block(seed, domain, keys[i], (uint32_t)(j % n), bits, (uint32_t)(e / 4), z);
            v = v + sigma * z[e % 4];
        }
        dst[o] = v;
    }
}

static void gpu_noisy_copies(const sr_backend *be, const float *x, int b, int n, int c, int hw, float sigma,
                             uint32_t seed, uint32_t domain, const uint32_t *keys, float *dst)
{
    gpu_ctx *g = use(be);
    if ((size_t)b > g->keys_cap) { /* the images' keys, on the device; grows to the largest batch */
        if (g->keys) CU(cudaFree(g->keys));
        g->keys_cap = (size_t)b;
        CU(cudaMalloc(&g->keys, sizeof(uint32_t) * g->keys_cap));
    }
    gpu_to_device(be, g->keys, keys, sizeof(uint32_t) * b);
    const size_t copies = (size_t)b * n, per_image = (size_t)c * hw;
    uint32_t bits;
    memcpy(&bits, &sigma, sizeof bits);
    k_noisy_copies<<<blocks_for(copies * per_image), THREADS, 0, g->stream>>>(x, n, hw, copies, per_image, sigma, bits,
                                                                              seed, domain, g->keys, dst);
    LAUNCHED(g);
}

/* ---- vectors ------------------------------------------------------------------------- */

__global__ static void k_dot(size_t count, const float *a, const float *b, double *partials)
{
    extern __shared__ double shared[];
    double s = 0.0;
    FOR_EACH(e, count) s += (double)a[e] * b[e];
    s = block_sum(s, shared);
    if (threadIdx.x == 0) partials[blockIdx.x] = s;
}

static double gpu_dot(const sr_backend *be, size_t count, const float *a, const float *b)
{
    gpu_ctx *g = use(be);
    k_dot<<<DOT_BLOCKS, REDUCE, REDUCE * sizeof(double), g->stream>>>(count, a, b, g->partials);
    LAUNCHED(g);
    double host[DOT_BLOCKS], sum = 0.0;
    gpu_to_host(be, host, g->partials, sizeof host);
    for (int j = 0; j < DOT_BLOCKS; j++) sum += host[j];
    return sum;
}

__global__ static void k_axpby(size_t count, float alpha, const float *src, float beta, float *dst)
{
    FOR_EACH(e, count) dst[e] = beta == 0.0f ? alpha * src[e] : alpha * src[e] + beta * dst[e];
}

static void gpu_axpby(const sr_backend *be, size_t count, float alpha, const float *src, float beta, float *dst)
{
    gpu_ctx *g = use(be);
    k_axpby<<<blocks_for(count), THREADS, 0, g->stream>>>(count, alpha, src, beta, dst);
    LAUNCHED(g);
}

__global__ static void k_adam(float *param, const float *grad, float *m, float *v, size_t count, float beta1,
                              float beta2, float eps, float step_size, float inv_sqrt_bc2)
{
    FOR_EACH(e, count) {
        const float g = grad[e];
        const float mm = m[e] = beta1 * m[e] + (1.0f - beta1) * g;
        const float vv = v[e] = beta2 * v[e] + (1.0f - beta2) * g * g;
        param[e] -= step_size * mm / (sqrtf(vv) * inv_sqrt_bc2 + eps);
    }
}

static void gpu_adam(const sr_backend *be, float *param, const float *grad, float *m, float *v, size_t count,
                     float lr, float beta1, float beta2, float eps, long step)
{
    gpu_ctx *g = use(be);
    const double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    k_adam<<<blocks_for(count), THREADS, 0, g->stream>>>(param, grad, m, v, count, beta1, beta2, eps, (float)(lr / bc1),
                                           (float)(1.0 / sqrt(bc2)));
    LAUNCHED(g);
}

__global__ static void k_adam_masked(float *param, const float *grad, float *m, float *v, size_t count, int n,
                                     int hw, const uint8_t *active, double lr, float beta1, float beta2, float eps,
                                     double bc1, double bc2)
{
    FOR_EACH(e, count) {
        if (!active[(e / hw) % n]) continue;
        const float g = grad[e];
        const float mm = m[e] = beta1 * m[e] + (1.0f - beta1) * g;
        const float vv = v[e] = beta2 * v[e] + (1.0f - beta2) * g * g;
        param[e] -= (float)(lr * (mm / bc1) / (sqrt(vv / bc2) + eps));
    }
}

static void gpu_adam_masked(const sr_backend *be, float *param, const float *grad, float *m, float *v, int c, int n,
                            int hw, const uint8_t *active, double lr, float beta1, float beta2, float eps, long step)
{
    gpu_ctx *g = use(be);
    const double bc1 = 1.0 - pow(beta1, (double)step), bc2 = 1.0 - pow(beta2, (double)step);
    const size_t count = (size_t)c * n * hw;
    k_adam_masked<<<blocks_for(count), THREADS, 0, g->stream>>>(param, grad, m, v, count, n, hw, active, lr, beta1,
                                                                beta2, eps, bc1,
                                                  bc2);
    LAUNCHED(g);
}

/* ---- the table ------------------------------------------------------------------------ */

/* Frees what the context holds; a context only partly made (a failed start)
 * holds NULLs where it stopped. */
static void free_ctx(gpu_ctx *g)
{
    cudaSetDevice(g->device);
    if (g->keys) CU(cudaFree(g->keys));
    if (g->partials) CU(cudaFree(g->partials));
    if (g->blas) CUBLAS(cublasDestroy(g->blas));
    if (g->stream) CU(cudaStreamDestroy(g->stream));
    free(g);
}

static void gpu_destroy(sr_backend *be)
{
    free_ctx((gpu_ctx *)be->ctx);
    free(be);
}

static const sr_backend_ops cuda_ops = {
    .name = "cuda",
    .host_memory = false,
    .destroy = gpu_destroy,
    .describe = gpu_describe,
    .kernels = NULL, /* no processor-chosen kernels for a fingerprint to hash */
    .alloc = gpu_alloc,
    .release = gpu_release,
    .forget = NULL, /* keeps nothing made from memory */
    .to_device = gpu_to_device,
    .to_host = gpu_to_host,
    .zero = gpu_zero,
    .sync = gpu_sync,
    .gemm = gpu_gemm,
    .gemm_batched = gpu_gemm_batched,
    .nchw_to_cnhw = gpu_nchw_to_cnhw,
    .cnhw_to_nchw = gpu_cnhw_to_nchw,
    .im2col3x3 = gpu_im2col3x3,
    .col2im3x3 = gpu_col2im3x3,
    .winograd_weights = gpu_winograd_weights,
    .winograd_input = gpu_winograd_input,
    .winograd_output = gpu_winograd_output,
    /* no convolution library: nn/ unfolds or uses Winograd on the products above */
    .conv3x3_forward = NULL,
    .conv3x3_backward_data = NULL,
    .conv3x3_backward_weights = NULL,
    .unit_forward = gpu_unit_forward,
    .unit_backward = gpu_unit_backward,
    .convt_scatter = gpu_convt_scatter,
    .convt_gather = gpu_convt_gather,
    .pool2x2 = gpu_pool2x2,
    .pool2x2_backward = gpu_pool2x2_backward,
    .plane_means = gpu_plane_means,
    .plane_means_backward = gpu_plane_means_backward,
    .noisy_copies = gpu_noisy_copies,
    .dot = gpu_dot,
    .axpby = gpu_axpby,
    .memory_bytes = gpu_memory_bytes,
    .adam = gpu_adam,
    .adam_masked = gpu_adam_masked,
};

extern "C" int sr_backend_cuda_devices(char *err, size_t errlen)
{
    int count = 0;
    const cudaError_t e = cudaGetDeviceCount(&count);
    if (e == cudaSuccess) return count;
    cudaGetLastError();
    /* "no GPU" only where there is none: no device, or no driver at all
     * (the runtime then says the driver is too old); anything else is a
     * driver that is there but broken, and must not pass for a CPU machine */
    void *driver = e == cudaErrorInsufficientDriver ? dlopen("libcuda.so.1", RTLD_LAZY) : NULL;
    if (driver) dlclose(driver);
    if (e == cudaErrorNoDevice || (e == cudaErrorInsufficientDriver && !driver)) {
        snprintf(err, errlen, "%s",
                 e == cudaErrorNoDevice ? "the NVIDIA driver sees no GPU" : "no NVIDIA driver (libcuda.so.1)");
        return 0;
    }
    snprintf(err, errlen, "CUDA cannot start: %s (%s); check the driver with nvidia-smi, or use backend = \"cpu\"",
             cudaGetErrorName(e), cudaGetErrorString(e));
    return -1;
}

extern "C" sr_backend *sr_backend_cuda_new(int device, const char *gpu_math, char *err, size_t errlen)
{
    char why[192];
    const int count = sr_backend_cuda_devices(why, sizeof why);
    if (count < 0) {
        snprintf(err, errlen, "backend = \"cuda\": %s", why);
        return NULL;
    }
    if (count < 1) {
        snprintf(err, errlen, "backend = \"cuda\" but this process sees no GPU (%s; check nvidia-smi, "
                              "CUDA_VISIBLE_DEVICES and the job's GPU request), or use backend = \"cpu\"", why);
        return NULL;
    }
    gpu_ctx *g = (gpu_ctx *)calloc(1, sizeof *g);
    SR_CHECK(g, "out of memory for a CUDA backend");
    g->device = device % count;
    cudaError_t e = cudaSetDevice(g->device);
    if (e == cudaSuccess) e = cudaMalloc(&g->partials, PARTIALS * sizeof(double));
    if (e == cudaSuccess) e = cudaStreamCreate(&g->stream);
    if (e != cudaSuccess) {
        snprintf(err, errlen, "GPU %d cannot be used: %s (check nvidia-smi: the GPU may be busy, in exclusive mode "
                              "or out of memory)", g->device, cudaGetErrorString(e));
        cudaGetLastError();
        if (g->partials) cudaFree(g->partials); /* what failed holds nothing; what came before goes */
        free(g);
        return NULL;
    }
    cublasStatus_t s = cublasCreate(&g->blas);
    if (s == CUBLAS_STATUS_SUCCESS) s = cublasSetStream(g->blas, g->stream);
    if (s != CUBLAS_STATUS_SUCCESS) {
        snprintf(err, errlen, "cuBLAS cannot start on GPU %d: %s", g->device, cublasGetStatusString(s));
        free_ctx(g);
        return NULL;
    }
    g->compute = !strcmp(gpu_math, "tf32")   ? CUBLAS_COMPUTE_32F_FAST_TF32
                 : !strcmp(gpu_math, "bf16") ? CUBLAS_COMPUTE_32F_FAST_16BF
                                             : CUBLAS_COMPUTE_32F;
    snprintf(g->math, sizeof g->math, "%s", gpu_math);
    const char *sync = getenv("SEMREP_CUDA_SYNC");
    g->sync_launches = sync && !strcmp(sync, "1");
    sr_backend *be = (sr_backend *)calloc(1, sizeof *be);
    SR_CHECK(be, "out of memory for a CUDA backend");
    be->ops = &cuda_ops;
    be->ctx = g;
    return be;
}
