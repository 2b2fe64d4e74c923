#define _GNU_SOURCE /* qsort_r */
#include "stages/set_overlap.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/rng.h"
#include "stages/measures.h"

/* The pair sample's Philox stream: the clustering domain, under its own tag
 * (k-means seeding uses small restart numbers as i0). */
#define SAMPLE_TAG 0x4a414343u /* "JACC" */

/* A block of rows on its way round the ring: where it starts, how many, then
 * its sets and groups. */
typedef struct {
    long first, count;
} block_head;

static size_t block_bytes(long count, int words)
{
    return sizeof(block_head) + (size_t)count * (sizeof(uint64_t) * (size_t)words + sizeof(int));
}

static char *pack_block(const sr_shard_sets *s, long cap)
{
    char *b = SR_MALLOC(block_bytes(cap, s->words), "a block of active sets");
    const block_head h = {s->first, s->mine};
    memcpy(b, &h, sizeof h);
    memcpy(b + sizeof h, s->sets, sizeof(uint64_t) * (size_t)s->words * (size_t)s->mine);
    memcpy(b + sizeof h + sizeof(uint64_t) * (size_t)s->words * (size_t)s->mine, s->group, sizeof(int) * (size_t)s->mine);
    return b;
}

static sr_shard_sets unpack_block(const char *b, int words, long n)
{
    block_head h;
    memcpy(&h, b, sizeof h);
    const uint64_t *sets = (const uint64_t *)(b + sizeof h);
    return (sr_shard_sets){sets, words, (const int *)(sets + (size_t)words * (size_t)h.count), h.first, h.count, n};
}

/* Calls visit(own, block, t, ctx) with the block of rank + t for t = 0 ..
 * steps - 1: the blocks pass round the ring, one step at a time. */
static void ring(const semrep_comm *comm, const sr_shard_sets *own, int steps,
                 void (*visit)(const sr_shard_sets *, const sr_shard_sets *, int, void *), void *ctx)
{
    double cap = (double)own->mine;
    sr_comm_max(comm, &cap, 1);
    const size_t bytes = block_bytes((long)cap, own->words);
    char *here = pack_block(own, (long)cap), *next = SR_MALLOC(bytes, "a block of active sets");
    for (int t = 0; t < steps; t++) {
        if (t > 0) {
            const block_head *h = (const block_head *)here;
            sr_comm_shift(comm, here, block_bytes(h->count, own->words), next, bytes);
            char *swap = here;
            here = next, next = swap;
        }
        const sr_shard_sets visiting = unpack_block(here, own->words, own->n);
        visit(own, &visiting, t, ctx);
    }
    free(here), free(next);
}

/* ---- exact: every pair once ------------------------------------------------ */

typedef struct {
    int rank, size, e;   /* e: the grid of the sums (comm.h): the same bits on any rank and thread count */
    int64_t sum[2];
    double pairs[2];
} exact_sums;

static int *set_sizes(const sr_shard_sets *b)
{
    int *size = SR_MALLOC(sizeof(int) * (size_t)(b->mine ? b->mine : 1), "the sets' sizes");
    for (long i = 0; i < b->mine; i++) {
        size[i] = 0;
        for (int w = 0; w < b->words; w++) size[i] += __builtin_popcountll(b->sets[(size_t)i * b->words + w]);
    }
    return size;
}

/* The pair of blocks (rank, rank + t) is summed once: by this rank when
 * t < size / 2, and at t == size / 2 (an even ring, where the two ranks see
 * each other's block) half by each, split at the middle of the upper rank's
 * block. The inner loop is sr_jaccard with the sets' sizes known:
 * |a | b| = |a| + |b| - |a & b|. */
static void exact_visit(const sr_shard_sets *own, const sr_shard_sets *other, int t, void *ctx)
{
    exact_sums *e = ctx;
    if (2 * t > e->size) return;
    const int halves = 2 * t == e->size, lower = e->rank < e->size / 2;
    const long i0 = halves && !lower ? own->mine / 2 : 0, j1 = halves && lower ? other->mine / 2 : other->mine;
    const int w = own->words;
    int *own_size = set_sizes(own), *other_size = set_sizes(other);
    int64_t sum[2] = {0, 0};
    double pairs[2] = {0, 0};
#pragma omp parallel for schedule(dynamic, 16) reduction(+ : sum[:2], pairs[:2])
    for (long i = i0; i < own->mine; i++) {
        const int gi = own->group[i];
        if (gi < 0) continue;
        const uint64_t *a = own->sets + (size_t)i * w;
        for (long j = t == 0 ? i + 1 : 0; j < j1; j++) {
            if (other->group[j] < 0) continue;
            const uint64_t *b = other->sets + (size_t)j * w;
            int both = 0;
            for (int k = 0; k < w; k++) both += __builtin_popcountll(a[k] & b[k]);
            const int either = own_size[i] + other_size[j] - both, kind = gi != other->group[j];
            sum[kind] += sr_on_grid(either ? (double)both / either : 1.0, e->e);
            pairs[kind]++;
        }
    }
    for (int k = 0; k < 2; k++) e->sum[k] += sum[k], e->pairs[k] += pairs[k];
    free(own_size), free(other_size);
}

