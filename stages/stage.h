/* The stages: each one function of the same shape (shared/DESIGN.md),
 * reading only files and writing only files in the run's output folder.
 * Returns 0 when done, 1 when it failed (after one line on stderr, from
 * rank 0, naming the thing and what to do). Collective over all ranks. */
#ifndef SEMREP_STAGES_STAGE_H
#define SEMREP_STAGES_STAGE_H

#include "comm/comm.h"
#include "io/conf.h"

/* The format_version of the file each stage writes (docs/formats.md), and
 * of the report's page and tables. `semrep run`'s records hold them, so an
 * output of an older version is made again after an upgrade. */
#define SR_DENOISE_FORMAT_VERSION 1
#define SR_STATS_FORMAT_VERSION 2
#define SR_CLUSTERS_FORMAT_VERSION 3 /* 3: the linear probe */
#define SR_REPORT_FORMAT_VERSION 2 /* 2: quoted CSV, the map of phi */

typedef int (*sr_stage_fn)(const semrep_conf *conf, semrep_comm *comm);

typedef struct {
    const char *name;
    sr_stage_fn run; /* NULL: not built yet */
    const char *what;
} sr_stage;

/* Every stage, in the order `semrep run` takes them. */
extern const sr_stage sr_stages[];
extern const int sr_stage_count;
const sr_stage *sr_stage_find(const char *name);

int stage_train(const semrep_conf *conf, semrep_comm *comm);
int stage_denoise_eval(const semrep_conf *conf, semrep_comm *comm);
int stage_phi(const semrep_conf *conf, semrep_comm *comm);
int stage_stats(const semrep_conf *conf, semrep_comm *comm);
int stage_cluster(const semrep_conf *conf, semrep_comm *comm);
int stage_reconstruct(const semrep_conf *conf, semrep_comm *comm);
int stage_report(const semrep_conf *conf, semrep_comm *comm);

/* The output folder exists and takes files; 0, or -1 with err. */
int sr_output_ready(const char *dir, char *err, size_t errlen);
/* Collective, before a stage's work: each of its n outputs (paths in the
 * output folder) is absent or semrep's (io/outdir.h); else 1 after naming
 * the first that semrep did not write. */
int sr_outputs_ours(const semrep_conf *conf, const semrep_comm *comm, const char *const *rels, int n);

#endif
