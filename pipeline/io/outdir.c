#define _GNU_SOURCE
#include "io/outdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/check.h"
#include "io/files.h"
#include "io/nc.h"

#define LOCK_NAME SR_OUTDIR_RECORD ".lock"

/* The record in memory: its paths, sorted, pointing into text or to the caller's strings. */
typedef struct {
    char *text;
    const char **paths;
    size_t n, cap;
} owned;

static int by_name(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static void add(owned *o, const char *path)
{
    if (o->n == o->cap) {
        o->cap = o->cap ? 2 * o->cap : 64;
        o->paths = SR_REALLOC(o->paths, o->cap, sizeof *o->paths, "the ownership record");
    }
    o->paths[o->n++] = path;
}

static void sort(owned *o)
{
    if (o->n) qsort(o->paths, o->n, sizeof *o->paths, by_name);
}

static bool has(const owned *o, const char *path)
{
    return o->n && bsearch(&path, o->paths, o->n, sizeof *o->paths, by_name);
}

static void record_path(const char *dir, const char *name, char *out, size_t len)
{
    SR_CHECK(snprintf(out, len, "%s/%s", dir, name) < (int)len, "path too long: %s/%s", dir, name);
}

/* The record of dir, sorted; empty when there is none (returns 1 then). */
static int load(const char *dir, owned *o)
{
    memset(o, 0, sizeof *o);
    char path[PATH_MAX];
    record_path(dir, SR_OUTDIR_RECORD, path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f) {
        SR_CHECK(errno == ENOENT, "cannot read %s: %s; check the folder's permissions", path, strerror(errno));
        return 1;
    }
    size_t len = 0, cap = 4096;
    o->text = SR_MALLOC(cap + 1, "the ownership record");
    for (size_t got; (got = fread(o->text + len, 1, cap - len, f)) > 0;) {
        len += got;
        if (len == cap) o->text = SR_REALLOC(o->text, (cap *= 2) + 1, 1, "the ownership record");
    }
    SR_CHECK(!ferror(f), "cannot read %s; check the disk", path);
    fclose(f);
    o->text[len] = '\0';
    for (char *line = o->text, *next; *line; line = next) {
        next = line + strcspn(line, "\n");
        if (*next) *next++ = '\0';
        if (*line) add(o, line);
    }
    sort(o);
    return 0;
}

static void release(owned *o)
{
    free(o->text);
    free(o->paths);
}

/* Written whole and renamed over the old one; the caller holds the lock. */
static void save(const char *dir, owned *o)
{
    char path[PATH_MAX], tmp[PATH_MAX + 32];
    record_path(dir, SR_OUTDIR_RECORD, path, sizeof path);
    sr_tmp_path(path, tmp, sizeof tmp);
    sort(o);
    FILE *f = fopen(tmp, "w");
    SR_CHECK(f, "cannot write %s: %s; check the output folder", tmp, strerror(errno));
    for (size_t i = 0; i < o->n; i++)
        if (i == 0 || strcmp(o->paths[i], o->paths[i - 1])) fprintf(f, "%s\n", o->paths[i]);
    SR_CHECK(fclose(f) == 0, "cannot write %s: %s; check the disk", tmp, strerror(errno));
    sr_commit_file(tmp, path);
}

/* Held until close: one writer of the record at a time, across processes and nodes. */
static int lock(const char *dir)
{
    char path[PATH_MAX];
    record_path(dir, LOCK_NAME, path, sizeof path);
    const int fd = open(path, O_RDWR | O_CREAT, 0644);
    SR_CHECK(fd >= 0, "cannot open %s: %s; check the output folder's permissions", path, strerror(errno));
    while (flock(fd, LOCK_EX) != 0) SR_CHECK(errno == EINTR, "cannot lock %s: %s", path, strerror(errno));
    return fd;
}

bool sr_outdir_owns(const char *dir, const char *rel)
{
    owned o;
    load(dir, &o);
    const bool yes = has(&o, rel);
    release(&o);
    return yes;
}

/* sr_outdir_check against a record already read */
static int check_in(const owned *o, const char *dir, const char *rel, char *err, size_t errlen)
{
    char path[PATH_MAX];
    record_path(dir, rel, path, sizeof path);
    struct stat st;
    if (lstat(path, &st) != 0 || has(o, rel)) return 0;
    SR_BAD("%s is there and semrep did not write it (it is not in %s/" SR_OUTDIR_RECORD
           "); move it away or use another output_dir",
           path, dir);
}

int sr_outdir_check(const char *dir, const char *rel, char *err, size_t errlen)
{
    owned o;
    load(dir, &o);
    const int rc = check_in(&o, dir, rel, err, errlen);
    release(&o);
    return rc;
}

void sr_outdir_register(const char *dir, const char *const *rels, size_t n)
{
    owned o;
    load(dir, &o);
    size_t missing = 0;
    for (size_t i = 0; i < n; i++) missing += !has(&o, rels[i]);
    release(&o);
    if (!missing) return;
    const int fd = lock(dir);
    load(dir, &o);
    for (size_t i = 0; i < n; i++) add(&o, rels[i]);
    save(dir, &o);
    release(&o);
    close(fd);
}

void sr_outdir_commit(const char *tmp, const char *dir, const char *rel)
{
    char err[PATH_MAX + 256], path[PATH_MAX];
    if (sr_outdir_check(dir, rel, err, sizeof err)) {
        unlink(tmp);
        SR_FAIL("%s", err);
    }
    record_path(dir, rel, path, sizeof path);
    sr_outdir_register(dir, &rel, 1); /* first: a crash after the rename leaves no file of ours unowned */
    sr_commit_file(tmp, path);
}

int sr_outdir_prune(const char *dir, const char *prefix, const char *const *keep, size_t nkeep)
{
    owned kept = {0};
    for (size_t i = 0; i < nkeep; i++) add(&kept, keep[i]);
    sort(&kept);
    const int fd = lock(dir);
    owned o, left = {0};
    load(dir, &o);
    int removed = 0;
    for (size_t i = 0; i < o.n; i++) {
        const char *rel = o.paths[i];
        if (strncmp(rel, prefix, strlen(prefix)) || has(&kept, rel)) {
            add(&left, rel);
            continue;
        }
        char path[PATH_MAX];
        record_path(dir, rel, path, sizeof path);
        if (unlink(path) == 0 || errno == ENOENT) {
            removed++;
        } else {
            fprintf(stderr, "semrep: note: could not remove %s: %s\n", path, strerror(errno));
            add(&left, rel);
        }
    }
    if (removed) save(dir, &left);
    release(&o);
    free(left.paths);
    free(kept.paths);
    close(fd);
    return removed;
}

/* The files under root/sub ("" for root), as paths from root, appended to o (allocated; the caller frees each). */
static void list_files(const char *root, const char *sub, owned *o)
{
    char path[PATH_MAX];
    record_path(root, sub, path, sizeof path);
    DIR *d = opendir(path);
    SR_CHECK(d, "cannot read the folder %s: %s", path, strerror(errno));
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char rel[PATH_MAX], full[PATH_MAX];
        SR_CHECK(snprintf(rel, sizeof rel, "%s%s%s", sub, *sub ? "/" : "", e->d_name) < (int)sizeof rel,
                 "path too long: %s", path);
        record_path(root, rel, full, sizeof full);
        struct stat st;
        SR_CHECK(lstat(full, &st) == 0, "cannot read %s: %s", full, strerror(errno));
        if (S_ISDIR(st.st_mode)) {
            list_files(root, rel, o);
            continue;
        }
        add(o, SR_STRDUP(rel, "a file's name"));
    }
    closedir(d);
}

