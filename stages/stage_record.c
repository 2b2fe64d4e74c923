/* `semrep run`'s records of the stages that have no check of its own
 * (stages/stage.h): .semrep-done-NAME in the output folder. */
#include <netcdf.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "io/files.h"
#include "io/nc.h"
#include "io/outdir.h"
#include "stages/phi_file.h"
#include "stages/stage.h"

/* The key of a stage's run: the effective conf, its output's format
 * version and what its inputs hold. */
static void stage_key(const semrep_conf *conf, const sr_stage *stage, const char *model, char key[17])
{
    XXH3_state_t *h = XXH3_createState();
    SR_CHECK(h, "out of memory making the record of stage %s", stage->name);
    XXH3_64bits_reset(h);
    XXH3_64bits_update(h, conf->text, strlen(conf->text));
    XXH3_64bits_update(h, &stage->version, sizeof stage->version);
    for (int i = 0; i < 6 && stage->inputs[i][0]; i++) {
        char path[2 * SR_PATH_MAX], text[64] = "";
        sr_file_id stamp = {0};
        if (!strcmp(stage->inputs[i][0], "@model")) snprintf(path, sizeof path, "%s", model);
        else snprintf(path, sizeof path, "%s/%s", conf->output_dir, stage->inputs[i][0]);
        if (stage->inputs[i][1]) sr_file_text_attr(path, stage->inputs[i][1], text, sizeof text);
        else sr_file_stamp(path, &stamp);
        XXH3_64bits_update(h, text, sizeof text);
        XXH3_64bits_update(h, &stamp, sizeof stamp);
    }
    snprintf(key, 17, "%016llx", (unsigned long long)XXH3_64bits_digest(h));
    XXH3_freeState(h);
}

static void record_path(const semrep_conf *conf, const sr_stage *stage, char *path, size_t len)
{
    snprintf(path, len, "%s/.semrep-done-%s", conf->output_dir, stage->name);
}

/* A NetCDF output holds the format_version this semrep writes (the
 * report's page has none: its version is in the key alone). */
static bool current_format(const char *path, int version)
{
    const size_t n = strlen(path);
    if (n < 3 || strcmp(path + n - 3, ".nc")) return true;
    int ncid, have = 0;
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) return false;
    const bool same = sr_nc_get_ints(ncid, NC_GLOBAL, "format_version", &have, 1) == 1 && have == version;
    nc_close(ncid);
    return same;
}

bool sr_stage_up_to_date(const semrep_conf *conf, const sr_stage *stage, const char *model)
{
    char key[17], have[17] = "", path[2 * SR_PATH_MAX], name[64];
    if (!stage->output) return false;
    snprintf(path, sizeof path, "%s/%s", conf->output_dir, stage->output);
    if (access(path, F_OK) != 0 || !current_format(path, stage->version)) return false;
    snprintf(name, sizeof name, ".semrep-done-%s", stage->name);
    if (!sr_outdir_owns(conf->output_dir, name)) return false;
    stage_key(conf, stage, model, key);
    record_path(conf, stage, path, sizeof path);
    FILE *in = fopen(path, "r");
    if (!in) return false;
    const bool same = fscanf(in, "%16s", have) == 1 && !strcmp(have, key);
    fclose(in);
    return same;
}

void sr_stage_record(const semrep_conf *conf, const sr_stage *stage, const char *model)
{
    char key[17], path[2 * SR_PATH_MAX], tmp[2 * SR_PATH_MAX + 32];
    if (!stage->output) return;
    stage_key(conf, stage, model, key);
    record_path(conf, stage, path, sizeof path);
    sr_tmp_path(path, tmp, sizeof tmp);
    FILE *out = fopen(tmp, "w");
    if (!out) return; /* no record: the stage runs again next time */
    fprintf(out, "%s format_version %d\n", key, stage->version);
    if (fclose(out) == 0) sr_outdir_commit(tmp, conf->output_dir, strrchr(path, '/') + 1);
    else sr_temp_remove(tmp);
}
