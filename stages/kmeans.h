/* Distributed k-means (docs/analysis.md): each rank holds its rows of the
 * data; Lloyd iterations assign locally and reduce sums and counts; the seed
 * is k-means|| (Bahmani et al. 2012): a few rounds that each sample about 2K
 * points in proportion to their squared distance, then weighted k-means++ on
 * those candidates, which every rank computes alike. Random choices are keyed
 * by the point's global index, so the result for a seed does not depend on
 * the rank count: every sum is exact on a fixed-point grid (the same in any
 * order), and a rank's rows start at a multiple of SR_KMEANS_ROW_ALIGN, so
 * every block of rows a product sees is the same on any rank count.
 *
 * The products go through the backend's GEMM, so a GPU rank computes them on
 * its GPU: the distances of a block of rows to the centres, and the centres'
 * sums (a one-hot matrix of a block's clusters times the block). The
 * blocks' sums add on the grid, as do the ranks'. The
 * argmin and the norms stay on the host. Nothing allocated grows with K x N:
 * distances come in blocks of rows. */
#ifndef SEMREP_STAGES_KMEANS_H
#define SEMREP_STAGES_KMEANS_H

#include <stdint.h>

#include "comm/comm.h"
#include "core/backend.h"

/* A rank's first row is a multiple of this (comm/shard.h's micro-batch). */
#define SR_KMEANS_ROW_ALIGN 64

/* One rank's rows where the backend computes on them. */
typedef struct {
    const sr_backend *be;
    const float *rows; /* host, count x dim */
    float *dev;        /* the same rows in backend memory (rows itself on a host-memory backend) */
    float *norm;       /* [count] squared norms, host */
    long count, first, total; /* this rank's rows are global rows first .. first + count of total */
    int dim;
} sr_kmeans_data;

void sr_kmeans_data_open(const sr_backend *be, const float *rows, long count, long first, long total, int dim,
                         sr_kmeans_data *data);
void sr_kmeans_data_close(sr_kmeans_data *data);

typedef struct {
    int k, dim;
    float *centres;   /* [k][dim] */
    int *assign;      /* [rows] this rank's rows */
    float *distance2; /* [rows] squared distance to the assigned centre */
    double inertia;   /* sum of squared distances, all ranks */
    int iterations;
} sr_kmeans;

/* restarts runs, the lowest inertia kept. Collective. */
void sr_kmeans_run(const semrep_comm *comm, const sr_kmeans_data *data, int k, uint32_t seed, int restarts,
                   int max_iter, sr_kmeans *out);
void sr_kmeans_free(sr_kmeans *km);

/* Host floats where the backend reads them: the pointer itself on a
 * host-memory backend, else a copy (dies naming `what` when out of memory);
 * sr_backend_drop releases what sr_backend_copy made. */
float *sr_backend_copy(const sr_backend *be, const float *host, size_t count, const char *what);
void sr_backend_drop(const sr_backend *be, float *dev, const float *host);
/* Backend memory for count floats, or NULL on a host-memory backend (where
 * sr_distances needs no work space). */
float *sr_backend_work(const sr_backend *be, size_t count, const char *what);

/* Squared norms of n host rows. */
void sr_squared_norms(const float *x, long n, int dim, float *norm);

/* Squared Euclidean distances of n rows x to m rows c, both in backend
 * memory with their squared norms xn, cn on the host, into d2 (host, n x m),
 * through one GEMM: |x|^2 - 2 x.c + |c|^2, always in fp32. work: n x m
 * floats from sr_backend_work. */
void sr_distances(const sr_backend *be, const float *x, const float *xn, long n, const float *c, const float *cn,
                  long m, int dim, float *work, float *d2);

#endif
