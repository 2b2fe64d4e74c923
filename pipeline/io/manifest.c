#define _GNU_SOURCE
#include "io/manifest.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <xxhash.h>

#include "core/check.h"
#include "io/nc.h"
#include "io/png_image.h"

typedef struct {
    sr_manifest *m;
    long cap;
} lister;

static int add_entry(lister *l, const char *name, const struct stat *st, int cls)
{
    sr_manifest *m = l->m;
    if (m->count == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 1024;
        sr_manifest_entry *grown = sr_try_realloc(m->entries, (size_t)l->cap, sizeof *grown, "the manifest", NULL, 0);
        if (!grown) return -1;
        m->entries = grown;
    }
    sr_manifest_entry *e = &m->entries[m->count++];
    memset(e, 0, sizeof *e);
    snprintf(e->name, sizeof e->name, "%.*s", (int)sizeof e->name - 1, name);
    e->id = sr_file_id_of(st);
    e->cls = cls;
    if (strlen(name) >= sizeof e->name) {
        e->checked = true;
        snprintf(e->reason, sizeof e->reason, "its path is longer than %d characters", SR_NAME_MAX - 1);
    } else if (!S_ISREG(st->st_mode)) {
        e->checked = true;
        snprintf(e->reason, sizeof e->reason, "not a regular file (a FIFO, device or socket)");
    }
    return 0;
}

static int is_png_name(const char *name)
{
    const size_t n = strlen(name);
    return n > 4 && !strcasecmp(name + n - 4, ".png");
}

