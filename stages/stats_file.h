/* stats.nc (docs/formats.md): its variables in one table, which the stats
 * stage writes from and its readers (reconstruct's mask, the report) check. */
#ifndef SEMREP_STAGES_STATS_FILE_H
#define SEMREP_STAGES_STATS_FILE_H

#include "io/nc.h"

#define SR_STATS_FORMAT "semrep-stats"

enum {
    SR_STATS_SIGMA, SR_STATS_MEAN, SR_STATS_VAR, SR_STATS_MAX, SR_STATS_ACTIVE_SHARE, SR_STATS_KIND,
    SR_STATS_SELECTIVITY, SR_STATS_PR_HIST, SR_STATS_PR_ZERO, SR_STATS_SET_SIZES, SR_STATS_DISTINCT,
    SR_STATS_JACCARD_WITHIN, SR_STATS_JACCARD_ACROSS, SR_STATS_NONSELECTIVE, SR_STATS_WITHIN_PAIRS,
    SR_STATS_ACROSS_PAIRS, SR_STATS_WITHIN_SE, SR_STATS_ACROSS_SE, SR_STATS_JACCARD_SAMPLE, SR_STATS_NVARS
};

/* kind's values */
enum { SR_KIND_SELECTIVE = 0, SR_KIND_NONSELECTIVE = 1, SR_KIND_DEAD = 2 };

extern const sr_nc_var sr_stats_vars[SR_STATS_NVARS];

#endif
