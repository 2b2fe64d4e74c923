#define _GNU_SOURCE /* open_memstream */
#include "core/check.h"
#include "io/conf.h"
#include "io/files.h"

#include <ctype.h>
#include <errno.h>
#include <libconfig.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Errors name the conf, the line when there is one, and the key. */
typedef struct {
    const char *file;
    char dir[SR_PATH_MAX]; /* the conf's folder: where relative file keys start */
    char *err;
    size_t errlen;
} ctx;

static int fail(ctx *c, const config_setting_t *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(ctx *c, const config_setting_t *at, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const int line = at ? config_setting_source_line(at) : 0;
    if (line > 0)
        snprintf(c->err, c->errlen, "conf %s line %d: %s", c->file, line, msg);
    else
        snprintf(c->err, c->errlen, "conf %s: %s", c->file, msg);
    return -1;
}

static const sr_conf_key *find_key(const char *path)
{
    for (int k = 0; k < sr_conf_key_count; k++)
        if (!strcmp(sr_conf_keys[k].path, path)) return &sr_conf_keys[k];
    return NULL;
}

/* True when `path` names a group some key lives in ("train", "train.dataset"). */
static bool is_group(const char *path)
{
    const size_t len = strlen(path);
    for (int k = 0; k < sr_conf_key_count; k++)
        if (!strncmp(sr_conf_keys[k].path, path, len) && sr_conf_keys[k].path[len] == '.') return true;
    return false;
}

static int edit_distance(const char *a, const char *b)
{
    const size_t la = strlen(a), lb = strlen(b);
    if (la > 63 || lb > 63) return 99;
    int row[64];
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int diag = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            const int up = row[j];
            const int sub = diag + (a[i - 1] != b[j - 1]);
            row[j] = sub < up + 1 ? sub : up + 1;
            if (row[j - 1] + 1 < row[j]) row[j] = row[j - 1] + 1;
            diag = up;
        }
    }
    return row[lb];
}

/* " (did you mean phi.sigmas?)" for a near miss, else "". */
static void suggestion(const char *path, char *out, size_t len)
{
    int best = 3;
    const char *near = NULL;
    for (int k = 0; k < sr_conf_key_count; k++) {
        const int d = edit_distance(path, sr_conf_keys[k].path);
        if (d < best) best = d, near = sr_conf_keys[k].path;
    }
    if (near) snprintf(out, len, " (did you mean %s?)", near);
    else out[0] = '\0';
}

static void setting_path(const config_setting_t *s, char *out, size_t len)
{
    const config_setting_t *parent = config_setting_parent(s);
    if (parent && config_setting_name(parent)) {
        setting_path(parent, out, len);
        strncat(out, ".", len - strlen(out) - 1);
    } else {
        out[0] = '\0';
    }
    strncat(out, config_setting_name(s) ? config_setting_name(s) : "?", len - strlen(out) - 1);
}

/* Every setting in the file is a declared key or a group of them. */
static int check_known(ctx *c, const config_setting_t *group)
{
    for (int i = 0; i < config_setting_length(group); i++) {
        const config_setting_t *s = config_setting_get_elem(group, (unsigned)i);
        char path[256], hint[128];
        setting_path(s, path, sizeof path);
        if (config_setting_type(s) == CONFIG_TYPE_GROUP) {
            if (!is_group(path)) {
                suggestion(path, hint, sizeof hint);
                return fail(c, s, "unknown group %s%s; the keys are in docs/conf.md", path, hint);
            }
            if (check_known(c, s)) return -1;
        } else if (!find_key(path)) {
            suggestion(path, hint, sizeof hint);
            return fail(c, s, "unknown key %s%s; the keys are in docs/conf.md", path, hint);
        }
    }
    return 0;
}

static const char *type_name(sr_key_type t)
{
    switch (t) {
    case SR_KEY_INT: return "an integer";
    case SR_KEY_FLOAT: return "a number";
    case SR_KEY_BOOL: return "true or false";
    case SR_KEY_STRING: return "a quoted string";
    case SR_KEY_INTS: return "a list of integers like [1, 2]";
    default: return "a list of numbers like [0.0, 0.5]";
    }
}

