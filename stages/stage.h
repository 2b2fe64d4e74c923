/* The stages: each one function of the same shape (shared/DESIGN.md),
 * reading only files and writing only files in the run's output folder.
 * Collective over all ranks. Returns 0 when done.
 *
 * One failure rule (docs/architecture.md, "Errors"):
 * - A refusal of user input returns 1: a conf value, a file the user named
 *   (the data set, a checkpoint), a file of an earlier stage that is missing,
 *   damaged or of another run, a file in the output folder that semrep did
 *   not write, a model or batch that does not fit, a training that diverges at
 *   the conf's learning rate. The ranks agree first (sr_comm_any, or a value
 *   every rank shares), then rank 0 prints one line naming the thing and
 *   what to do (sr_comm_error). Before returning, every rank releases what
 *   it opened, a rank whose own part succeeded too, and removes its
 *   temporary files (sr_temp_remove).
 * - An internal error dies through the fatal-error hook (SR_CHECK, SR_FAIL,
 *   SR_NC, SR_CHECK_WRITE, SR_MALLOC and its siblings: core/check.h), which
 *   removes the registered temporary files and stops every rank: a failed
 *   system call on semrep's own files (a full disk included), a broken
 *   invariant, out of memory. So does an input that fails after it was
 *   accepted (an image that cannot be read any more in the middle of a
 *   stage): only the rank that reads it sees it, and agreeing would cost a
 *   collective per batch. */
#ifndef SEMREP_STAGES_STAGE_H
#define SEMREP_STAGES_STAGE_H

#include <stdbool.h>

#include "comm/comm.h"
#include "io/conf.h"

/* The format_version of the file each stage writes (docs/formats.md), and
 * of the report's page and tables. `semrep run`'s records hold them, so an
 * output of an older version is made again after an upgrade. */
#define SR_DENOISE_FORMAT_VERSION 1
#define SR_STATS_FORMAT_VERSION 2
#define SR_CLUSTERS_FORMAT_VERSION 3 /* 3: the linear probe */
#define SR_REPORT_FORMAT_VERSION 3 /* 2: quoted CSV, the map of phi; 3: the findings checked, the probe */

typedef int (*sr_stage_fn)(const semrep_conf *conf, semrep_comm *comm);

/* A stage. One without a check of its own (not train, phi, reconstruct:
 * they resume and decide for themselves) names its output and inputs, so
 * that `semrep run` skips it when nothing changed: each input is a file in
 * the output folder ("@model": the model) and the attribute that
 * identifies its content, or NULL for its size and time. */
typedef struct {
    const char *name;
    sr_stage_fn run; /* NULL: not built yet */
    const char *what;
    const char *output; /* NULL: the stage decides itself */
    int version;        /* the output's format_version: a record of another is out of date */
    const char *inputs[6][2];
} sr_stage;

/* Every stage, in the order `semrep run` takes them. */
extern const sr_stage sr_stages[];
extern const int sr_stage_count;
const sr_stage *sr_stage_find(const char *name);

/* Rank 0: the stage has an output, it is there, of this semrep's format
 * version, and the record the last run left (.semrep-done-NAME: a key of
 * the effective conf, the format version and what the inputs hold, then
 * the version) holds the same key. */
bool sr_stage_up_to_date(const semrep_conf *conf, const sr_stage *stage, const char *model);
/* Rank 0, after the stage succeeded: writes that record. */
void sr_stage_record(const semrep_conf *conf, const sr_stage *stage, const char *model);

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
