#define _GNU_SOURCE
#include "stages/stage.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "io/files.h"
#include "io/outdir.h"

const sr_stage sr_stages[] = {
    {"train", stage_train, "train the blind denoiser (data-parallel, resumable)", NULL, 0, {{0}}},
    {"denoise-eval", stage_denoise_eval, "output PSNR against input PSNR on held-out images", "denoise.nc",
     SR_DENOISE_FORMAT_VERSION, {{"@model", "checksum"}}},
    {"phi", stage_phi, "the noise-averaged middle-block representation", NULL, 0, {{0}}},
    {"stats", stage_stats, "channel statistics, sparsity, selectivity", "stats.nc", SR_STATS_FORMAT_VERSION,
     {{"phi.nc", "fingerprint"}}},
    {"cluster", stage_cluster, "k-means and neighbours in phi", "clusters.nc", SR_CLUSTERS_FORMAT_VERSION,
     {{"phi.nc", "fingerprint"}}},
    {"reconstruct", stage_reconstruct, "self-guided stochastic reconstruction", NULL, 0, {{0}}},
    {"report", stage_report, "the HTML clustering report", "report/index.html", SR_REPORT_FORMAT_VERSION,
     {{"@model", "checksum"}, {"denoise.nc", NULL}, {"phi.nc", "fingerprint"}, {"stats.nc", NULL},
      {"clusters.nc", NULL}, {"recon.nc", "fingerprint"}}},
};
const int sr_stage_count = (int)(sizeof sr_stages / sizeof sr_stages[0]);

const sr_stage *sr_stage_find(const char *name)
{
    for (int s = 0; s < sr_stage_count; s++)
        if (!strcmp(sr_stages[s].name, name)) return &sr_stages[s];
    return NULL;
}

int sr_output_ready(const char *dir, char *err, size_t errlen)
{
    if (sr_make_dirs(dir, err, errlen)) return -1;
    char probe[4200];
    snprintf(probe, sizeof probe, "%s/.write-test.%ld", dir, (long)getpid());
    sr_temp_add(probe);
    FILE *f = fopen(probe, "w");
    const int why = errno;
    if (f) fclose(f);
    sr_temp_remove(probe);
    char reason[4400];
    if (!f)
        return sr_report(err, errlen, "cannot write in the output folder %s: %s", dir,
                         sr_write_reason(why, probe, "check output_dir", reason, sizeof reason));
    return 0;
}

int sr_outputs_ours(const semrep_conf *conf, const semrep_comm *comm, const char *const *rels, int n)
{
    char err[2 * SR_PATH_MAX] = "";
    int rc = 0;
    for (int i = 0; i < n && comm->rank == 0 && !rc; i++) rc = sr_outdir_check(conf->output_dir, rels[i], err, sizeof err);
    return sr_comm_any(comm, rc) ? sr_comm_error(comm, 1, "%s", err) : 0;
}