/* A number from an int or float setting; ints only where ints are wanted. */
static int number(ctx *c, const sr_conf_key *key, const config_setting_t *s, double *out)
{
    const int t = config_setting_type(s);
    const bool want_int = key->type == SR_KEY_INT || key->type == SR_KEY_INTS;
    if (t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64)
        *out = (double)config_setting_get_int64(s);
    else if (t == CONFIG_TYPE_FLOAT && !want_int)
        *out = config_setting_get_float(s);
    else
        return fail(c, s, "%s must be %s", key->path, type_name(key->type));
    if (!isfinite(*out) || *out < key->min || *out > key->max) {
        if (want_int) /* every digit: 4294967296 must not read as 4.29497e+09 */
            return fail(c, s, "%s = %.0f is out of range [%.0f, %.0f]", key->path, *out, key->min, key->max);
        return fail(c, s, "%s = %g is out of range [%g, %g]", key->path, *out, key->min, key->max);
    }
    return 0;
}

static void store_number(const sr_conf_key *key, void *at, double v)
{
    if (key->type == SR_KEY_FLOAT || key->type == SR_KEY_FLOATS) *(double *)at = v;
    else if (key->capacity == sizeof(long) && key->type == SR_KEY_INT) *(long *)at = (long)v;
    else *(int *)at = (int)v;
}

static int store(ctx *c, const sr_conf_key *key, const config_setting_t *s, semrep_conf *conf)
{
    char *at = (char *)conf + key->offset;
    const int t = config_setting_type(s);
    double v;
    switch (key->type) {
    case SR_KEY_INT:
    case SR_KEY_FLOAT:
        if (number(c, key, s, &v)) return -1;
        store_number(key, at, v);
        return 0;
    case SR_KEY_BOOL:
        if (t != CONFIG_TYPE_BOOL) return fail(c, s, "%s must be %s", key->path, type_name(key->type));
        *(bool *)at = config_setting_get_bool(s);
        return 0;
    case SR_KEY_STRING: {
        if (t != CONFIG_TYPE_STRING) return fail(c, s, "%s must be %s", key->path, type_name(key->type));
        const char *text = config_setting_get_string(s);
        if (strlen(text) >= (size_t)key->capacity)
            return fail(c, s, "%s is longer than %d characters", key->path, key->capacity - 1);
        if (key->choices) {
            const size_t len = strlen(text);
            bool ok = false;
            for (const char *p = key->choices; *p; p += strcspn(p, "|") + (p[strcspn(p, "|")] == '|'))
                ok |= strcspn(p, "|") == len && !strncmp(p, text, len);
            if (!ok) return fail(c, s, "%s = \"%s\" is not one of %s", key->path, text, key->choices);
        }
        if (key->file && text[0] && text[0] != '/' && c->dir[0]) {
            if (strlen(c->dir) + 1 + strlen(text) >= (size_t)key->capacity)
                return fail(c, s, "%s is longer than %d characters once taken from %s", key->path, key->capacity - 1,
                            c->dir);
            snprintf(at, (size_t)key->capacity, "%s/%s", c->dir, text);
            /* the effective conf written out holds the path as resolved */
            config_setting_set_string((config_setting_t *)s, at);
        } else {
            strcpy(at, text);
        }
        return 0;
    }
    default: {
        if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST)
            return fail(c, s, "%s must be %s", key->path, type_name(key->type));
        const int n = config_setting_length(s), least = strcmp(key->fallback, "[]") ? 1 : 0;
        if (n < least || n > key->capacity)
            return fail(c, s, "%s needs %d to %d entries (has %d)", key->path, least, key->capacity, n);
        const size_t size = key->type == SR_KEY_FLOATS ? sizeof(double) : sizeof(int);
        for (int i = 0; i < n; i++) {
            if (number(c, key, config_setting_get_elem(s, (unsigned)i), &v)) return -1;
            store_number(key, at + (size_t)i * size, v);
        }
        *(int *)((char *)conf + key->count_offset) = n;
        return 0;
    }
    }
}

/* The setting at a dotted path, making the groups on the way. */
static config_setting_t *make_path(config_t *cfg, const char *path, int type)
{
    config_setting_t *group = config_root_setting(cfg);
    char part[128];
    const char *p = path;
    for (;;) {
        const size_t len = strcspn(p, ".");
        snprintf(part, sizeof part, "%.*s", (int)len, p);
        if (!p[len]) break;
        config_setting_t *next = config_setting_get_member(group, part);
        group = next ? next : config_setting_add(group, part, CONFIG_TYPE_GROUP);
        if (!group || config_setting_type(group) != CONFIG_TYPE_GROUP) return NULL;
        p += len + 1;
    }
    if (config_setting_get_member(group, part)) config_setting_remove(group, part);
    return config_setting_add(group, part, type);
}

