/* Shared test helpers: running a CUnit suite, reading the PyTorch fixtures,
 * comparing arrays. */
#ifndef SEMREP_TEST_UTIL_H
#define SEMREP_TEST_UTIL_H

#include <CUnit/CUnit.h>
#include <stddef.h>

#include "core/backend.h"

typedef struct {
    const char *name;
    void (*run)(void);
} sr_test;

/* Registers the tests as one suite, runs them, returns the failure count
 * (non-zero exit). The list ends with {NULL, NULL}. */
int sr_test_run(const char *suite, const sr_test *tests);

/* A record of a fixture written by tests/fixtures/make_unet_fixture.py. */
typedef struct {
    char name[64];
    int ndim, dims[8];
    size_t count;
    float *data;
} sr_record;

typedef struct {
    int count;
    sr_record *records;
} sr_fixture;

/* Loads SEMREP_FIXTURES/<file> (or <file> itself when it starts with /); a
 * CUnit failure and NULL if it cannot. */
sr_fixture *sr_fixture_load(const char *file);
const sr_record *sr_fixture_get(const sr_fixture *fx, const char *name);
void sr_fixture_free(sr_fixture *fx);

/* max |a - b| / max(1e-30, max |ref|) */
double sr_max_rel_diff(const float *a, const float *ref, size_t n);
/* ||a - b|| / ||b|| in double */
double sr_norm_rel_diff(const double *a, const double *b, size_t n);

/* A new folder from a mkdtemp template ("/tmp/name_XXXXXX"); dies if it cannot. */
void sr_test_temp_dir(char *template_path);
/* rm -rf, for a test's temporary folder. */
void sr_test_remove_tree(const char *dir);

/* The backend a suite runs on: SEMREP_TEST_BACKEND ("cpu", the default, or
 * "cuda"). When "cuda" is asked for and no GPU is visible, prints why and
 * exits with 77, which CTest reports as skipped. The same instance on every
 * call, made on the first and kept while the program runs. */
const sr_backend *sr_test_backend(void);

/* Uniform in [lo, hi) from a fixed test stream (index names the stream). */
void sr_test_uniform(unsigned index, float lo, float hi, size_t n, float *out);

#endif
