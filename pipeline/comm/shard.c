#include "comm/shard.h"

#include "core/rng.h"

void sr_shard(long count, long micro_batch, int rank, int ranks, long *first, long *end)
{
    const long batches = (count + micro_batch - 1) / micro_batch;
    const long b0 = batches * rank / ranks, b1 = batches * (rank + 1) / ranks;
    *first = b0 * micro_batch < count ? b0 * micro_batch : count;
    *end = b1 * micro_batch < count ? b1 * micro_batch : count;
}

void sr_epoch_order(uint32_t seed, long epoch, long count, long *order)
{
    const sr_rng_stream s = {.seed = seed, .domain = SR_RNG_TRAIN_ORDER, .i0 = (uint32_t)epoch,
                             .i1 = (uint32_t)((uint64_t)epoch >> 32)};
    for (long i = 0; i < count; i++) order[i] = i;
    for (long i = count - 1; i > 0; i--) {
        uint32_t word;
        sr_rng_words(&s, (uint64_t)i, 1, &word);
        /* j uniform in [0, i] by multiply-shift (bias below i / 2^32) */
        const long j = (long)(((uint64_t)word * (uint64_t)(i + 1)) >> 32);
        const long t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
}