/* Copies a parsed value (scalar or list of scalars) into dst, same type. */
static void copy_value(config_setting_t *dst, const config_setting_t *src)
{
    switch (config_setting_type(src)) {
    case CONFIG_TYPE_INT: config_setting_set_int(dst, config_setting_get_int(src)); break;
    case CONFIG_TYPE_INT64: config_setting_set_int64(dst, config_setting_get_int64(src)); break;
    case CONFIG_TYPE_FLOAT: config_setting_set_float(dst, config_setting_get_float(src)); break;
    case CONFIG_TYPE_BOOL: config_setting_set_bool(dst, config_setting_get_bool(src)); break;
    case CONFIG_TYPE_STRING: config_setting_set_string(dst, config_setting_get_string(src)); break;
    case CONFIG_TYPE_ARRAY:
    case CONFIG_TYPE_LIST:
        for (int i = 0; i < config_setting_length(src); i++) {
            const config_setting_t *e = config_setting_get_elem(src, (unsigned)i);
            copy_value(config_setting_add(dst, NULL, config_setting_type(e)), e);
        }
        break;
    }
}

/* The conf file's text (malloc'd), or NULL with err set. */
static char *read_text(ctx *c, const char *path)
{
    if (access(path, R_OK) != 0) {
        snprintf(c->err, c->errlen, "cannot read the conf %s: %s; check the path", path, strerror(errno));
        return NULL;
    }
    const int fd = sr_open_regular(path, "the conf", c->err, c->errlen);
    if (fd < 0) return NULL;
    FILE *f = fdopen(fd, "r");
    char *text = NULL;
    size_t cap = 0;
    const ssize_t n = f ? getdelim(&text, &cap, '\0', f) : -1;
    const bool bad = !f || ferror(f);
    if (f) fclose(f);
    else close(fd);
    if (bad) {
        free(text);
        return fail(c, NULL, "cannot read the conf: %s; check the path", strerror(errno)), NULL;
    }
    if (n < 0) { /* empty */
        free(text);
        text = sr_try_calloc(1, 1, "the conf", c->err, c->errlen);
    }
    return text;
}

/* libconfig 1.5 reads an integer without the L suffix into an int, so
 * 4294967297 became 1 and 4294967295 became -1. Before parsing, every
 * decimal or hex integer outside int's range gets its L (the line numbers
 * stay), and one outside 64 bits is refused by its line. Strings, comments
 * and names are copied as they are. A malloc'd text, or NULL with err set. */
static char *widen_integers(ctx *c, const char *text)
{
    const size_t len = strlen(text);
    char *out = sr_try_realloc(NULL, 2 * len + 1, 1, "the conf", NULL, 0); /* at worst an L after every other character */
    if (!out) return fail(c, NULL, "out of memory reading the conf"), NULL;
    size_t o = 0;
    long line = 1;
    int in_array = 0;           /* libconfig's [arrays] hold one type: int and int64 do not mix */
    const char *name = "", *name_end = name; /* the last setting name, for errors */
    for (const char *p = text; *p;) {
        const char *start = p;
        in_array += (*p == '[') - (*p == ']');
        if (*p == '"') { /* a string, with its escapes */
            for (p++; *p && *p != '"'; p++) p += p[0] == '\\' && p[1];
            p += *p == '"';
        } else if (*p == '#' || (p[0] == '/' && p[1] == '/')) {
            p += strcspn(p, "\n");
        } else if (p[0] == '/' && p[1] == '*') {
            const char *end = strstr(p + 2, "*/");
            p = end ? end + 2 : p + strlen(p);
        } else if (isalpha((unsigned char)*p) || *p == '*' || *p == '_' || *p == '@') { /* a name or keyword */
            for (p++; *p && (isalnum((unsigned char)*p) || strchr("-_*", *p)); p++) {}
            name = start, name_end = p;
        } else if (isdigit((unsigned char)*p) || ((*p == '-' || *p == '+') && isdigit((unsigned char)p[1]))) {
            const bool hex = p[*p == '-' || *p == '+'] == '0' && (p[1 + (*p == '-' || *p == '+')] | 0x20) == 'x';
            char *end;
            errno = 0;
            const long long v = hex ? (long long)strtoull(p, &end, 16) : strtoll(p, &end, 10);
            if (!hex && (*end == '.' || *end == 'e' || *end == 'E')) { /* a float */
                for (p = end + 1; *p && (isalnum((unsigned char)*p) || strchr(".+-", *p)); p++) {}
            } else {
                if (errno == ERANGE || (hex && end - p > 18))
                    return free(out), fail(c, NULL, "line %ld: the integer %.*s is out of range", line,
                                           (int)(end - p), p), NULL;
                if (in_array > 0 && (v > INT_MAX || v < INT_MIN)) /* every list's entries are below 2^31 */
                    return free(out), fail(c, NULL, "line %ld: %.*s: the list entry %.*s is out of range", line,
                                           (int)(name_end - name), name, (int)(end - p), p), NULL;
                p = end;
                const bool suffixed = *p == 'L';
                memcpy(out + o, start, (size_t)(p - start));
                o += (size_t)(p - start);
                if (!suffixed && (v > INT_MAX || v < INT_MIN)) out[o++] = 'L';
                continue;
            }
        } else {
            p++;
        }
        for (const char *q = start; q < p; q++) line += *q == '\n';
        memcpy(out + o, start, (size_t)(p - start));
        o += (size_t)(p - start);
    }
    out[o] = '\0';
    return out;
}

