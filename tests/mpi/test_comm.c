/* comm/ under mpirun -np 2: reductions against their closed forms, the node
 * layout of a one-node job, the ring step and the exchange. */
#define _GNU_SOURCE
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/comm.h"
#include "test_util.h"

static semrep_comm comm;

static void test_layout(void)
{
    CU_ASSERT_EQUAL(comm.size, 2);
    CU_ASSERT(comm.rank >= 0 && comm.rank < comm.size);
    CU_ASSERT_EQUAL(comm.local_size, comm.size); /* one node */
    CU_ASSERT_EQUAL(comm.local_rank, comm.rank);
    /* the ranks of a node never ask for more threads than it has cores */
    const int threads = sr_comm_default_threads(&comm);
    CU_ASSERT(threads >= 1);
    CU_ASSERT(threads * comm.local_size <= (int)sysconf(_SC_NPROCESSORS_ONLN));
}

static void test_reductions(void)
{
    double v[3] = {comm.rank + 1.0, 10.0 * (comm.rank + 1), -(double)comm.rank};
    double lo[3], hi[3];
    for (int i = 0; i < 3; i++) lo[i] = hi[i] = v[i];
    sr_comm_sum(&comm, v, 3);
    sr_comm_min(&comm, lo, 3);
    sr_comm_max(&comm, hi, 3);
    const double n = comm.size;
    CU_ASSERT_DOUBLE_EQUAL(v[0], n * (n + 1) / 2, 0);
    CU_ASSERT_DOUBLE_EQUAL(v[1], 10 * n * (n + 1) / 2, 0);
    CU_ASSERT_DOUBLE_EQUAL(v[2], -n * (n - 1) / 2, 0);
    CU_ASSERT_DOUBLE_EQUAL(lo[0], 1, 0);
    CU_ASSERT_DOUBLE_EQUAL(hi[0], n, 0);
    CU_ASSERT_DOUBLE_EQUAL(lo[2], -(n - 1), 0);
    CU_ASSERT_DOUBLE_EQUAL(hi[2], 0, 0);
}

/* A float array summed over ranks, in host memory and through the host
 * bucket that device memory takes: a backend like the CPU's that says its
 * memory is not the host's. More than one 2^23-float bucket, so the buckets'
 * seams are crossed; every value is an integer, so the sums are exact. */
static void test_sum_floats(void)
{
    const size_t count = ((size_t)1 << 23) + 1000;
    sr_backend *cpu = sr_backend_cpu_new(1);
    sr_backend_ops device_ops = *cpu->ops;
    device_ops.host_memory = false;
    const sr_backend device_like = {.ops = &device_ops, .ctx = cpu->ctx};
    const sr_backend *backends[2] = {cpu, &device_like};
    float *v = malloc(sizeof(float) * count);
    CU_ASSERT_FATAL(v != NULL);
    for (int b = 0; b < 2; b++) {
        for (size_t i = 0; i < count; i++) v[i] = (float)((i % 1000) * (comm.rank + 1));
        sr_comm_sum_floats(&comm, backends[b], v, count);
        size_t wrong = 0;
        for (size_t i = 0; i < count; i++) wrong += v[i] != (float)((i % 1000) * 3); /* 1 + 2 */
        CU_ASSERT_EQUAL(wrong, 0);
    }
    free(v);
    sr_backend_free(cpu);
}

/* A ring step of blocks of unequal lengths (rank 1's is empty): each rank
 * gets rank + 1's, whole; an all-to-all where rank r sends rank d
 * r + 2 d bytes of value 10 r + d: each rank gets, in rank order, what every
 * rank meant for it. */
static void test_ring_and_exchange(void)
{
    const int P = comm.size, next = (comm.rank + 1) % P;
    unsigned char mine[8], got[8];
    const size_t len = comm.rank == 1 ? 0 : (size_t)(5 + comm.rank);
    memset(mine, 100 + comm.rank, sizeof mine);
    memset(got, 0, sizeof got);
    const size_t n = sr_comm_shift(&comm, mine, len, got, sizeof got);
    CU_ASSERT_EQUAL(n, next == 1 ? 0 : (size_t)(5 + next));
    for (size_t i = 0; i < n; i++) CU_ASSERT_EQUAL(got[i], 100 + next);
    size_t counts[2], total;
    unsigned char send[8];
    int at = 0;
    for (int d = 0; d < P; d++) {
        counts[d] = (size_t)(comm.rank + 2 * d);
        for (size_t i = 0; i < counts[d]; i++) send[at++] = (unsigned char)(10 * comm.rank + d);
    }
    char *recv = sr_comm_exchange(&comm, send, counts, &total);
    size_t want = 0, wrong = 0;
    for (int r = 0; r < P; r++)
        for (int i = 0; i < r + 2 * comm.rank; i++) wrong += (unsigned char)recv[want++] != 10 * r + comm.rank;
    CU_ASSERT_EQUAL(total, want);
    CU_ASSERT_EQUAL(wrong, 0);
    free(recv);
}

int main(int argc, char **argv)
{
    sr_comm_init(&comm, &argc, &argv);
    const sr_test tests[] = {
        {"one-node layout of two ranks", test_layout},
        {"sum, min and max over ranks", test_reductions},
        {"float sums over ranks, in host memory and through the host bucket", test_sum_floats},
        {"a ring step and an all-to-all exchange of unequal lengths", test_ring_and_exchange},
        {NULL, NULL},
    };
    const int failed = sr_test_run("mpi_comm", tests);
    sr_comm_finalize(&comm);
    return failed;
}
