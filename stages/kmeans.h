/* Distributed k-means (docs/analysis.md): each rank holds its rows of the
 * data; Lloyd iterations assign locally and reduce sums and counts; the seed
 * is k-means|| (Bahmani et al. 2012): a few rounds that each sample about 2K
 * points in proportion to their squared distance, then weighted k-means++ on
 * those candidates, which every rank computes alike. Random choices are keyed
 * by the point's global index, so the result for a seed does not depend on
 * the rank count beyond the order in which sums are reduced. */
#ifndef SEMREP_STAGES_KMEANS_H
#define SEMREP_STAGES_KMEANS_H

#include <stdint.h>

#include "comm/comm.h"

typedef struct {
    int k, dim;
    float *centres;   /* [k][dim] */
    int *assign;      /* [rows] this rank's rows */
    float *distance2; /* [rows] squared distance to the assigned centre */
    double inertia;   /* sum of squared distances, all ranks */
    int iterations;
} sr_kmeans;

/* rows x dim floats of this rank, the first being global row `first` of
 * `total`. restarts runs, the lowest inertia kept. Collective. */
void sr_kmeans_run(const semrep_comm *comm, const float *rows, long count, long first, long total, int dim, int k,
                   uint32_t seed, int restarts, int max_iter, sr_kmeans *out);
void sr_kmeans_free(sr_kmeans *km);

/* Squared Euclidean distances of n rows to m centres (n x m), through one
 * GEMM: |x|^2 - 2 x.c + |c|^2. */
void sr_distances(const float *x, long n, const float *c, long m, int dim, float *d2);

#endif