/* Puts the literal `value` at `path` in cfg. */
static int put_literal(ctx *c, config_t *cfg, const char *path, const char *value, const char *what)
{
    config_t lit;
    config_init(&lit);
    char *text = sr_try_realloc(NULL, strlen(value) + 8, 1, what, NULL, 0);
    if (!text) return fail(c, NULL, "out of memory reading %s", what);
    sprintf(text, "v = %s;", value);
    char *wide = widen_integers(c, text);
    free(text);
    if (!wide) {
        config_destroy(&lit);
        return fail(c, NULL, "%s: %s is out of range", what, value);
    }
    const int parsed = config_read_string(&lit, wide);
    free(wide);
    int rc = 0;
    if (parsed != CONFIG_TRUE) {
        rc = fail(c, NULL, "%s: %s is not a libconfig value (strings need quotes, lists brackets)", what, value);
    } else {
        const config_setting_t *v = config_lookup(&lit, "v");
        config_setting_t *dst = make_path(cfg, path, config_setting_type(v));
        if (!dst) rc = fail(c, NULL, "%s: cannot set %s", what, path);
        else copy_value(dst, v);
    }
    config_destroy(&lit);
    return rc;
}

static int apply_sets(ctx *c, config_t *cfg, int nsets, char *const *sets)
{
    for (int i = 0; i < nsets; i++) {
        const char *eq = strchr(sets[i], '=');
        char path[256], hint[128], what[300];
        if (!eq || eq == sets[i] || (size_t)(eq - sets[i]) >= sizeof path)
            return fail(c, NULL, "--set %s: write --set KEY=VALUE", sets[i]);
        snprintf(path, sizeof path, "%.*s", (int)(eq - sets[i]), sets[i]);
        if (!find_key(path)) {
            suggestion(path, hint, sizeof hint);
            return fail(c, NULL, "--set: unknown key %s%s; the keys are in docs/conf.md", path, hint);
        }
        snprintf(what, sizeof what, "--set %s", path);
        if (put_literal(c, cfg, path, eq + 1, what)) return -1;
        /* a relative file on the command line starts where the command ran */
        config_setting_t *v = config_lookup(cfg, path);
        const char *text = config_setting_type(v) == CONFIG_TYPE_STRING ? config_setting_get_string(v) : NULL;
        char cwd[SR_PATH_MAX], full[2 * SR_PATH_MAX + 2];
        if (find_key(path)->file && text && text[0] && text[0] != '/' && getcwd(cwd, sizeof cwd)) {
            snprintf(full, sizeof full, "%s/%s", cwd, text);
            config_setting_set_string(v, full);
        }
    }
    return 0;
}

/* Checks across keys: what one key alone cannot say. */
static int check_dataset(ctx *c, const char *name, const sr_dataset_conf *d)
{
    if (!strcmp(d->kind, "idx") && !d->images[0])
        return fail(c, NULL, "%s.images is empty: kind \"idx\" needs the IDX image file", name);
    if (!strcmp(d->kind, "png") && !d->path[0])
        return fail(c, NULL, "%s.path is empty: kind \"png\" needs the folder of images", name);
    if (!strcmp(d->kind, "netcdf") && !d->file[0])
        return fail(c, NULL, "%s.file is empty: kind \"netcdf\" needs the file", name);
    return 0;
}

