/* One skeleton for resumable, sharded work: phi's chunks, reconstruct's
 * batches. The work is cut into units. A unit is computed whole by one
 * rank and committed as a small file (written under a temporary name,
 * renamed) in a folder of the output folder, stamped with the job's
 * fingerprint; a run finds the units already there and does only the
 * others, so a killed job restarted with the same command continues. Units
 * are dealt to SLURM array tasks (t, t + tasks, ...) and each task's are cut
 * among the ranks. When every unit is there, a run of one task assembles
 * the output under a temporary name, renames it into place (and into the
 * output folder's ownership record), and only then removes the units.
 *
 * The stage brings its compute, unit-writing and assembly steps; the job
 * owns the loop, the files, the done checks, the stop-after count, the
 * decision about an existing output (up to date, reusable, made again, or
 * refused) and the clean-up. docs/architecture.md draws it. */
#ifndef SEMREP_STAGES_JOB_H
#define SEMREP_STAGES_JOB_H

#include <stdbool.h>
#include <stddef.h>

#include "comm/comm.h"
#include "io/conf.h"
#include "io/dataset.h"
#include "nn/unet.h"
#include "stages/fingerprint.h"

/* What an output depends on (stages/fingerprint.h): with the images
 * (fingerprint), without them (provenance: rows of one file valid in
 * another), the model's checksum and the data set's source. */
typedef struct {
    char fingerprint[17], provenance[17], checksum[17];
    char source[SR_PATH_MAX + 32];      /* sr_data_source_id */
    char description[2 * SR_PATH_MAX];  /* the data set's description, for messages */
} sr_job_identity;

/* Starts an output's identity: the data set's source and description, the
 * model's checksum, and a fingerprint of what every output depends on (the
 * model, the seed, the noise version, a GPU backend and its products).
 * The stage adds its settings, takes id->provenance, adds the images
 * (sr_fp_data) and what else depends on them, and takes id->fingerprint. */
void sr_job_identity_begin(sr_job_identity *id, sr_fingerprint *fp, const char *what, const semrep_conf *conf,
                           const sr_unet *net, const sr_dataset *ds);

typedef struct {
    const char *stage;       /* "phi": the messages' prefix */
    const char *output;      /* the output's name in the output folder: "phi.nc" */
    const char *unit_dir;    /* the units' folder in the output folder: "phi-chunks" */
    const char *unit_name;   /* "chunk": files unit_dir/chunk-0000000012.nc */
    const char *unit_format; /* their `format` attribute */
    const char *run_key;     /* the conf key that stops a run early: "phi.run_chunks" */
    long units;
    int task, tasks;         /* this array task and how many share the units */
    long run_units;          /* stop after computing this many units per rank; 0: all */
    void *ctx;               /* the stage's, handed to each step */
    /* Computes unit u (on this rank alone). */
    void (*compute)(void *ctx, long u);
    /* Defines and writes the computed unit's dimensions and variables into
     * the open unit file (in define mode; the job's attributes are there). */
    void (*write_unit)(void *ctx, long u, int ncid, const char *file);
    /* Optional: whether the unit file, of this fingerprint, holds unit u;
     * thorough at the start of the work (it may read the images). */
    bool (*unit_matches)(void *ctx, long u, int ncid, const char *path, bool thorough);
    /* Optional: after each unit this rank computed (done of mine so far). */
    void (*progress)(void *ctx, long u, long done, long mine);
    /* Collective: writes the output to tmp (every rank, or rank 0 alone and
     * the others wait); 0, or -1 with err. */
    int (*assemble)(void *ctx, const char *tmp, char *err, size_t errlen);
} sr_job;

/* What an existing output is to this job. */
typedef enum {
    SR_OUTPUT_REFUSED = -1, /* made from another model, data set or settings: err says which */
    SR_OUTPUT_ABSENT = 0,   /* none, or one to make again (another noise or fingerprint version; a note says so) */
    SR_OUTPUT_CURRENT = 1,  /* up to date */
    SR_OUTPUT_REUSABLE = 2, /* same model, settings and data source, other images: its rows hold */
} sr_output_state;

/* Collective: rank 0 reads the output and every rank gets its answer;
 * a refusal comes back with err on rank 0. Refused too when the ranks'
 * fingerprints differ (another backend, or other CPU kernels, on some). */
sr_output_state sr_job_output_state(const sr_job *job, const sr_job_identity *id, const semrep_conf *conf,
                                    const semrep_comm *comm, char *err, size_t errlen);

/* The identity attributes every output and unit carries (docs/formats.md):
 * fingerprint, fingerprint_version, provenance, checkpoint_checksum,
 * dataset_source, noise_version. */
void sr_job_put_identity(int ncid, const sr_job_identity *id, const char *file);

/* Unit u's file, and whether it is there for this identity (not thorough). */
void sr_job_unit_path(const sr_job *job, const semrep_conf *conf, long u, char *out, size_t len);
bool sr_job_unit_done(const sr_job *job, const sr_job_identity *id, const semrep_conf *conf, long u);

typedef enum { SR_JOB_WRITTEN = 0, SR_JOB_STOPPED = 1, SR_JOB_FAILED = -1 } sr_job_result;

/* Collective: computes this task's and rank's missing units, then, in a
 * run of one task with every unit there, assembles the output and removes
 * the units. SR_JOB_STOPPED when units remain (run_units, or another
 * array task's); SR_JOB_FAILED with err from assemble. */
sr_job_result sr_job_run(const sr_job *job, const sr_job_identity *id, const semrep_conf *conf, semrep_comm *comm,
                         char *err, size_t errlen);

#endif
