#include "stages/job.h"

#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/shard.h"
#include "core/check.h"
#include "core/rng.h"
#include "io/files.h"
#include "io/nc.h"
#include "io/outdir.h"
#include "stages/data.h"
#include "stages/fingerprint.h"
#include "stages/model.h"
#include "stages/phi_file.h"

#define UNIT_VERSION 1

static void output_path(const sr_job *job, const semrep_conf *conf, char *out, size_t len)
{
    snprintf(out, len, "%s/%s", conf->output_dir, job->output);
}

void sr_job_unit_path(const sr_job *job, const semrep_conf *conf, long u, char *out, size_t len)
{
    snprintf(out, len, "%s/%s/%s-%010ld.nc", conf->output_dir, job->unit_dir, job->unit_name, u);
}

void sr_job_identity_begin(sr_job_identity *id, sr_fingerprint *fp, const char *what, const semrep_conf *conf,
                           const sr_unet *net, const sr_dataset *ds)
{
    sr_data_source_id(&conf->dataset, id->source, sizeof id->source);
    snprintf(id->description, sizeof id->description, "%s", ds->description);
    sr_model_checksum(net, id->checksum);
    sr_fp_begin(fp, what);
    sr_fp_text(fp, "checkpoint_checksum", id->checksum);
    sr_fp_long(fp, "seed", conf->seed);
    sr_fp_long(fp, "noise_version", SR_RNG_NOISE_VERSION);
    sr_fp_backend(fp, net->be, conf->gpu_math);
}

void sr_job_put_identity(int ncid, const sr_job_identity *id, const char *file)
{
    const int version = SR_FINGERPRINT_VERSION;
    sr_nc_put_text(ncid, NC_GLOBAL, "fingerprint", id->fingerprint, file);
    sr_nc_put_ints(ncid, NC_GLOBAL, "fingerprint_version", &version, 1, file);
    sr_nc_put_text(ncid, NC_GLOBAL, "provenance", id->provenance, file);
    sr_nc_put_text(ncid, NC_GLOBAL, "checkpoint_checksum", id->checksum, file);
    sr_nc_put_text(ncid, NC_GLOBAL, "dataset_source", id->source, file);
    sr_nc_put_text(ncid, NC_GLOBAL, "dataset", id->description, file);
    sr_nc_put_noise_version(ncid, file);
}

/* ---- an existing output ------------------------------------------------------ */

/* The versions an output was made under (absent: 1, files from before the
 * attribute), when they are not this semrep's: the output is made again,
 * once, with a note (the upgrade changed them, not the user). */
static bool other_versions(const sr_job *job, const char *path, int ncid)
{
    int noise = 1, scheme = 1;
    sr_nc_get_ints(ncid, NC_GLOBAL, "noise_version", &noise, 1);
    sr_nc_get_ints(ncid, NC_GLOBAL, "fingerprint_version", &scheme, 1);
    if (noise != SR_RNG_NOISE_VERSION)
        printf("%s: %s was drawn with noise version %d, this semrep draws version %d; computing it again\n", job->stage,
               path, noise, SR_RNG_NOISE_VERSION);
    else if (scheme != SR_FINGERPRINT_VERSION)
        printf("%s: %s was fingerprinted under scheme %d, this semrep uses %d; computing it again (once, after an upgrade)\n",
               job->stage, path, scheme, SR_FINGERPRINT_VERSION);
    return noise != SR_RNG_NOISE_VERSION || scheme != SR_FINGERPRINT_VERSION;
}