static int check_all(ctx *c, semrep_conf *conf)
{
    const int n = conf->model.nkernels - 1;
    if (n < 1)
        return fail(c, NULL, "model.kernels needs at least 2 entries (encoder blocks, then the middle block)");
    if (conf->model.nenc != n)
        return fail(c, NULL, "model.enc_convs has %d entries; model.kernels implies %d encoder blocks", conf->model.nenc, n);
    if (conf->model.ndec != n)
        return fail(c, NULL, "model.dec_convs has %d entries; model.kernels implies %d decoder blocks", conf->model.ndec, n);
    const sr_unet_shape shape = sr_conf_shape(conf);
    char why[256];
    if (sr_unet_shape_check(&shape, why, sizeof why)) return fail(c, NULL, "%s", why);
    const sr_dataset_conf *sets[2] = {&conf->dataset, &conf->train.dataset};
    const char *names[2] = {"dataset", "train.dataset"};
    for (int i = 0; i < 2; i++) {
        if (check_dataset(c, names[i], sets[i])) return -1;
        if (sets[i]->channels != conf->model.in_channels)
            return fail(c, NULL, "%s.channels = %d but model.in_channels = %d", names[i], sets[i]->channels,
                        conf->model.in_channels);
        if (sr_unet_size_check(&shape, sets[i]->size, sets[i]->size, why, sizeof why))
            return fail(c, NULL, "%s.size: %s", names[i], why);
    }
    if (conf->train.sigma_min > conf->train.sigma_max)
        return fail(c, NULL, "train.sigma_min = %g is above train.sigma_max = %g", conf->train.sigma_min,
                    conf->train.sigma_max);
    return 0;
}

int sr_conf_load(semrep_conf *conf, const char *path, int nsets, char *const *sets, char *err,
                 size_t errlen)
{
    memset(conf, 0, sizeof *conf);
    ctx c = {.file = path ? path : "(defaults)", .err = err, .errlen = errlen};
    if (path && strrchr(path, '/')) snprintf(c.dir, sizeof c.dir, "%.*s", (int)(strrchr(path, '/') - path), path);
    else if (path) snprintf(c.dir, sizeof c.dir, ".");
    config_t cfg;
    config_init(&cfg);
    int rc = 0;
    if (path && strlen(path) >= sizeof conf->source) {
        rc = fail(&c, NULL, "the path is too long");
    } else if (path) {
        char *text = read_text(&c, path);
        char *wide = text ? widen_integers(&c, text) : NULL;
        if (wide && config_read_string(&cfg, wide) != CONFIG_TRUE) {
            snprintf(err, errlen, "conf %s line %d: %s", path, config_error_line(&cfg), config_error_text(&cfg));
            rc = -1;
        }
        if (!wide) rc = -1;
        free(text);
        free(wide);
    }
    if (!rc) rc = check_known(&c, config_root_setting(&cfg));
    if (!rc) rc = apply_sets(&c, &cfg, nsets, sets);
    /* Every key: its setting, else its default put into the config, so the
     * config written out below holds every value the run used. */
    for (int k = 0; !rc && k < sr_conf_key_count; k++) {
        const sr_conf_key *key = &sr_conf_keys[k];
        const config_setting_t *s = config_lookup(&cfg, key->path);
        if (!s) {
            rc = put_literal(&c, &cfg, key->path, key->fallback, "default");
            s = config_lookup(&cfg, key->path);
        }
        if (!rc) rc = store(&c, key, s, conf);
    }
    if (!rc) rc = check_all(&c, conf);
    if (!rc) {
        if (path) strcpy(conf->source, path);
        size_t len = 0;
        FILE *mem = open_memstream(&conf->text, &len);
        if (!mem) {
            rc = fail(&c, NULL, "out of memory writing the conf out");
        } else {
            config_write(&cfg, mem);
            fclose(mem);
        }
    }
    config_destroy(&cfg);
    return rc;
}

void sr_conf_free(semrep_conf *conf)
{
    free(conf->text);
    conf->text = NULL;
}

static sr_norm norm_of(const char *name) { return strcmp(name, "batch") ? SR_NORM_LAYER : SR_NORM_BATCH; }

sr_unet_shape sr_conf_shape(const semrep_conf *conf)
{
    sr_unet_shape s = {.in_channels = conf->model.in_channels, .levels = conf->model.nkernels - 1,
                       .mid_convs = conf->model.mid_convs, .norm = norm_of(conf->model.norm),
                       .output = strcmp(conf->model.output, "residual") ? SR_OUTPUT_CLEAN : SR_OUTPUT_RESIDUAL};
    for (int b = 0; b < conf->model.nkernels && b <= SR_MAX_LEVELS; b++) s.kernels[b] = conf->model.kernels[b];
    for (int b = 0; b < conf->model.nenc && b < SR_MAX_LEVELS; b++) s.enc_convs[b] = conf->model.enc_convs[b];
    for (int b = 0; b < conf->model.ndec && b < SR_MAX_LEVELS; b++) s.dec_convs[b] = conf->model.dec_convs[b];
    for (int b = 1; b < s.levels; b++) s.upsample_bias[b] = conf->model.upsample_bias;
    return s;
}
