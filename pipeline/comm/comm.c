#define _GNU_SOURCE /* sched_getaffinity */
#include "comm/comm.h"

#include <mpi.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"

/* Every MPI call is checked; MPI's own text names what went wrong. */
#define SR_MPI(call)                                                                   \
    do {                                                                               \
        const int rc_ = (call);                                                        \
        if (rc_ != MPI_SUCCESS) {                                                      \
            char text_[MPI_MAX_ERROR_STRING];                                          \
            int len_ = 0;                                                              \
            MPI_Error_string(rc_, text_, &len_);                                       \
            SR_FAIL("MPI call %s failed: %s; check the MPI installation and the job's process layout", \
                    #call, text_);                                                     \
        }                                                                              \
    } while (0)

static void abort_all(int status) { MPI_Abort(MPI_COMM_WORLD, status); }

void sr_comm_init(semrep_comm *comm, int *argc, char ***argv)
{
    SR_MPI(MPI_Init(argc, argv));
    comm->world = MPI_COMM_WORLD;
    /* Errors come back as codes, which SR_MPI turns into one named line. */
    SR_MPI(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    SR_MPI(MPI_Comm_rank(MPI_COMM_WORLD, &comm->rank));
    SR_MPI(MPI_Comm_size(MPI_COMM_WORLD, &comm->size));
    MPI_Comm node;
    SR_MPI(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, comm->rank, MPI_INFO_NULL, &node));
    SR_MPI(MPI_Comm_rank(node, &comm->local_rank));
    SR_MPI(MPI_Comm_size(node, &comm->local_size));
    comm->node = node;
    if (comm->size > 1) sr_set_abort_hook(abort_all);
}

void sr_comm_finalize(semrep_comm *comm)
{
    SR_MPI(MPI_Comm_free(&comm->node));
    SR_MPI(MPI_Finalize());
}

void sr_comm_self(const semrep_comm *comm, semrep_comm *self)
{
    *self = *comm;
    self->rank = self->local_rank = 0;
    self->size = self->local_size = 1;
    self->world = MPI_COMM_SELF;
    self->node = MPI_COMM_SELF;
}

int sr_comm_default_threads(const semrep_comm *comm)
{
    /* The cores this rank may run on, shared with every rank on the node
     * whose cores overlap them: bound one rank per core, each gets its core;
     * unbound or bound per socket, the ranks divide what they share. */
    cpu_set_t mine;
    CPU_ZERO(&mine);
    if (sched_getaffinity(0, sizeof mine, &mine) != 0) {
        const long online = sysconf(_SC_NPROCESSORS_ONLN);
        for (long c = 0; c < online && c < CPU_SETSIZE; c++) CPU_SET((int)c, &mine);
    }
    cpu_set_t *all = SR_MALLOC(sizeof(cpu_set_t) * (size_t)comm->local_size, "the node's core masks");
    SR_MPI(MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, comm->node));
    int sharing = 0;
    for (int r = 0; r < comm->local_size; r++) {
        cpu_set_t both;
        CPU_AND(&both, &mine, &all[r]);
        sharing += CPU_COUNT(&both) > 0;
    }
    free(all);
    const int share = CPU_COUNT(&mine) / (sharing > 0 ? sharing : 1);
    return share > 0 ? share : 1;
}

static void reduce(const semrep_comm *comm, double *values, int count, MPI_Op op)
{
    if (comm->size > 1) SR_MPI(MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_DOUBLE, op, comm->world));
}

void sr_comm_sum(const semrep_comm *comm, double *values, int count) { reduce(comm, values, count, MPI_SUM); }
void sr_comm_min(const semrep_comm *comm, double *values, int count) { reduce(comm, values, count, MPI_MIN); }
void sr_comm_max(const semrep_comm *comm, double *values, int count) { reduce(comm, values, count, MPI_MAX); }
int sr_grid_exponent(double largest, double terms)
{
    if (!(largest > 0.0)) return 0;
    int e;
    frexp(largest * (terms > 1.0 ? terms : 1.0), &e); /* below 2^e */
    return 62 - e;
}

void sr_comm_sum_exact(const semrep_comm *comm, int64_t *values, int count)
{
    if (comm->size > 1) SR_MPI(MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_INT64_T, MPI_SUM, comm->world));
}
void sr_comm_barrier(const semrep_comm *comm) { SR_MPI(MPI_Barrier(comm->world)); }

void sr_comm_bcast(const semrep_comm *comm, void *bytes, size_t len, int root)
{
    if (comm->size == 1) return;
    SR_CHECK(len <= (size_t)INT_MAX, "internal: a broadcast of %zu bytes is beyond MPI's int count", len);
    SR_MPI(MPI_Bcast(bytes, (int)len, MPI_BYTE, root, comm->world));
}

