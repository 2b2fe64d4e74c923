#define _GNU_SOURCE /* mkdtemp, nftw */
#include "test_util.h"

#include <CUnit/Basic.h>
#include <ftw.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "core/rng.h"

int sr_test_run(const char *suite_name, const sr_test *tests)
{
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    CU_pSuite suite = CU_add_suite(suite_name, NULL, NULL);
    if (!suite) return 1;
    for (const sr_test *t = tests; t->name; t++)
        if (!CU_add_test(suite, t->name, t->run)) return 1;
    CU_basic_set_mode(CU_BRM_VERBOSE);
    CU_basic_run_tests();
    const unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    const unsigned ran = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    return failed || ran == 0 ? 1 : 0;
}

static int read_u32(FILE *f, uint32_t *v) { return fread(v, 4, 1, f) == 1; }

sr_fixture *sr_fixture_load(const char *file)
{
    char path[1024];
    if (file[0] == '/') snprintf(path, sizeof path, "%s", file); /* one a test wrote */
    else snprintf(path, sizeof path, "%s/%s", SEMREP_FIXTURES, file);
    FILE *f = fopen(path, "rb");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    char magic[4];
    uint32_t version = 0, count = 0;
    CU_ASSERT_FATAL(fread(magic, 1, 4, f) == 4 && !memcmp(magic, "SRFX", 4));
    CU_ASSERT_FATAL(read_u32(f, &version) && version == 1 && read_u32(f, &count));
    sr_fixture *fx = calloc(1, sizeof *fx);
    fx->records = calloc(count, sizeof(sr_record));
    fx->count = (int)count;
    for (uint32_t r = 0; r < count; r++) {
        sr_record *rec = &fx->records[r];
        uint32_t len = 0, ndim = 0;
        CU_ASSERT_FATAL(read_u32(f, &len) && len < sizeof rec->name);
        CU_ASSERT_FATAL(fread(rec->name, 1, len, f) == len);
        CU_ASSERT_FATAL(read_u32(f, &ndim) && ndim <= 8);
        rec->ndim = (int)ndim;
        rec->count = 1;
        for (uint32_t d = 0; d < ndim; d++) {
            uint32_t dim = 0;
            CU_ASSERT_FATAL(read_u32(f, &dim));
            rec->dims[d] = (int)dim;
            rec->count *= dim;
        }
        rec->data = malloc(sizeof(float) * rec->count);
        CU_ASSERT_FATAL(fread(rec->data, sizeof(float), rec->count, f) == rec->count);
    }
    fclose(f);
    return fx;
}

const sr_record *sr_fixture_get(const sr_fixture *fx, const char *name)
{
    for (int r = 0; r < fx->count; r++)
        if (!strcmp(fx->records[r].name, name)) return &fx->records[r];
    return NULL;
}

void sr_fixture_free(sr_fixture *fx)
{
    if (!fx) return;
    for (int r = 0; r < fx->count; r++) free(fx->records[r].data);
    free(fx->records);
    free(fx);
}

double sr_max_rel_diff(const float *a, const float *ref, size_t n)
{
    double diff = 0.0, scale = 1e-30;
    for (size_t i = 0; i < n; i++) {
        diff = fmax(diff, fabs((double)a[i] - ref[i]));
        scale = fmax(scale, fabs((double)ref[i]));
        if (isnan(a[i])) return INFINITY;
    }
    return diff / scale;
}

double sr_norm_rel_diff(const double *a, const double *b, size_t n)
{
    double num = 0.0, den = 0.0;
    for (size_t i = 0; i < n; i++) {
        num += (a[i] - b[i]) * (a[i] - b[i]);
        den += b[i] * b[i];
    }
    return den > 0.0 ? sqrt(num / den) : sqrt(num);
}

void sr_test_uniform(unsigned index, float lo, float hi, size_t n, float *out)
{
    const sr_rng_stream s = {.seed = 12345, .domain = SR_RNG_TEST, .i0 = index};
    sr_rng_uniform(&s, 0, n, out);
    for (size_t i = 0; i < n; i++) out[i] = lo + (hi - lo) * out[i];
}

void sr_test_temp_dir(char *template_path)
{
    if (!mkdtemp(template_path)) {
        fprintf(stderr, "cannot make the test folder %s\n", template_path);
        exit(1);
    }
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

void sr_test_remove_tree(const char *dir)
{
    if (nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS) != 0) fprintf(stderr, "could not remove %s\n", dir);
}

const sr_backend *sr_test_backend(void)
{
    static sr_backend *be; /* one per test program, made on the first call */
    if (be) return be;
    const char *name = getenv("SEMREP_TEST_BACKEND");
    if (!name || !*name) name = "cpu";
    char err[256];
    const sr_backend_request request = {.name = name, .gpu_math = "fp32"};
    const int devices = strcmp(name, "cuda") ? 1 : sr_backend_cuda_devices(err, sizeof err);
    if (devices < 0) { /* a broken driver fails the test: it is not a CPU machine */
        fprintf(stderr, "SEMREP_TEST_BACKEND=cuda: %s\n", err);
        exit(1);
    }
    if (devices == 0) {
        printf("SKIPPED: SEMREP_TEST_BACKEND=cuda but no GPU is visible: %s\n", err);
        exit(77);
    }
    be = sr_backend_select(&request, err, sizeof err);
    if (!be) {
        fprintf(stderr, "SEMREP_TEST_BACKEND=%s: %s\n", name, err);
        exit(1);
    }
    char text[256];
    sr_be_describe(be, text, sizeof text);
    printf("backend %s: %s\n", sr_be_name(be), text);
    return be;
}