/* Adds every PNG below folder/rel (recursively), with class cls. */
static int walk(lister *l, const char *folder, const char *rel, int cls, char *err, size_t errlen)
{
    char path[SR_PATH_MAX * 2];
    snprintf(path, sizeof path, "%s%s%s", folder, rel[0] ? "/" : "", rel);
    struct dirent **names;
    const int n = scandir(path, &names, NULL, alphasort);
    if (n < 0) SR_BAD("cannot list the folder %s: %s", path, strerror(errno));
    int rc = 0;
    for (int i = 0; i < n; i++) {
        const char *d = names[i]->d_name;
        if (!rc && d[0] != '.') {
            char sub[SR_PATH_MAX * 2], full[SR_PATH_MAX * 3];
            snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", d);
            snprintf(full, sizeof full, "%s/%s", folder, sub);
            struct stat st;
            if (stat(full, &st) != 0) rc = sr_report(err, errlen, "cannot read %s: %s", full, strerror(errno));
            else if (S_ISDIR(st.st_mode)) rc = walk(l, folder, sub, cls, err, errlen);
            else if (is_png_name(d) && add_entry(l, sub, &st, cls)) /* listed even when not regular: as bad */
                rc = sr_report(err, errlen, "out of memory listing %s", folder);
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

/* Byte order, the same in every locale: an image's index never depends on it. */
static int by_name(const void *a, const void *b)
{
    return strcmp(((const sr_manifest_entry *)a)->name, ((const sr_manifest_entry *)b)->name);
}

int sr_manifest_list(const char *folder, long max_pixels, sr_manifest *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    snprintf(m->folder, sizeof m->folder, "%s", folder);
    m->max_pixels = max_pixels;
    struct dirent **top;
    const int n = scandir(folder, &top, NULL, alphasort);
    if (n < 0) SR_BAD("cannot list the folder %s (dataset.path): %s", folder, strerror(errno));
    /* labelled when the top level holds sub-folders and no file */
    int folders = 0, files = 0;
    for (int i = 0; i < n; i++) {
        if (top[i]->d_name[0] == '.') continue;
        char full[SR_PATH_MAX * 2];
        snprintf(full, sizeof full, "%s/%s", folder, top[i]->d_name);
        struct stat st;
        if (stat(full, &st) == 0 && S_ISDIR(st.st_mode)) folders++;
        else files++;
    }
    lister l = {.m = m};
    int rc = 0;
    if (folders > 0 && files == 0) {
        m->class_names = SR_CALLOC((size_t)folders, SR_CLASS_NAME_MAX, "the class names");
        for (int i = 0; i < n && !rc; i++) {
            if (top[i]->d_name[0] == '.') continue;
            const long before = m->count;
            snprintf(m->class_names[m->nclasses], SR_CLASS_NAME_MAX, "%.*s", SR_CLASS_NAME_MAX - 1, top[i]->d_name);
            rc = walk(&l, folder, top[i]->d_name, m->nclasses, err, errlen);
            if (!rc && m->count == before)
                rc = sr_report(err, errlen, "the class folder %s/%s holds no PNG file; remove it or add its images",
                               folder, top[i]->d_name);
            m->nclasses++;
        }
    } else {
        rc = walk(&l, folder, "", -1, err, errlen);
    }
    for (int i = 0; i < n; i++) free(top[i]);
    free(top);
    if (!rc && m->count == 0) rc = sr_report(err, errlen, "the folder %s holds no PNG file", folder);
    if (!rc) qsort(m->entries, (size_t)m->count, sizeof *m->entries, by_name);
    return rc;
}


long sr_manifest_reuse(sr_manifest *m, const sr_manifest *old)
{
    long unchecked = 0, j = 0;
    const bool comparable = !strcmp(m->folder, old->folder) && m->max_pixels == old->max_pixels;
    for (long i = 0; i < m->count; i++) {
        sr_manifest_entry *e = &m->entries[i];
        /* both lists are sorted: walk them together */
        while (comparable && j < old->count && strcmp(old->entries[j].name, e->name) < 0) j++;
        const sr_manifest_entry *o = comparable && j < old->count ? &old->entries[j] : NULL;
        if (!e->checked && o && !strcmp(o->name, e->name) && !memcmp(&o->id, &e->id, sizeof e->id) && o->checked) {
            e->checked = true;
            memcpy(e->reason, o->reason, sizeof e->reason);
        }
        unchecked += !e->checked;
    }
    return unchecked;
}

void sr_manifest_check(const sr_manifest *m, sr_manifest_entry *e, int channels, int size, float *scratch)
{
    char path[SR_PATH_MAX * 2], why[512];
    snprintf(path, sizeof path, "%s/%s", m->folder, e->name);
    e->checked = true;
    e->reason[0] = '\0';
    if (sr_png_load(path, channels, size, m->max_pixels, scratch, why, sizeof why)) {
        /* keep the reason, not the folder it repeats */
        const char *r = strncmp(why, path, strlen(path)) ? why : why + strlen(path);
        while (*r == ':' || *r == ' ') r++;
        snprintf(e->reason, sizeof e->reason, "%.*s", (int)sizeof e->reason - 1, r[0] ? r : "unreadable");
        for (char *p = e->reason; *p; p++)
            if (*p == '\n' || *p == '\t' || *p == '\r') *p = ' '; /* one field of one line */
    }
}

void sr_escape_name(const char *name, char *out, size_t len)
{
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)name; *p && o + 5 <= len; p++) {
        if (*p == '\\') o += (size_t)sprintf(out + o, "\\\\");
        else if (*p == '\t') o += (size_t)sprintf(out + o, "\\t");
        else if (*p == '\n') o += (size_t)sprintf(out + o, "\\n");
        else if (*p == '\r') o += (size_t)sprintf(out + o, "\\r");
        else if (*p < 0x20 || *p == 0x7f) o += (size_t)sprintf(out + o, "\\x%02x", *p);
        else out[o++] = (char)*p;
    }
    if (len) out[o < len ? o : len - 1] = '\0';
}

static void put_escaped(FILE *f, const char *text)
{
    char escaped[4 * SR_PATH_MAX + 1]; /* the folder is the longest: 4 bytes at most per byte */
    sr_escape_name(text, escaped, sizeof escaped);
    fputs(escaped, f);
}

/* Undoes put_escaped on the field [from, to) into out (len bytes); -1 when
 * it is not a field put_escaped writes or does not fit. */
static int get_escaped(const char *from, const char *to, char *out, size_t len)
{
    size_t o = 0;
    for (const char *p = from; p < to; p++) {
        char c = *p;
        if (c == '\\') {
            if (++p == to) return -1;
            if (*p == '\\') c = '\\';
            else if (*p == 't') c = '\t';
            else if (*p == 'n') c = '\n';
            else if (*p == 'r') c = '\r';
            else if (*p == 'x' && to - p > 2 && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
                const char hex[3] = {p[1], p[2], '\0'};
                c = (char)strtol(hex, NULL, 16);
                p += 2;
                if (!c) return -1;
            } else return -1;
        }
        if (o + 1 >= len) return -1;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

int sr_manifest_write(const char *path, const sr_manifest *m, char *err, size_t errlen)
{
    char tmp[SR_PATH_MAX * 2];
    sr_tmp_path(path, tmp, sizeof tmp);
    FILE *f = fopen(tmp, "w");
    char why[SR_PATH_MAX * 2 + 128];
    if (!f) {
        sr_temp_forget(tmp);
        SR_BAD("cannot write %s: %s", tmp, sr_write_reason(errno, tmp, "check the output folder", why, sizeof why));
    }
    fprintf(f, "# %s %d\n# folder\t", SR_MANIFEST_FORMAT, SR_MANIFEST_VERSION);
    put_escaped(f, m->folder);
    fprintf(f, "\n# max_pixels\t%ld\n# classes", m->max_pixels);
    for (int c = 0; c < m->nclasses; c++) {
        fputc('\t', f);
        put_escaped(f, m->class_names[c]);
    }
    fprintf(f, "\nindex\tname\tbytes\tmtime\tctime\tinode\tclass\tverdict\n");
    long index = 0;
    for (long i = 0; i < m->count; i++) {
        const sr_manifest_entry *e = &m->entries[i];
        if (e->reason[0]) fprintf(f, "-\t");
        else fprintf(f, "%ld\t", index++);
        put_escaped(f, e->name);
        fprintf(f, "\t%lld\t%lld.%09lld\t%lld.%09lld\t%lld\t%d\t%s\n", e->id.size, e->id.mtime_s, e->id.mtime_ns,
                e->id.ctime_s, e->id.ctime_ns, e->id.inode, e->cls, e->reason[0] ? e->reason : "ok");
    }
    if (fclose(f) != 0) {
        sr_write_reason(errno, tmp, "check the disk", why, sizeof why);
        sr_temp_remove(tmp);
        SR_BAD("cannot write %s: %s", tmp, why);
    }
    sr_commit_file(tmp, path);
    return 0;
}

/* An entry's line: index, name, bytes, mtime, ctime, inode, class, verdict. */
static int parse_entry(char *line, sr_manifest_entry *e)
{
    char *field[8];
    int n = 0;
    for (char *p = line;;) {
        if (n == 8) return -1; /* a ninth field */
        field[n++] = p;
        char *tab = strchr(p, '\t');
        if (!tab) break;
        *tab = '\0';
        p = tab + 1;
    }
    if (n != 8) return -1;
    char *end;
    if (get_escaped(field[1], field[1] + strlen(field[1]), e->name, sizeof e->name) || !e->name[0]) return -1;
    e->id.size = strtoll(field[2], &end, 10);
    if (*end) return -1;
    if (sscanf(field[3], "%lld.%lld", &e->id.mtime_s, &e->id.mtime_ns) != 2 ||
        sscanf(field[4], "%lld.%lld", &e->id.ctime_s, &e->id.ctime_ns) != 2)
        return -1;
    e->id.inode = strtoll(field[5], &end, 10);
    if (*end) return -1;
    e->cls = (int)strtol(field[6], &end, 10);
    if (*end || !field[7][0]) return -1;
    e->checked = true;
    if (strcmp(field[7], "ok")) snprintf(e->reason, sizeof e->reason, "%.*s", (int)sizeof e->reason - 1, field[7]);
    return 0;
}

int sr_manifest_read(const char *path, sr_manifest *m, char *err, size_t errlen)
{
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "r");
    if (!f) SR_BAD("no manifest at %s", path);
    char *line = NULL;
    size_t cap = 0;
    int version = 0, rc = 0;
    long lineno = 0, ecap = 0;
    while (!rc && getline(&line, &cap, f) > 0) {
        lineno++;
        line[strcspn(line, "\n")] = '\0';
        if (lineno == 1) {
            if (sscanf(line, "# " SR_MANIFEST_FORMAT " %d", &version) != 1 || version != SR_MANIFEST_VERSION)
                rc = sr_report(err, errlen, "%s is not a semrep manifest of version %d", path, SR_MANIFEST_VERSION);
        } else if (!strncmp(line, "# folder\t", 9)) {
            if (get_escaped(line + 9, line + strlen(line), m->folder, sizeof m->folder))
                rc = sr_report(err, errlen, "%s line %ld is damaged", path, lineno);
        } else if (!strncmp(line, "# max_pixels\t", 13)) {
            m->max_pixels = atol(line + 13);
        } else if (!strncmp(line, "# classes", 9)) {
            for (char *p = line + 9; *p == '\t' && !rc; p += 1 + strcspn(p + 1, "\t")) {
                char (*grown)[SR_CLASS_NAME_MAX] = sr_try_realloc(m->class_names, (size_t)m->nclasses + 1, SR_CLASS_NAME_MAX, path, NULL, 0);
                if (!grown) {
                    rc = sr_report(err, errlen, "out of memory reading %s", path);
                    break;
                }
                m->class_names = grown;
                if (get_escaped(p + 1, p + 1 + strcspn(p + 1, "\t"), m->class_names[m->nclasses++], SR_CLASS_NAME_MAX))
                    rc = sr_report(err, errlen, "%s line %ld is damaged", path, lineno);
            }
        } else if (lineno > 1 && strncmp(line, "index\t", 6)) {
            if (m->count == ecap) {
                ecap = ecap ? 2 * ecap : 1024;
                sr_manifest_entry *grown = sr_try_realloc(m->entries, (size_t)ecap, sizeof *grown, path, NULL, 0);
                if (!grown) {
                    rc = sr_report(err, errlen, "out of memory reading %s", path);
                    break;
                }
                m->entries = grown;
            }
            sr_manifest_entry *e = &m->entries[m->count];
            memset(e, 0, sizeof *e);
            /* a class the classes line does not name (-1 when unlabelled) would index past the names */
            if (parse_entry(line, e) || e->cls < -1 || e->cls >= m->nclasses || (m->nclasses > 0 && e->cls < 0)) {
                rc = sr_report(err, errlen, "%s line %ld is damaged", path, lineno);
                break;
            }
            m->count++;
        }
    }
    free(line);
    fclose(f);
    if (!rc && version == 0) rc = sr_report(err, errlen, "%s is empty", path);
    if (rc) sr_manifest_free(m);
    return rc;
}

void sr_manifest_free(sr_manifest *m)
{
    free(m->entries);
    free(m->class_names);
    memset(m, 0, sizeof *m);
}

void sr_manifest_path(const char *work_dir, const char *folder, char *out, size_t len)
{
    char *absolute = realpath(folder, NULL);
    const char *key = absolute ? absolute : folder;
    snprintf(out, len, "%s/manifest-%016llx.tsv", work_dir, (unsigned long long)XXH3_64bits(key, strlen(key)));
    free(absolute);
}
