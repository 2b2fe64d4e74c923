/* Processes: rank, size, the ranks sharing a node, reductions. Stages talk to
 * MPI only through here. A run of one process needs no mpirun (Open MPI
 * starts as a singleton). */
#ifndef SEMREP_COMM_COMM_H
#define SEMREP_COMM_COMM_H

#include <math.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "core/backend.h"

typedef struct semrep_comm {
    int rank, size;             /* in the whole job */
    int local_rank, local_size; /* among the ranks on this node */
    MPI_Comm world;             /* the ranks of the job (or of a test's sub-job) */
    MPI_Comm node;              /* the ranks on this node */
} semrep_comm;

/* Starts MPI, installs an abort hook so that an error on one rank stops all. */
void sr_comm_init(semrep_comm *comm, int *argc, char ***argv);
void sr_comm_finalize(semrep_comm *comm);
/* This rank alone as a job of one (tests compare it with the whole job). */
void sr_comm_self(const semrep_comm *comm, semrep_comm *self);

/* Threads a rank should use when the user did not say: the cores it may run
 * on, divided among the ranks of its node that may run on them too.
 * Collective over the node's ranks. */
int sr_comm_default_threads(const semrep_comm *comm);

/* In-place reductions over all ranks. */
void sr_comm_sum(const semrep_comm *comm, double *values, int count);
void sr_comm_min(const semrep_comm *comm, double *values, int count);
void sr_comm_max(const semrep_comm *comm, double *values, int count);
/* In-place sum over ranks of 64-bit integers: exact, so the same in any
 * order and on any rank count. */
void sr_comm_sum_exact(const semrep_comm *comm, int64_t *values, int count);
/* Sums that come out the same bits on any rank and thread count: each term
 * is rounded once to a grid of 2^-e (sr_on_grid), the integers add exactly
 * in any order (OpenMP, sr_comm_sum_exact), and the total comes back with
 * sr_off_grid. sr_grid_exponent gives e for `terms` terms each at most
 * `largest` in magnitude, so that no total passes 2^62: for a million terms
 * the grid is 2^-42 of the largest. */
int sr_grid_exponent(double largest, double terms);
static inline int64_t sr_on_grid(double v, int e) { return llrint(ldexp(v, e)); }
static inline double sr_off_grid(int64_t v, int e) { return ldexp((double)v, -e); }
void sr_comm_barrier(const semrep_comm *comm);
/* In-place sum over ranks of a float array in backend memory (gradients), in
 * a few large buckets. GPU memory goes through one host bucket (no
 * CUDA-aware MPI or NCCL needed); the stage does not know which. */
void sr_comm_sum_floats(const semrep_comm *comm, const sr_backend *be, float *values, size_t count);
/* 1 when every rank passes the same value (e.g. a checksum of its weights). */
int sr_comm_same(const semrep_comm *comm, uint64_t value);
/* Rank root's bytes to every rank. */
void sr_comm_bcast(const semrep_comm *comm, void *bytes, size_t len, int root);
/* Every rank's bytes, concatenated in rank order, on rank 0 (a malloc'd
 * buffer in *all and its length; NULL and 0 on other ranks). */
void sr_comm_gather(const semrep_comm *comm, const void *mine, size_t len, char **all, size_t *total);
/* A ring step: sends len bytes to rank - 1 and receives rank + 1's (at
 * most cap bytes) into recv; returns their length. After t steps of passing
 * on what was received, a rank holds rank + t's block (blocks of rows
 * visit every rank without any rank holding them all). */
size_t sr_comm_shift(const semrep_comm *comm, const void *send, size_t len, void *recv, size_t cap);
/* All to all: send holds counts[r] bytes for rank r, in rank order; returns
 * what every rank sent here, in rank order (malloc'd, its length in *total). */
char *sr_comm_exchange(const semrep_comm *comm, const void *send, const size_t *counts, size_t *total);
/* "semrep: error: <message>" on stderr, from rank 0 only (every rank
 * usually meets the same error); returns status. */
int sr_comm_error(const semrep_comm *comm, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* 1 when any rank passes a non-zero flag: how ranks agree to stop together. */
int sr_comm_any(const semrep_comm *comm, int flag);

#endif
