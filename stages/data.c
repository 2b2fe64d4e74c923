#include "stages/data.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "comm/shard.h"
#include "core/check.h"
#include "io/files.h"
#include "io/manifest.h"
#include "io/outdir.h"

/* After a step that may fail on some ranks: all go on, or all stop. */
static int agree(const semrep_comm *comm, int rc, char *err, size_t errlen)
{
    if (!sr_comm_any(comm, rc)) return 0;
    if (!rc) snprintf(err, errlen, "another rank failed opening the data set (its message is above)");
    return -1;
}

/* Rank 0 lists the folder and keeps the verdicts of unchanged files; the
 * names still to check go to every rank; each checks a contiguous share; the
 * reasons come back to rank 0, which writes the manifest. */
/* The names of the files to check, packed "name\0name\0...", from rank 0
 * (which lists them in pending) to every rank; their count. */
static long share_names(const semrep_comm *comm, const sr_manifest *m, const long *pending, long todo, char **packed)
{
    size_t packed_len = 0;
    if (comm->rank == 0) {
        for (long k = 0; k < todo; k++) packed_len += strlen(m->entries[pending[k]].name) + 1;
        *packed = SR_MALLOC(packed_len + 1, "the files to check");
        size_t at = 0;
        for (long k = 0; k < todo; k++) {
            const size_t n = strlen(m->entries[pending[k]].name) + 1;
            memcpy(*packed + at, m->entries[pending[k]].name, n);
            at += n;
        }
    }
    long sizes[2] = {todo, (long)packed_len};
    sr_comm_bcast(comm, sizes, sizeof sizes, 0);
    if (comm->rank != 0) *packed = SR_MALLOC((size_t)sizes[1] + 1, "the files to check");
    sr_comm_bcast(comm, *packed, (size_t)sizes[1], 0);
    return sizes[0];
}

/* This rank's share of the files: its verdicts as "k\treason\n" lines for the bad ones. */
static char *check_share(const sr_dataset_conf *dc, const semrep_comm *comm, const char *packed, long todo,
                         size_t *out_len)
{
    long first, end;
    sr_shard(todo, 1, comm->rank, comm->size, &first, &end);
    sr_manifest share = {.max_pixels = dc->max_pixels};
    snprintf(share.folder, sizeof share.folder, "%s", dc->path);
    float *scratch = SR_MALLOC(sizeof(float) * (size_t)dc->channels * dc->size * dc->size, "a PNG check");
    size_t out_cap = 256;
    char *out = SR_MALLOC(out_cap, "the verdicts");
    const char *name = packed;
    *out_len = 0;
    for (long k = 0; k < end; k++, name += strlen(name) + 1) {
        if (k < first) continue;
        sr_manifest_entry e = {0};
        snprintf(e.name, sizeof e.name, "%s", name);
        sr_manifest_check(&share, &e, dc->channels, dc->size, scratch);
        if (!e.reason[0]) continue;
        while (*out_len + SR_REASON_MAX + 32 > out_cap) out = SR_REALLOC(out, out_cap *= 2, 1, "the verdicts");
        *out_len += (size_t)sprintf(out + *out_len, "%ld\t%s\n", k, e.reason);
    }
    free(scratch);
    return out;
}

/* Rank 0: every pending file checked, the bad ones with their reasons; the
 * manifest written (one of the folder's files semrep owns). */
static int write_verdicts(const char *work_dir, const char *path, sr_manifest *m, const long *pending, long todo,
                          char *all, size_t all_len, char *err, size_t errlen)
{
    for (long k = 0; k < todo; k++) m->entries[pending[k]].checked = true;
    for (char *line = all; line < all + all_len;) {
        char *next = memchr(line, '\n', (size_t)(all + all_len - line));
        *next = '\0';
        char *tab = strchr(line, '\t');
        const long k = atol(line);
        snprintf(m->entries[pending[k]].reason, SR_REASON_MAX, "%s", tab + 1);
        line = next + 1;
    }
    const char *manifest = strrchr(path, '/') + 1;
    int rc = sr_outdir_check(work_dir, manifest, err, errlen);
    if (!rc) rc = sr_manifest_write(path, m, err, errlen);
    if (!rc) sr_outdir_register(work_dir, &manifest, 1);
    return rc;
}

