/* clusters.nc (docs/formats.md): its variables in tables, which the
 * cluster stage writes from and its readers check. A "space" is phi's (per
 * sigma, the sigma dimension first) or the raw pixels' (prefixed pixel_,
 * no sigma); the linear probe's variables are stages/probe.c's. */
#ifndef SEMREP_STAGES_CLUSTERS_FILE_H
#define SEMREP_STAGES_CLUSTERS_FILE_H

#include "io/nc.h"

enum {
    SR_CLUSTERS_INERTIA, SR_CLUSTERS_NMI, SR_CLUSTERS_PURITY, SR_CLUSTERS_ARI, SR_CLUSTERS_WITHIN,
    SR_CLUSTERS_ACROSS, SR_CLUSTERS_ASSIGN, SR_CLUSTERS_SIZE, SR_CLUSTERS_MEMBERS, SR_CLUSTERS_NBR,
    SR_CLUSTERS_NBR_D, SR_CLUSTERS_KNN, SR_CLUSTERS_N
};
extern const sr_nc_var sr_clusters_space_vars[SR_CLUSTERS_N];

/* The variables outside the spaces. */
enum { SR_CLUSTERS_F_SIGMA, SR_CLUSTERS_F_K, SR_CLUSTERS_F_KNN, SR_CLUSTERS_F_QUERY, SR_CLUSTERS_F_N };
extern const sr_nc_var sr_clusters_file_vars[SR_CLUSTERS_F_N];

#endif
