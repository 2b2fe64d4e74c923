/* The measures of active sets that need every image, computed with each rank
 * holding only its own images' sets (docs/analysis.md, "Memory"): the Jaccard
 * overlap within and across groups (classes or clusters), exact over all
 * pairs up to cluster.exact_max images and estimated from a seeded sample of
 * pairs above it; and the count of distinct sets. stats and cluster use them.
 * Every function here is collective over the ranks. */
#ifndef SEMREP_STAGES_SET_OVERLAP_H
#define SEMREP_STAGES_SET_OVERLAP_H

#include <stdint.h>

#include "comm/comm.h"

/* Pairs of each kind (within, across) in the sample above exact_max: a
 * standard error near 0.3 / sqrt(100000) ~ 0.001 for Jaccard overlaps. */
#define SR_OVERLAP_PAIRS 100000L

/* This rank's images [first, first + mine) of n, in rank order: their
 * active sets (words each) and groups (below 0: no group, no part). */
typedef struct {
    const uint64_t *sets;
    int words;
    const int *group;
    long first, mine, n;
} sr_shard_sets;

typedef struct {
    double mean[2];  /* mean Jaccard overlap, [0] within a group, [1] across; NaN over no pair */
    double pairs[2]; /* pairs averaged: all of them, or the sample's */
    double se[2];    /* standard error of the mean: 0 when exact, NaN under two sampled pairs */
    int sampled;     /* 1 when the images were more than exact_max */
    long long *sample; /* when sampled, on every rank: [2][SR_OVERLAP_PAIRS][2] image pairs (a, b),
                        * a != b, a row per pair, kind 0 within then 1 across; -1 where no pair
                        * of a kind exists; free() it */
} sr_overlap;

/* Mean Jaccard overlap of pairs of images in one group and in two groups:
 * over all pairs when n <= exact_max (blocks of sets pass round the ranks),
 * else over SR_OVERLAP_PAIRS pairs of each kind drawn uniformly from the
 * pairs of that kind (with replacement, from the seed's Philox stream). */
void sr_overlap_jaccard(const semrep_comm *comm, const sr_shard_sets *s, long exact_max, uint32_t seed, sr_overlap *out);

/* Distinct active sets among all n images: each set goes to the rank its
 * hash names, which counts the distinct ones it received (exact). */
long sr_overlap_distinct(const semrep_comm *comm, const sr_shard_sets *s);

#endif
