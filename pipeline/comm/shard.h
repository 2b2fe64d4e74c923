/* Which images a rank takes: pure functions of (count, rank, ranks), so a
 * result never depends on how many ranks ran. */
#ifndef SEMREP_COMM_SHARD_H
#define SEMREP_COMM_SHARD_H

#include <stdint.h>

/* Rank r's images [*first, *end) of count: the count is cut into
 * micro-batches of micro_batch images (the last may be short), and the
 * micro-batches are shared out in contiguous runs as evenly as they go. An
 * image is in the same micro-batch, with the same neighbours, whatever the
 * rank count: the engine then computes it bit for bit the same. */
void sr_shard(long count, long micro_batch, int rank, int ranks, long *first, long *end);

/* The order of count images in an epoch: a Fisher-Yates shuffle driven by
 * Philox (seed, epoch); the same on every rank, so cutting it with sr_shard
 * gives each rank its part of every global batch. */
void sr_epoch_order(uint32_t seed, long epoch, long count, long *order);

#endif