static sr_output_state read_state(const sr_job *job, const sr_job_identity *id, const semrep_conf *conf, char *err,
                                  size_t errlen)
{
    char path[SR_PATH_MAX + 64];
    output_path(job, conf, path, sizeof path);
    if (access(path, F_OK) != 0) return SR_OUTPUT_ABSENT;
    int ncid;
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) {
        sr_report(err, errlen, "%s exists but cannot be opened; move it away to make it again", path);
        return SR_OUTPUT_REFUSED;
    }
    if (other_versions(job, path, ncid)) {
        nc_close(ncid);
        return SR_OUTPUT_ABSENT;
    }
    char fp[17] = "", prov[17] = "", sum[17] = "", source[SR_PATH_MAX + 32] = "", data[2 * SR_PATH_MAX] = "";
    sr_nc_get_text(ncid, NC_GLOBAL, "fingerprint", fp, sizeof fp);
    sr_nc_get_text(ncid, NC_GLOBAL, "provenance", prov, sizeof prov);
    sr_nc_get_text(ncid, NC_GLOBAL, "checkpoint_checksum", sum, sizeof sum);
    sr_nc_get_text(ncid, NC_GLOBAL, "dataset_source", source, sizeof source);
    sr_nc_get_text(ncid, NC_GLOBAL, "dataset", data, sizeof data);
    nc_close(ncid);
    const bool same_source = !strcmp(source, id->source);
    if (!strcmp(fp, id->fingerprint)) return SR_OUTPUT_CURRENT;
    if (same_source && !strcmp(prov, id->provenance)) return SR_OUTPUT_REUSABLE;
    if (strcmp(sum, id->checksum))
        sr_report(err, errlen, "%s was made from the checkpoint with checksum %s, not this run's %s; move it away or use another output_dir",
                  path, sum, id->checksum);
    else if (!same_source && strcmp(data, id->description))
        sr_report(err, errlen, "%s was made from another data set (%s); move it away or use another output_dir", path, data);
    else
        sr_report(err, errlen, "%s was made with other %s settings or on another backend; move it away or use another output_dir",
                  path, job->stage);
    return SR_OUTPUT_REFUSED;
}

sr_output_state sr_job_output_state(const sr_job *job, const sr_job_identity *id, const semrep_conf *conf,
                                    const semrep_comm *comm, char *err, size_t errlen)
{
    /* Every rank hashes the same model, settings and data: only the backend
     * can make two ranks' fingerprints differ, and their rows must not mix */
    if (!sr_comm_same(comm, strtoull(id->fingerprint, NULL, 16))) {
        sr_report(err, errlen,
                  "the ranks do not agree on %s's fingerprint: their backends differ, or their processors made "
                  "the CPU choose other kernels (`semrep bench` names them on each kind of node); run every rank "
                  "on one kind of node, or build with -DSEMREP_DNNL=OFF",
                  job->output);
        return SR_OUTPUT_REFUSED;
    }
    int state = comm->rank == 0 ? read_state(job, id, conf, err, errlen) : SR_OUTPUT_ABSENT;
    sr_comm_bcast(comm, &state, sizeof state, 0);
    return (sr_output_state)state;
}

/* ---- units ------------------------------------------------------------------ */

static bool unit_done(const sr_job *job, const sr_job_identity *id, const semrep_conf *conf, long u, bool thorough)
{
    char path[SR_PATH_MAX + 128], format[64] = "", fp[17] = "";
    int ncid;
    sr_job_unit_path(job, conf, u, path, sizeof path);
    if (access(path, R_OK) != 0 || nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) return false;
    bool done = !sr_nc_get_text(ncid, NC_GLOBAL, "format", format, sizeof format) && !strcmp(format, job->unit_format) &&
                !sr_nc_get_text(ncid, NC_GLOBAL, "fingerprint", fp, sizeof fp) && !strcmp(fp, id->fingerprint);
    if (done && job->unit_matches) done = job->unit_matches(job->ctx, u, ncid, path, thorough);
    nc_close(ncid);
    return done;
}

bool sr_job_unit_done(const sr_job *job, const sr_job_identity *id, const semrep_conf *conf, long u)
{
    return unit_done(job, id, conf, u, false);
}

static void write_unit(const sr_job *job, const sr_job_identity *id, const semrep_conf *conf, long u)
{
    char path[SR_PATH_MAX + 128], tmp[SR_PATH_MAX + 160];
    const int version = UNIT_VERSION;
    sr_job_unit_path(job, conf, u, path, sizeof path);
    sr_tmp_path(path, tmp, sizeof tmp);
    int ncid;
    SR_NC(nc_create(tmp, NC_NETCDF4 | NC_CLOBBER, &ncid), tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "format", job->unit_format, tmp);
    sr_nc_put_ints(ncid, NC_GLOBAL, "format_version", &version, 1, tmp);
    sr_nc_put_text(ncid, NC_GLOBAL, "fingerprint", id->fingerprint, tmp);
    job->write_unit(job->ctx, u, ncid, tmp);
    SR_NC(nc_close(ncid), tmp);
    sr_commit_file(tmp, path);
}

