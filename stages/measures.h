/* The measures of docs/analysis.md, as plain functions on host arrays:
 * active sets, participation ratio, Jaccard overlap of two active sets, class
 * selectivity, and the agreement of a clustering with labels (NMI, purity,
 * adjusted Rand index). stats and cluster use them. */
#ifndef SEMREP_STAGES_MEASURES_H
#define SEMREP_STAGES_MEASURES_H

#include <stddef.h>
#include <stdint.h>

/* 64-bit words of a bitset of `channels` bits. */
int sr_set_words(int channels);
/* The active set of one image's phi (channels values): c is active when
 * phi[c] > theta * max phi and phi[c] > 0. Writes words bits; returns its size. */
int sr_active_set(const float *phi, int channels, double theta, uint64_t *set);

/* Normalised participation ratio (sum v)^2 / (C sum v^2), in [1/C, 1];
 * -1 when v is all zero (no ratio). */
double sr_participation_ratio(const float *v, int channels);

/* Jaccard overlap |a & b| / |a | b| of two sets (words each); 1 for two
 * empty sets. Means over pairs of images: stages/set_overlap.h. */
double sr_jaccard(const uint64_t *a, const uint64_t *b, int words);

/* 1 - H(p) / ln(K) for p the per-class means of one channel normalised to
 * sum 1 (K classes): 0 when it is as active for every class, 1 for one class. */
double sr_class_selectivity(const double *class_mean, int classes);

/* Agreement of a clustering (cluster[i] in 0..k-1) with labels (0..classes-1),
 * from their contingency table (k x classes counts, row-major). */
double sr_nmi(const double *table, int k, int classes);   /* arithmetic normalisation, as scikit-learn's default */
double sr_purity(const double *table, int k, int classes);
double sr_ari(const double *table, int k, int classes);
/* The same ARI from two labellings of n items (below 0: left out), without
 * the k x classes table: a sort of the pairs, so K = 100,000 costs n. NaN
 * when no item is labelled by both. */
double sr_ari_labels(const int *a, const int *b, long n);

#endif
