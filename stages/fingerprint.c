#include "stages/fingerprint.h"

#include <stdio.h>
#include <string.h>

#include "core/check.h"
#include "stages/data.h"

/* A field: its name with its terminating zero, a type letter, the byte
 * count and the bytes. Names and counts keep two fields from running into
 * each other. */
static void header(sr_fingerprint *fp, const char *name, char type, size_t size)
{
    const unsigned long long n = size;
    XXH3_64bits_update(fp->h, name, strlen(name) + 1);
    XXH3_64bits_update(fp->h, &type, 1);
    XXH3_64bits_update(fp->h, &n, sizeof n);
}

static void field(sr_fingerprint *fp, const char *name, char type, const void *bytes, size_t size)
{
    header(fp, name, type, size);
    XXH3_64bits_update(fp->h, bytes, size);
}

void sr_fp_begin(sr_fingerprint *fp, const char *what)
{
    fp->h = XXH3_createState();
    SR_CHECK(fp->h && XXH3_64bits_reset(fp->h) == XXH_OK, "cannot start a fingerprint (out of memory)");
    sr_fp_long(fp, "fingerprint_version", SR_FINGERPRINT_VERSION);
    sr_fp_text(fp, "of", what);
}

void sr_fp_text(sr_fingerprint *fp, const char *name, const char *value) { field(fp, name, 's', value, strlen(value)); }

void sr_fp_long(sr_fingerprint *fp, const char *name, long long value) { field(fp, name, 'i', &value, sizeof value); }

void sr_fp_doubles(sr_fingerprint *fp, const char *name, const double *values, size_t count)
{
    field(fp, name, 'd', values, sizeof(double) * count);
}

void sr_fp_floats(sr_fingerprint *fp, const char *name, const float *values, size_t count)
{
    field(fp, name, 'f', values, sizeof(float) * count);
}

void sr_fp_longs(sr_fingerprint *fp, const char *name, const long *values, size_t count)
{
    header(fp, name, 'I', sizeof(long long) * count);
    for (size_t i = 0; i < count; i++) { /* as long long: 8 bytes wherever semrep builds */
        const long long v = values[i];
        XXH3_64bits_update(fp->h, &v, sizeof v);
    }
}

static bool skipped(const char *path, const char *const *skip)
{
    for (; skip && *skip; skip++)
        if (!strcmp(path, *skip)) return true;
    return false;
}

void sr_fp_conf(sr_fingerprint *fp, const semrep_conf *conf, const char *prefix, const char *const *skip)
{
    const size_t n = strlen(prefix);
    for (int k = 0; k < sr_conf_key_count; k++) {
        const sr_conf_key *key = &sr_conf_keys[k];
        if (strncmp(key->path, prefix, n) || skipped(key->path, skip)) continue;
        const char *at = (const char *)conf + key->offset;
        switch (key->type) {
        case SR_KEY_STRING: sr_fp_text(fp, key->path, at); break;
        case SR_KEY_BOOL: sr_fp_long(fp, key->path, *(const bool *)at); break;
        case SR_KEY_INT:
            sr_fp_long(fp, key->path, key->capacity == sizeof(int) ? *(const int *)at : *(const long *)at);
            break;
        case SR_KEY_FLOAT: sr_fp_doubles(fp, key->path, (const double *)at, 1); break;
        case SR_KEY_INTS: {
            const int count = *(const int *)((const char *)conf + key->count_offset);
            header(fp, key->path, 'n', sizeof(int) * (size_t)count);
            XXH3_64bits_update(fp->h, at, sizeof(int) * (size_t)count);
            break;
        }
        case SR_KEY_FLOATS:
            sr_fp_doubles(fp, key->path, (const double *)at, (size_t)*(const int *)((const char *)conf + key->count_offset));
            break;
        }
    }
}

void sr_fp_data(sr_fingerprint *fp, const sr_dataset *ds)
{
    sr_fp_text(fp, "data", "");
    sr_data_hash(fp->h, ds);
}

void sr_fp_backend(sr_fingerprint *fp, const sr_backend *be, const char *gpu_math)
{
    char kernels[256];
    sr_be_kernels(be, kernels, sizeof kernels);
    if (kernels[0]) sr_fp_text(fp, "kernels", kernels);
    if (sr_be_host_memory(be)) return;
    sr_fp_text(fp, "backend", sr_be_name(be));
    sr_fp_text(fp, "gpu_math", gpu_math);
}

void sr_fp_digest(const sr_fingerprint *fp, char out[17])
{
    snprintf(out, 17, "%016llx", (unsigned long long)XXH3_64bits_digest(fp->h));
}

void sr_fp_end(sr_fingerprint *fp)
{
    XXH3_freeState(fp->h);
    fp->h = NULL;
}