/* deeper files first, so that the folder's top page (index.html) comes last */
static int deeper_first(const void *a, const void *b)
{
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    int dx = 0, dy = 0;
    for (const char *c = x; *c; c++) dx += *c == '/';
    for (const char *c = y; *c; c++) dy += *c == '/';
    return dx != dy ? dy - dx : strcmp(x, y);
}

int sr_outdir_replace(const char *dir, const char *sub, const char *from, char *err, size_t errlen)
{
    owned files = {0}, record; /* from's files, renamed "sub/..." as they will be */
    list_files(from, "", &files);
    load(dir, &record);
    int rc = 0;
    for (size_t i = 0; i < files.n; i++) {
        char *named;
        SR_CHECK(asprintf(&named, "%s/%s", sub, files.paths[i]) > 0, "out of memory replacing %s/%s", dir, sub);
        free((char *)files.paths[i]);
        files.paths[i] = named;
        if (!rc) rc = check_in(&record, dir, named, err, errlen);
    }
    release(&record);
    if (!rc) {
        qsort(files.paths, files.n, sizeof *files.paths, deeper_first);
        char made[PATH_MAX] = ""; /* the last folder made: a folder's files come together */
        for (size_t i = 0; i < files.n; i++) {
            char src[PATH_MAX], dst[PATH_MAX], folder[PATH_MAX];
            record_path(from, files.paths[i] + strlen(sub) + 1, src, sizeof src);
            record_path(dir, files.paths[i], dst, sizeof dst);
            snprintf(folder, sizeof folder, "%.*s", (int)(strrchr(dst, '/') - dst), dst);
            if (strcmp(folder, made) && sr_make_dirs(folder, err, errlen)) SR_FAIL("%s", err);
            snprintf(made, sizeof made, "%s", folder);
            SR_CHECK(rename(src, dst) == 0, "cannot move %s to %s: %s; check the output folder", src, dst, strerror(errno));
        }
        sr_outdir_register(dir, files.paths, files.n);
        char prefix[PATH_MAX];
        snprintf(prefix, sizeof prefix, "%s/", sub);
        sr_outdir_prune(dir, prefix, files.paths, files.n);
    }
    for (size_t i = 0; i < files.n; i++) free((char *)files.paths[i]);
    free(files.paths);
    return rc;
}