void sr_comm_gather(const semrep_comm *comm, const void *mine, size_t len, char **all, size_t *total)
{
    SR_CHECK(len <= (size_t)INT_MAX, "internal: a gather of %zu bytes is beyond MPI's int count", len);
    int *counts = NULL, *offsets = NULL, n = (int)len;
    *all = NULL;
    *total = 0;
    if (comm->rank == 0) {
        counts = SR_MALLOC(sizeof(int) * (size_t)comm->size, "a gather");
        offsets = SR_MALLOC(sizeof(int) * (size_t)comm->size, "a gather");
    }
    SR_MPI(MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, comm->world));
    if (comm->rank == 0) {
        size_t sum = 0;
        for (int r = 0; r < comm->size; r++) {
            SR_CHECK(sum <= (size_t)INT_MAX, "internal: a gather beyond MPI's int count");
            offsets[r] = (int)sum;
            sum += (size_t)counts[r];
        }
        *total = sum;
        *all = SR_MALLOC(sum ? sum : 1, "a gather");
    }
    SR_MPI(MPI_Gatherv(mine, n, MPI_BYTE, *all, counts, offsets, MPI_BYTE, 0, comm->world));
    free(counts);
    free(offsets);
}

int sr_comm_any(const semrep_comm *comm, int flag)
{
    int any = flag != 0;
    if (comm->size > 1) SR_MPI(MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_MAX, comm->world));
    return any;
}

void sr_comm_sum_floats(const semrep_comm *comm, const sr_backend *be, float *values, size_t count)
{
    if (comm->size == 1) return;
    const size_t bucket = (size_t)1 << 23; /* 32 MiB: few calls, bounded MPI buffers */
    static float *staging;                /* one host bucket for device memory, kept for the next step */
    if (!sr_be_host_memory(be) && !staging) staging = SR_MALLOC(bucket * sizeof(float), "the host bucket of a GPU reduction");
    for (size_t at = 0; at < count; at += bucket) {
        const size_t n = count - at < bucket ? count - at : bucket;
        float *host = sr_be_host_memory(be) ? values + at : staging;
        if (!sr_be_host_memory(be)) sr_be_to_host(be, host, values + at, n * sizeof(float));
        SR_MPI(MPI_Allreduce(MPI_IN_PLACE, host, (int)n, MPI_FLOAT, MPI_SUM, comm->world));
        if (!sr_be_host_memory(be)) sr_be_to_device(be, values + at, host, n * sizeof(float));
    }
}

int sr_comm_same(const semrep_comm *comm, uint64_t value)
{
    unsigned long long lo = value, hi = value;
    if (comm->size > 1) {
        SR_MPI(MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UNSIGNED_LONG_LONG, MPI_MIN, comm->world));
        SR_MPI(MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UNSIGNED_LONG_LONG, MPI_MAX, comm->world));
    }
    return lo == hi;
}

size_t sr_comm_shift(const semrep_comm *comm, const void *send, size_t len, void *recv, size_t cap)
{
    if (comm->size == 1) {
        SR_CHECK(len <= cap, "internal: a ring step of %zu bytes into %zu", len, cap);
        memcpy(recv, send, len);
        return len;
    }
    SR_CHECK(len <= (size_t)INT_MAX && cap <= (size_t)INT_MAX, "internal: a ring step of %zu bytes is beyond MPI's int count", len);
    const int to = (comm->rank + comm->size - 1) % comm->size, from = (comm->rank + 1) % comm->size;
    unsigned long long mine = len, theirs = 0;
    SR_MPI(MPI_Sendrecv(&mine, 1, MPI_UNSIGNED_LONG_LONG, to, 0, &theirs, 1, MPI_UNSIGNED_LONG_LONG, from, 0, comm->world,
                        MPI_STATUS_IGNORE));
    SR_CHECK(theirs <= cap, "internal: rank %d's ring block of %llu bytes is over %zu", from, theirs, cap);
    SR_MPI(MPI_Sendrecv(send, (int)len, MPI_BYTE, to, 1, recv, (int)theirs, MPI_BYTE, from, 1, comm->world,
                        MPI_STATUS_IGNORE));
    return (size_t)theirs;
}

char *sr_comm_exchange(const semrep_comm *comm, const void *send, const size_t *counts, size_t *total)
{
    const int P = comm->size;
    int *n = SR_MALLOC(sizeof(int) * 4 * (size_t)P, "an exchange's counts");
    int *sendoff = n + P, *got = n + 2 * P, *recvoff = n + 3 * P;
    size_t at = 0;
    for (int r = 0; r < P; r++) {
        SR_CHECK(at + counts[r] <= (size_t)INT_MAX, "internal: an exchange beyond MPI's int count");
        n[r] = (int)counts[r], sendoff[r] = (int)at, at += counts[r];
    }
    SR_MPI(MPI_Alltoall(n, 1, MPI_INT, got, 1, MPI_INT, comm->world));
    at = 0;
    for (int r = 0; r < P; r++) {
        SR_CHECK(at + (size_t)got[r] <= (size_t)INT_MAX, "internal: an exchange beyond MPI's int count");
        recvoff[r] = (int)at, at += (size_t)got[r];
    }
    char *recv = SR_MALLOC(at ? at : 1, "an exchange");
    SR_MPI(MPI_Alltoallv(send, n, sendoff, MPI_BYTE, recv, got, recvoff, MPI_BYTE, comm->world));
    free(n);
    *total = at;
    return recv;
}

int sr_comm_error(const semrep_comm *comm, int status, const char *fmt, ...)
{
    if (comm->rank != 0) return status;
    va_list ap;
    va_start(ap, fmt);
    fputs("semrep: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return status;
}
