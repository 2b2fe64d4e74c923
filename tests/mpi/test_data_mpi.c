/* Data under mpirun -np 2: two shards of a data set read by two ranks make
 * the whole set, image for image; a PNG folder's manifest built by two ranks
 * is byte for byte the manifest one process builds alone. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm/shard.h"
#include "io/files.h"
#include "io/manifest.h"
#include "io/png_image.h"
#include "stages/data.h"
#include "test_util.h"

static semrep_comm comm;
static char dir[256];
static char err[1024];

static sr_dataset_conf default_dataset(void)
{
    semrep_conf c;
    CU_ASSERT_FATAL(sr_conf_load(&c, NULL, 0, NULL, err, sizeof err) == 0);
    sr_dataset_conf d = c.dataset;
    sr_conf_free(&c);
    return d;
}

static void test_shards_make_the_set(void)
{
    sr_dataset_conf dc = default_dataset();
    dc.limit = 300;
    sr_dataset *ds;
    CU_ASSERT_FATAL(sr_data_open(&dc, dir, &comm, &ds, err, sizeof err) == 0);
    long first, end;
    sr_shard(ds->count, 64, comm.rank, comm.size, &first, &end);
    /* each image's pixel sum, in a 300-long vector, zero where not mine */
    double sums[300] = {0}, all[300];
    float *img = malloc(sizeof(float) * 1024);
    for (long i = first; i < end; i++) {
        CU_ASSERT_FATAL(sr_dataset_read(ds, i, 1, img, err, sizeof err) == 0);
        for (int p = 0; p < 1024; p++) sums[i] += img[p];
        sums[i] += 1000.0; /* marks it read */
    }
    memcpy(all, sums, sizeof sums);
    sr_comm_sum(&comm, all, 300);
    int wrong = 0;
    for (long i = 0; i < ds->count; i++) {
        CU_ASSERT_FATAL(sr_dataset_read(ds, i, 1, img, err, sizeof err) == 0);
        double s = 1000.0;
        for (int p = 0; p < 1024; p++) s += img[p];
        wrong += all[i] != s; /* each image read exactly once, and the same */
    }
    CU_ASSERT_EQUAL(wrong, 0);
    free(img);
    sr_dataset_close(ds);
}

static void read_all(const char *path, char **text, long *len)
{
    FILE *f = fopen(path, "rb");
    CU_ASSERT_FATAL(f != NULL);
    fseek(f, 0, SEEK_END);
    *len = ftell(f);
    fseek(f, 0, SEEK_SET);
    *text = malloc((size_t)*len + 1);
    CU_ASSERT_FATAL(fread(*text, 1, (size_t)*len, f) == (size_t)*len);
    (*text)[*len] = '\0'; /* the callers search it as a string */
    fclose(f);
}

static void test_manifest_whatever_the_ranks(void)
{
    char root[512], path[700];
    snprintf(root, sizeof root, "%s/pngs", dir);
    if (comm.rank == 0) {
        CU_ASSERT_FATAL(sr_make_dirs(root, err, sizeof err) == 0);
        float px[3 * 64];
        for (int f = 0; f < 9; f++) {
            for (int i = 0; i < 3 * 64; i++) px[i] = (float)((f * 7 + i) % 11) / 10.0f;
            snprintf(path, sizeof path, "%s/img%02d.png", root, f);
            CU_ASSERT_FATAL(sr_png_write(path, px, 3, 8, 8, err, sizeof err) == 0);
        }
        snprintf(path, sizeof path, "%s/img04.png", root);
        FILE *bad = fopen(path, "w");
        fputs("broken", bad);
        fclose(bad);
    }
    sr_comm_barrier(&comm);
    sr_dataset_conf dc = default_dataset();
    snprintf(dc.kind, sizeof dc.kind, "png");
    snprintf(dc.path, sizeof dc.path, "%s", root);
    snprintf(dc.on_bad_image, sizeof dc.on_bad_image, "skip");
    dc.max_bad_share = 0.5;
    dc.size = 8;
    dc.channels = 3;
    sr_dataset *ds;
    CU_ASSERT_FATAL(sr_data_open(&dc, dir, &comm, &ds, err, sizeof err) == 0);
    CU_ASSERT_EQUAL(ds->count, 8);
    CU_ASSERT_EQUAL(ds->skipped, 1);
    sr_dataset_close(ds);
    if (comm.rank == 0) {
        /* the same manifest made by one process, file by file */
        sr_manifest m;
        CU_ASSERT_FATAL(sr_manifest_list(root, dc.max_pixels, &m, err, sizeof err) == 0);
        float scratch[3 * 64];
        for (long i = 0; i < m.count; i++) sr_manifest_check(&m, &m.entries[i], 3, 8, scratch);
        char alone[700], parallel[700];
        snprintf(alone, sizeof alone, "%s/alone.tsv", dir);
        CU_ASSERT_FATAL(sr_manifest_write(alone, &m, err, sizeof err) == 0);
        sr_manifest_free(&m);
        sr_manifest_path(dir, root, parallel, sizeof parallel);
        char *a, *b;
        long la, lb;
        read_all(alone, &a, &la);
        read_all(parallel, &b, &lb);
        CU_ASSERT(la == lb && !memcmp(a, b, (size_t)la));
        CU_ASSERT_PTR_NOT_NULL(strstr(b, "img04.png"));
        free(a), free(b);
    }
}

int main(int argc, char **argv)
{
    sr_comm_init(&comm, &argc, &argv);
    /* one folder for both ranks */
    snprintf(dir, sizeof dir, "/tmp/semrep_test_mpi_data_XXXXXX");
    if (comm.rank == 0) sr_test_temp_dir(dir);
    sr_comm_bcast(&comm, dir, sizeof dir, 0);
    const sr_test tests[] = {
        {"two shards make the whole set", test_shards_make_the_set},
        {"the manifest is the same whatever the rank count", test_manifest_whatever_the_ranks},
        {NULL, NULL},
    };
    const int failed = sr_test_run("mpi_data", tests);
    sr_comm_barrier(&comm);
    if (comm.rank == 0) sr_test_remove_tree(dir);
    sr_comm_finalize(&comm);
    return failed;
}
