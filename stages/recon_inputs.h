/* What the reconstruct stage takes from its conf and from earlier stages:
 * the targets (images, clusters of clusters.nc, or none), the channel mask
 * (stats.nc's selective or non-selective channels) and the data set's mean
 * image, where samples start. */
#ifndef SEMREP_STAGES_RECON_INPUTS_H
#define SEMREP_STAGES_RECON_INPUTS_H

#include <stdbool.h>
#include <stddef.h>

#include "comm/comm.h"
#include "io/conf.h"
#include "io/dataset.h"

#define SR_RECON_MAX_MEMBERS 64 /* a cluster target's images: its members nearest the centre */

enum { SR_TARGET_IMAGE = 0, SR_TARGET_CLUSTER = 1, SR_TARGET_NONE = 2 };

typedef struct {
    int kind;
    long id;                               /* image position or cluster number */
    int nimages;
    long images[SR_RECON_MAX_MEMBERS];     /* positions of the images whose mean phi is the target */
} sr_recon_target;

/* The targets the conf names (one of kind NONE for the unconditional
 * sampler): a malloc'd array and its count; -1 with err (an image beyond
 * the data, a cluster clusters.nc does not have). */
int sr_recon_targets(const semrep_conf *conf, const sr_dataset *ds, bool conditional, sr_recon_target **targets,
                     int *count, char *err, size_t errlen);

/* The projection's mask over the kmid middle-block channels (1: matched; a
 * malloc'd array) and how many are matched; -1 with err. */
int sr_recon_mask(const semrep_conf *conf, int kmid, float **mask, int *masked, char *err, size_t errlen);

/* Collective: the data set's mean value per colour channel as a constant
 * image (malloc'd). The sums of fixed chunks of 256 images meet on rank 0
 * and are added in chunk order: the same image on any number of ranks. */
float *sr_recon_mean_image(sr_dataset *ds, const semrep_comm *comm);

#endif
