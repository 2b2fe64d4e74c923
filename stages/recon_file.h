/* recon.nc (docs/formats.md): its variables in one table, which the
 * reconstruct stage writes from and the report reads through. */
#ifndef SEMREP_STAGES_RECON_FILE_H
#define SEMREP_STAGES_RECON_FILE_H

#include <stddef.h>

#include "stages/job.h"
#include "stages/recon_measures.h"
#include "stages/samplers.h"

#define SR_RECON_FORMAT "semrep-recon"
#define SR_RECON_VERSION 1

enum {
    SR_RECON_TARGET_KIND, SR_RECON_TARGET_ID, SR_RECON_SAMPLES, SR_RECON_ASIGMA, SR_RECON_TARGET_PHI,
    SR_RECON_SAMPLE_PHI, SR_RECON_PHI_ERROR, SR_RECON_STEPS, SR_RECON_FAILED, SR_RECON_REASON,
    SR_RECON_OWN_CLUSTER, SR_RECON_NN_LABEL, SR_RECON_DIVERSITY, SR_RECON_NEAREST_CLUSTER, SR_RECON_NEAREST_IMAGE,
    SR_RECON_CHANNEL_MASK, SR_RECON_NVARS
};

/* Everything recon.nc holds; T targets of S samples, A analysis sigmas. */
typedef struct {
    int targets, samples, channels, size, nanalysis, kmid;
    const int *target_kind;            /* [T] 0 image, 1 cluster, 2 none */
    const long long *target_id;        /* [T] */
    const float *x;                    /* [T * S][channels * size * size] */
    const double *asigma;              /* [A] */
    const float *target_phi;           /* [A][T][kmid] */
    const float *sample_phi;           /* [A][T * S][kmid] */
    const float *phi_error;            /* [A][T * S] */
    const float *channel_mask;         /* [kmid] 1: a channel the projection matched */
    const int *steps, *failed;         /* [T * S] */
    const char (*reason)[SR_REASON_LEN];
    const sr_recon_measures *measures;
    double measures_sigma;
    const char *sampler, *mask, *conf_text;
} sr_recon_content;

/* Writes recon.nc to path (a temporary name the caller commits). */
void sr_recon_write(const char *path, const sr_recon_content *c, const sr_job_identity *id);

/* Target t's picture, a path in the output folder: its images, a gap, its samples. */
#define SR_RECON_NAME_LEN 40
void sr_recon_target_name(int t, char name[SR_RECON_NAME_LEN]);
/* The first T of them (one malloc). */
const char **sr_recon_target_names(int T);

/* Opens a recon.nc and checks its format, version and variables (ids);
 * the ncid, or -1 with err naming the file and what is wrong. */
int sr_recon_open(const char *path, int ids[SR_RECON_NVARS], char *err, size_t errlen);

#endif