/* ---- claiming a folder ---- */

/* The files semrep writes, by path; a NetCDF file also needs a "format"
 * attribute starting "semrep-". An older folder without a record is
 * adopted for these only. */
static const char *const own_patterns[] = {
    ".semrep-done-*", "*.nc", "manifest-*.tsv", "report-images.tsv", "cache/*", "reconstruct/target-[0-9]*.png",
    "report/index.html", "report/tables/*.csv", "report/tables/*.tsv", "report/plots/*.dat",
    "report/plots/*.gp", "report/plots/*.log", "report/plots/*.png", "report/images/[0-9]*.png",
    "report/images/recon-[0-9]*.png",
};
static const char *const own_folders[] = {"", "cache", "reconstruct", "report", "report/tables", "report/plots", "report/images"};

static bool semrep_netcdf(const char *path)
{
    int ncid;
    char format[64];
    if (nc_open(path, NC_NOWRITE, &ncid) != NC_NOERR) return false;
    const bool yes = !sr_nc_get_text(ncid, NC_GLOBAL, "format", format, sizeof format) && !strncmp(format, "semrep-", 7);
    nc_close(ncid);
    return yes;
}

static bool semrep_file(const char *dir, const char *rel)
{
    for (size_t p = 0; p < sizeof own_patterns / sizeof *own_patterns; p++) {
        if (fnmatch(own_patterns[p], rel, FNM_PATHNAME | FNM_PERIOD * (p != 0))) continue;
        if (strcmp(own_patterns[p], "*.nc")) return true;
        char path[PATH_MAX];
        record_path(dir, rel, path, sizeof path);
        return semrep_netcdf(path);
    }
    return false;
}

static bool own_folder(const char *rel)
{
    for (size_t f = 1; f < sizeof own_folders / sizeof *own_folders; f++)
        if (!strcmp(own_folders[f], rel)) return true;
    return false;
}

/* The regular files of dir/sub that are semrep's go into o (their paths
 * allocated into *names, freed by the caller); every other entry but
 * semrep's folders is counted in *foreign, the first one named in first. */