/* This task's units, q = 0, 1, ...: units task, task + tasks, ... */
static long task_units(const sr_job *job) { return job->units > job->task ? (job->units - job->task + job->tasks - 1) / job->tasks : 0; }

/* Computes this rank's missing units of this task; true when it stopped at run_units. */
static bool compute_units(const sr_job *job, const sr_job_identity *id, const semrep_conf *conf, const semrep_comm *comm)
{
    long first, end, computed = 0;
    sr_shard(task_units(job), 1, comm->rank, comm->size, &first, &end);
    for (long q = first; q < end; q++) {
        const long u = job->task + q * job->tasks;
        if (unit_done(job, id, conf, u, true)) continue;
        if (job->run_units && computed == job->run_units) return true;
        job->compute(job->ctx, u);
        write_unit(job, id, conf, u);
        computed++;
        if (job->progress) job->progress(job->ctx, u, q - first + 1, end - first);
    }
    return false;
}

/* Collective: every unit of every task is there (each rank checks a share). */
static bool all_done(const sr_job *job, const sr_job_identity *id, const semrep_conf *conf, const semrep_comm *comm)
{
    long first, end;
    bool missing = false;
    sr_shard(job->units, 1, comm->rank, comm->size, &first, &end);
    for (long u = first; u < end && !missing; u++) missing = !unit_done(job, id, conf, u, false);
    return !sr_comm_any(comm, missing);
}

static void remove_units(const sr_job *job, const semrep_conf *conf, const semrep_comm *comm)
{
    long first, end;
    char path[SR_PATH_MAX + 128];
    sr_shard(job->units, 1, comm->rank, comm->size, &first, &end);
    for (long u = first; u < end; u++) {
        sr_job_unit_path(job, conf, u, path, sizeof path);
        unlink(path);
    }
    sr_comm_barrier(comm);
    snprintf(path, sizeof path, "%s/%s", conf->output_dir, job->unit_dir);
    if (comm->rank == 0) rmdir(path);
}

static void say_stopped(const sr_job *job, bool early, const semrep_comm *comm)
{
    if (comm->rank != 0) return;
    if (early)
        printf("%s: stopped with %ss to do (%s); run again to resume\n", job->stage, job->unit_name, job->run_key);
    else if (job->tasks > 1)
        printf("%s: this task's %ss are done; run again with %s.tasks = 1 to write %s once every task's are\n",
               job->stage, job->unit_name, job->stage, job->output);
    else
        printf("%s: %ss of another run are missing; run again to compute them\n", job->stage, job->unit_name);
    fflush(stdout);
}

sr_job_result sr_job_run(const sr_job *job, const sr_job_identity *id, const semrep_conf *conf, semrep_comm *comm,
                         char *err, size_t errlen)
{
    char dir[SR_PATH_MAX + 64], path[SR_PATH_MAX + 64], tmp[SR_PATH_MAX + 96];
    snprintf(dir, sizeof dir, "%s/%s", conf->output_dir, job->unit_dir);
    if (comm->rank == 0 && sr_make_dirs(dir, err, errlen)) SR_FAIL("%s", err);
    sr_comm_barrier(comm);
    const bool early = sr_comm_any(comm, compute_units(job, id, conf, comm));
    if (early || job->tasks > 1 || !all_done(job, id, conf, comm)) {
        say_stopped(job, early, comm);
        return SR_JOB_STOPPED;
    }
    output_path(job, conf, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp.assembling", path); /* the same name on every rank */
    if (comm->rank == 0) sr_temp_add(tmp);
    if (sr_comm_any(comm, job->assemble(job->ctx, tmp, err, errlen))) return SR_JOB_FAILED;
    sr_comm_barrier(comm);
    if (comm->rank == 0) sr_outdir_commit(tmp, conf->output_dir, job->output);
    sr_comm_barrier(comm); /* the output is in place: the units are no longer needed */
    remove_units(job, conf, comm);
    return SR_JOB_WRITTEN;
}