static int build_manifest(const sr_dataset_conf *dc, const char *work_dir, const semrep_comm *comm, char *err,
                          size_t errlen)
{
    sr_manifest m = {0}, old;
    char path[SR_PATH_MAX * 2];
    sr_manifest_path(work_dir, dc->path, path, sizeof path);
    int rc = 0;
    long todo = 0;
    long *pending = NULL;
    if (comm->rank == 0) {
        rc = sr_make_dirs(work_dir, err, errlen);
        if (!rc) rc = sr_manifest_list(dc->path, dc->max_pixels, &m, err, errlen);
        char why[SR_PATH_MAX * 2 + 128];
        if (!rc && !sr_manifest_read(path, &old, why, sizeof why)) {
            sr_manifest_reuse(&m, &old);
            sr_manifest_free(&old);
        } else if (!rc && access(path, F_OK) == 0) {
            /* damaged, or of another version: never a reason to stop (docs/datasets.md) */
            fprintf(stderr, "semrep: note: %s; building it again: every file of the folder is decoded once more\n", why);
        }
        pending = SR_MALLOC(sizeof(long) * (size_t)(m.count + 1), "the files to check");
        for (long i = 0; !rc && i < m.count; i++)
            if (!m.entries[i].checked) pending[todo++] = i;
    }
    if (agree(comm, rc, err, errlen)) {
        sr_manifest_free(&m);
        free(pending);
        return -1;
    }
    char *packed = NULL, *all;
    size_t out_len, all_len;
    todo = share_names(comm, &m, pending, todo, &packed);
    char *out = check_share(dc, comm, packed, todo, &out_len);
    sr_comm_gather(comm, out, out_len, &all, &all_len);
    free(out), free(packed);
    if (comm->rank == 0) rc = write_verdicts(work_dir, path, &m, pending, todo, all, all_len, err, errlen);
    free(all), free(pending);
    sr_manifest_free(&m);
    return agree(comm, rc, err, errlen);
}

int sr_data_open(const sr_dataset_conf *dc, const char *work_dir, const semrep_comm *comm, sr_dataset **ds,
                 char *err, size_t errlen)
{
    *ds = NULL;
    if (!strcmp(dc->kind, "png") && build_manifest(dc, work_dir, comm, err, errlen)) return -1;
    /* Rank 0 first: it makes the shared things (the uncompressed IDX copy). */
    int rc = 0;
    if (comm->rank == 0) rc = sr_dataset_open(ds, dc, work_dir, err, errlen);
    if (agree(comm, rc, err, errlen)) {
        sr_dataset_close(*ds);
        *ds = NULL;
        return -1;
    }
    if (comm->rank != 0) rc = sr_dataset_open(ds, dc, work_dir, err, errlen);
    if (agree(comm, rc, err, errlen)) {
        sr_dataset_close(*ds);
        *ds = NULL;
        return -1;
    }
    return 0;
}

void sr_data_source_id(const sr_dataset_conf *c, char *out, size_t len)
{
    snprintf(out, len, "%s %s", c->kind, !strcmp(c->kind, "png") ? c->path : !strcmp(c->kind, "idx") ? c->images : c->file);
}

void sr_data_hash(XXH3_state_t *h, const sr_dataset *ds)
{
    XXH3_64bits_update(h, ds->description, strlen(ds->description));
    XXH3_64bits_update(h, ds->stamp, sizeof ds->stamp);
    for (long i = 0; i < ds->count; i++) {
        const long o = sr_dataset_origin(ds, i);
        XXH3_64bits_update(h, &o, sizeof o);
    }
}