/* ---- sampled: pairs drawn uniformly within each kind -------------------------- */

typedef struct {
    long long *pair;        /* [2][SR_OVERLAP_PAIRS][2] */
    int e;                  /* the grid of the sums, as exact_sums' */
    int64_t sum[2], sq[2];
} sample_sums;

/* Every image's group on every rank: the only per-image integers held whole
 * (4 bytes an image), to draw pairs the same way on every rank. */
static int *all_groups(const semrep_comm *comm, const sr_shard_sets *s)
{
    char *all;
    size_t bytes;
    sr_comm_gather(comm, s->group, sizeof(int) * (size_t)s->mine, &all, &bytes);
    if (comm->rank != 0) all = SR_MALLOC(sizeof(int) * (size_t)(s->n ? s->n : 1), "every image's group");
    sr_comm_bcast(comm, all, sizeof(int) * (size_t)s->n, 0);
    return (int *)all;
}

static uint64_t word64(const uint32_t *w) { return (uint64_t)w[0] << 32 | w[1]; }

/* Draws the sample: for a kind, a group g with probability proportional to
 * its pairs of that kind (n_g (n_g - 1) within, n_g (L - n_g) across, L the
 * images with a group), a member a of g, and a partner b uniformly among
 * the others of g (within) or the images outside g (across): every ordered
 * pair of the kind is equally likely. */
static void draw_sample(const int *group, long n, uint32_t seed, long long *pair, double *have)
{
    int groups = 0;
    for (long i = 0; i < n; i++) groups = group[i] + 1 > groups ? group[i] + 1 : groups;
    long *start = SR_CALLOC((size_t)groups + 1, sizeof(long), "the groups' starts"), *order = SR_MALLOC(sizeof(long) * (size_t)(n ? n : 1), "the images by group");
    double *cum = SR_MALLOC(sizeof(double) * (size_t)(groups ? groups : 1), "the groups' weights");
    for (long i = 0; i < n; i++)
        if (group[i] >= 0) start[group[i] + 1]++;
    for (int g = 0; g < groups; g++) start[g + 1] += start[g];
    const long L = start[groups];
    long *fill = SR_CALLOC((size_t)groups + 1, sizeof(long), "the groups' fill");
    for (long i = 0; i < n; i++)
        if (group[i] >= 0) order[start[group[i]] + fill[group[i]]++] = i;
    free(fill);
    for (int kind = 0; kind < 2; kind++) {
        double total = 0.0;
        for (int g = 0; g < groups; g++) {
            const double ng = (double)(start[g + 1] - start[g]);
            total += kind == 0 ? ng * (ng - 1.0) : ng * ((double)L - ng);
            cum[g] = total;
        }
        have[kind] = total > 0.0;
        long long *out = pair + (size_t)kind * SR_OVERLAP_PAIRS * 2;
        for (long p = 0; p < SR_OVERLAP_PAIRS; p++) {
            if (total <= 0.0) {
                out[2 * p] = out[2 * p + 1] = -1;
                continue;
            }
            const sr_rng_stream st = {.seed = seed, .domain = SR_RNG_CLUSTER, .i0 = SAMPLE_TAG, .i1 = (uint32_t)kind,
                                      .i2 = (uint32_t)p};
            uint32_t w[8];
            sr_rng_words(&st, 0, 6, w);
            const double u = (double)(word64(w) >> 11) * 0x1.0p-53 * total;
            int lo = 0, hi = groups - 1; /* the first group whose cumulative weight exceeds u */
            while (lo < hi) {
                const int mid = (lo + hi) / 2;
                if (cum[mid] > u) hi = mid;
                else lo = mid + 1;
            }
            const long ng = start[lo + 1] - start[lo], a = (long)(word64(w + 2) % (uint64_t)ng);
            const long q = (long)(word64(w + 4) % (uint64_t)(kind == 0 ? ng - 1 : L - ng));
            const long b = kind == 0 ? start[lo] + (q < a ? q : q + 1) : (q < start[lo] ? q : q + ng);
            out[2 * p] = order[start[lo] + a];
            out[2 * p + 1] = order[b];
        }
    }
    free(start), free(order), free(cum);
}

/* Each rank sums the sampled pairs whose first image is its own, when the
 * block holding the second passes. */
