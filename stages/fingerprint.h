/* Fingerprints: what an output depends on, hashed field by field. Each
 * field is hashed as its name, its type and its value's bytes, never a
 * whole struct (C leaves padding bytes undefined), and the scheme's
 * version comes first, so a change of scheme changes every fingerprint.
 * A file stores the version it was made under (`fingerprint_version`);
 * one of another version is made again, never refused (docs/formats.md). */
#ifndef SEMREP_STAGES_FINGERPRINT_H
#define SEMREP_STAGES_FINGERPRINT_H

#include <stddef.h>
#include <xxhash.h>

#include "core/backend.h"
#include "io/conf.h"
#include "io/dataset.h"

/* 1: whole structs and unnamed fields (before 2026-11-30); 2: named fields,
 * nothing for the CPU backend (before oneDNN's convolutions); 3: the CPU's
 * kernels too (sr_fp_backend) */
#define SR_FINGERPRINT_VERSION 3

typedef struct {
    XXH3_state_t *h;
} sr_fingerprint;

/* Starts one, with the scheme's version and what it is of ("phi", ...). */
void sr_fp_begin(sr_fingerprint *fp, const char *what);
void sr_fp_text(sr_fingerprint *fp, const char *name, const char *value);
void sr_fp_long(sr_fingerprint *fp, const char *name, long long value);
void sr_fp_doubles(sr_fingerprint *fp, const char *name, const double *values, size_t count);
void sr_fp_floats(sr_fingerprint *fp, const char *name, const float *values, size_t count);
void sr_fp_longs(sr_fingerprint *fp, const char *name, const long *values, size_t count);
/* Every key of the conf under `prefix` ("phi."), by the key table, except
 * the `skip` keys (NULL-terminated full paths): what a stage's settings are. */
void sr_fp_conf(sr_fingerprint *fp, const semrep_conf *conf, const char *prefix, const char *const *skip);
/* The data set's images: description, content stamp, every image's source index. */
void sr_fp_data(sr_fingerprint *fp, const sr_dataset *ds);
/* What fixes the backend's last bits: a GPU backend and its products
 * (gpu_math); for the CPU, the kernels the processor chose (sr_be_kernels:
 * oneDNN's version and ISA, OpenBLAS's kernels), and nothing of gpu_math,
 * so CPU outputs do not depend on GPUs existing. */
void sr_fp_backend(sr_fingerprint *fp, const sr_backend *be, const char *gpu_math);
/* The digest so far as 16 hex digits; the fingerprint may go on. */
void sr_fp_digest(const sr_fingerprint *fp, char out[17]);
void sr_fp_end(sr_fingerprint *fp);

#endif
