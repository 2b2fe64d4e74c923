/* Opening a data set as a stage does: every rank together. A PNG folder's
 * manifest is built (or brought up to date) in parallel, each rank checking
 * its share of the new files; a gzipped IDX file is uncompressed once by
 * rank 0. Then every rank opens the same data set. */
#ifndef SEMREP_STAGES_DATA_H
#define SEMREP_STAGES_DATA_H

#include <stddef.h>
#include <xxhash.h>

#include "comm/comm.h"
#include "io/dataset.h"

/* Collective. 0, or -1 on every rank with the reason in err (on the rank
 * that found it; the others say which rank). */
int sr_data_open(const sr_dataset_conf *dc, const char *work_dir, const semrep_comm *comm, sr_dataset **ds,
                 char *err, size_t errlen);

/* Which source the images come from, not which or how many of them:
 * "png /data/folder", "idx /path/images.gz", "netcdf /path/file.nc". */
void sr_data_source_id(const sr_dataset_conf *c, char *out, size_t len);

/* Adds to a fingerprint what identifies a data set's images: its
 * description, its content stamp and the source index of every image used. */
void sr_data_hash(XXH3_state_t *h, const sr_dataset *ds);

#endif