static void sample_visit(const sr_shard_sets *own, const sr_shard_sets *other, int t, void *ctx)
{
    sample_sums *e = ctx;
    const int w = own->words;
    for (int kind = 0; kind < 2; kind++) {
        const long long *pair = e->pair + (size_t)kind * SR_OVERLAP_PAIRS * 2;
        int64_t sum = 0, sq = 0;
#pragma omp parallel for schedule(static) reduction(+ : sum, sq)
        for (long p = 0; p < SR_OVERLAP_PAIRS; p++) {
            const long long a = pair[2 * p] - own->first, b = pair[2 * p + 1] - other->first;
            if (pair[2 * p] < 0 || a < 0 || a >= own->mine || b < 0 || b >= other->mine) continue;
            const double j = sr_jaccard(own->sets + (size_t)a * w, other->sets + (size_t)b * w, w);
            sum += sr_on_grid(j, e->e), sq += sr_on_grid(j * j, e->e);
        }
        e->sum[kind] += sum, e->sq[kind] += sq;
    }
}

void sr_overlap_jaccard(const semrep_comm *comm, const sr_shard_sets *s, long exact_max, uint32_t seed, sr_overlap *out)
{
    memset(out, 0, sizeof *out);
    if (s->n <= exact_max) {
        exact_sums e = {.rank = comm->rank, .size = comm->size,
                        .e = sr_grid_exponent(1.0, (double)s->n * (double)(s->n - 1) / 2.0)}; /* overlaps are at most 1 */
        ring(comm, s, comm->size / 2 + 1, exact_visit, &e);
        sr_comm_sum_exact(comm, e.sum, 2);
        sr_comm_sum(comm, e.pairs, 2);
        for (int k = 0; k < 2; k++) {
            out->mean[k] = e.pairs[k] > 0 ? sr_off_grid(e.sum[k], e.e) / e.pairs[k] : NAN;
            out->pairs[k] = e.pairs[k];
        }
        return;
    }
    out->sampled = 1;
    out->sample = SR_MALLOC(sizeof(long long) * 4 * SR_OVERLAP_PAIRS, "the sampled pairs");
    int *group = all_groups(comm, s);
    double have[2];
    draw_sample(group, s->n, seed, out->sample, have);
    free(group);
    const double m = (double)SR_OVERLAP_PAIRS;
    sample_sums e = {.pair = out->sample, .e = sr_grid_exponent(1.0, m)};
    ring(comm, s, comm->size, sample_visit, &e);
    sr_comm_sum_exact(comm, e.sum, 2);
    sr_comm_sum_exact(comm, e.sq, 2);
    for (int k = 0; k < 2; k++) {
        out->pairs[k] = have[k] ? m : 0.0;
        out->mean[k] = have[k] ? sr_off_grid(e.sum[k], e.e) / m : NAN;
        const double sq = sr_off_grid(e.sq[k], e.e);
        out->se[k] = have[k] ? sqrt(fmax(sq - m * out->mean[k] * out->mean[k], 0.0) / (m - 1.0) / m) : NAN;
    }
}

/* ---- distinct sets ------------------------------------------------------------ */

static uint64_t set_hash(const uint64_t *set, int words)
{
    uint64_t h = 0x9e3779b97f4a7c15u;
    for (int w = 0; w < words; w++) { /* splitmix64 finaliser over each word */
        uint64_t z = h ^ set[w];
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
        h = z ^ (z >> 31);
    }
    return h;
}

static int cmp_sets(const void *a, const void *b, void *words)
{
    return memcmp(a, b, sizeof(uint64_t) * (size_t)*(int *)words);
}

long sr_overlap_distinct(const semrep_comm *comm, const sr_shard_sets *s)
{
    const int P = comm->size, w = s->words;
    const size_t row = sizeof(uint64_t) * (size_t)w;
    size_t *counts = SR_CALLOC((size_t)P, sizeof(size_t), "the counts per rank");
    int *dest = SR_MALLOC(sizeof(int) * (size_t)(s->mine ? s->mine : 1), "the sets' ranks");
    for (long i = 0; i < s->mine; i++) {
        dest[i] = (int)(set_hash(s->sets + (size_t)i * w, w) % (uint64_t)P);
        counts[dest[i]] += row;
    }
    size_t *offset = SR_MALLOC(sizeof(size_t) * (size_t)P, "the sets' offsets");
    size_t total = 0;
    for (int r = 0; r < P; r++) offset[r] = total, total += counts[r];
    char *send = SR_MALLOC(total ? total : 1, "the sets to send");
    for (long i = 0; i < s->mine; i++) {
        memcpy(send + offset[dest[i]], s->sets + (size_t)i * w, row);
        offset[dest[i]] += row;
    }
    size_t got;
    char *recv = sr_comm_exchange(comm, send, counts, &got);
    free(send), free(dest), free(offset), free(counts);
    const long m = (long)(got / row);
    double distinct = 0.0;
    if (m > 0) {
        int words = w;
        qsort_r(recv, (size_t)m, row, cmp_sets, &words);
        distinct = 1.0;
        for (long i = 1; i < m; i++) distinct += memcmp(recv + (size_t)i * row, recv + (size_t)(i - 1) * row, row) != 0;
    }
    free(recv);
    sr_comm_sum(comm, &distinct, 1);
    return (long)distinct;
}