static void survey(const char *dir, const char *sub, owned *o, char ***names, size_t *nnames, int *foreign,
                   char *first, size_t firstlen)
{
    char path[PATH_MAX];
    record_path(dir, sub, path, sizeof path);
    DIR *d = opendir(path);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (!*sub && (!strcmp(e->d_name, SR_OUTDIR_RECORD) || !strcmp(e->d_name, LOCK_NAME))) continue;
        char rel[PATH_MAX], full[PATH_MAX];
        snprintf(rel, sizeof rel, "%s%s%s", sub, *sub ? "/" : "", e->d_name);
        record_path(dir, rel, full, sizeof full);
        struct stat st;
        if (lstat(full, &st) != 0) continue;
        if (S_ISREG(st.st_mode) && semrep_file(dir, rel)) {
            *names = SR_REALLOC(*names, *nnames + 1, sizeof **names, "the files' names");
            (*names)[*nnames] = SR_STRDUP(rel, "a file's name");
            add(o, (*names)[(*nnames)++]);
        } else if (!(S_ISDIR(st.st_mode) && own_folder(rel)) && !(*foreign)++) {
            snprintf(first, firstlen, "%s", rel);
        }
    }
    closedir(d);
}

/* path made absolute with its links resolved, for a folder that may not exist yet */
static void resolve(const char *path, char *out, size_t len)
{
    char head[PATH_MAX], real[PATH_MAX];
    snprintf(head, sizeof head, "%s", path);
    const char *tail = "";
    for (;;) {
        if (realpath(*head ? head : ".", real)) break;
        char *slash = strrchr(head, '/');
        if (!slash) {
            tail = path;
            snprintf(head, sizeof head, ".");
        } else {
            tail = path + (slash - head) + 1;
            *slash = '\0';
            if (slash == head) snprintf(head, sizeof head, "/");
        }
    }
    const bool slash = *tail && strcmp(real, "/") != 0;
    SR_CHECK(snprintf(out, len, "%s%s%s", real, slash ? "/" : "", tail) < (int)len, "path too long: %s", path);
}

int sr_outdir_claim(const char *dir, bool adopt, const char *const *data_dirs, int ndata, char *err, size_t errlen)
{
    char out[PATH_MAX];
    resolve(dir, out, sizeof out);
    for (int i = 0; i < ndata; i++) {
        char data[PATH_MAX];
        if (!data_dirs[i] || !*data_dirs[i] || !realpath(data_dirs[i], data)) continue;
        const size_t n = strlen(data);
        if (!strncmp(out, data, n) && (out[n] == '\0' || out[n] == '/' || !strcmp(data, "/")))
            SR_BAD("output_dir %s is inside the data folder %s; later runs would read their own files as images; "
                   "choose an output_dir outside it",
                   dir, data_dirs[i]);
    }
    if (sr_make_dirs(dir, err, errlen)) return -1;
    char path[PATH_MAX];
    record_path(dir, SR_OUTDIR_RECORD, path, sizeof path);
    if (access(path, F_OK) == 0) return 0;
    /* No record: a new folder, an older semrep folder, or someone else's,
     * surveyed before taking the lock (a file) so that a refused folder stays as it was. */
    owned o = {0};
    char **names = NULL, first[PATH_MAX] = "";
    size_t nnames = 0;
    int foreign = 0, rc = 0;
    for (size_t f = 0; f < sizeof own_folders / sizeof *own_folders; f++)
        survey(dir, own_folders[f], &o, &names, &nnames, &foreign, first, sizeof first);
    /* an older semrep folder shows itself by a semrep file at its top */
    bool older = false;
    for (size_t i = 0; i < o.n; i++) older |= !strchr(o.paths[i], '/');
    if (!older && !adopt && (foreign || o.n)) {
        rc = sr_report(err, errlen,
                       "the output folder %s holds files semrep did not write (%s, ...); use a new or empty "
                       "output_dir, or add --adopt to share this one (semrep then never touches those files)",
                       dir, foreign ? first : o.paths[0]);
    } else {
        if (!older) o.n = 0; /* adopted or empty: none of its files is semrep's */
        const int fd = lock(dir);
        if (access(path, F_OK) != 0) save(dir, &o); /* unless a concurrent task made it meanwhile */
        close(fd);
    }
    for (size_t i = 0; i < nnames; i++) free(names[i]);
    free(names);
    free(o.paths);
    return rc;
}
