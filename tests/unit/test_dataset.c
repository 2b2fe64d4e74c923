/* Data sets: the real Fashion-MNIST files against values computed
 * independently with Python's gzip module (docs/datasets.md); padding,
 * cropping and channels; selections; NetCDF arrays; PNG folders with classes,
 * a manifest and the bad-file policy; broken files, each with its message;
 * sharding and epoch orders; memory that does not grow with the data set. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <math.h>
#include <netcdf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xxhash.h>
#include <zlib.h>

#include "comm/shard.h"
#include "io/checkpoint.h"
#include "io/files.h"
#include "io/manifest.h"
#include "io/png_image.h"
#include "stages/data.h"
#include "test_util.h"

#define FMNIST "/usr/share/datasets/fashion-mnist/"

static semrep_comm comm;
static char dir[] = "/tmp/semrep_test_data_XXXXXX";
static char err[1024];

static sr_dataset_conf base_conf(void)
{
    semrep_conf c;
    CU_ASSERT_FATAL(sr_conf_load(&c, NULL, 0, NULL, err, sizeof err) == 0);
    sr_dataset_conf d = c.dataset;
    sr_conf_free(&c);
    return d;
}

/* The PNG folder `root`, read as 8x8 RGB. */
static sr_dataset_conf png_conf(const char *root)
{
    sr_dataset_conf dc = base_conf();
    snprintf(dc.kind, sizeof dc.kind, "png");
    snprintf(dc.path, sizeof dc.path, "%s", root);
    dc.size = 8;
    dc.channels = 3;
    return dc;
}

static sr_dataset *open_ok(const sr_dataset_conf *dc)
{
    sr_dataset *ds = NULL;
    const int rc = sr_data_open(dc, dir, &comm, &ds, err, sizeof err);
    if (rc) printf("\n    %s", err);
    CU_ASSERT_FATAL(rc == 0);
    return ds;
}

static void expect_refused(const sr_dataset_conf *dc, const char *want, const char *also)
{
    sr_dataset *ds = NULL;
    err[0] = '\0';
    CU_ASSERT_EQUAL(sr_data_open(dc, dir, &comm, &ds, err, sizeof err), -1);
    CU_ASSERT_PTR_NULL(ds);
    const int named = strstr(err, want) && (!also || strstr(err, also));
    printf("\n    %s", err);
    CU_ASSERT(named);
    CU_ASSERT_PTR_NULL(strchr(err, '\n'));
}

static double image_sum(const float *img, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++) s += img[i];
    return s * 255.0;
}

/* Values from Python: gzip.open(...).read(), label byte 8 + i, sum of the
 * 784 bytes at 16 + 784 i, and the byte of row 14, column 14. */
static void test_fashion_mnist(void)
{
    const struct {
        const char *split;
        long count, index;
        int label;
        long sum;
        int centre;
    } ref[] = {
        {"t10k", 10000, 0, 9, 33456, 110},   {"t10k", 10000, 1, 2, 100994, 234},
        {"t10k", 10000, 4242, 6, 102406, 207}, {"t10k", 10000, 9999, 5, 24390, 132},
        {"train", 60000, 0, 9, 76247, 217},  {"train", 60000, 59999, 5, 16684, 0},
    };
    float img[3 * 32 * 32];
    for (size_t r = 0; r < sizeof ref / sizeof *ref; r++) {
        sr_dataset_conf dc = base_conf();
        snprintf(dc.images, sizeof dc.images, FMNIST "%s-images-idx3-ubyte.gz", ref[r].split);
        snprintf(dc.labels, sizeof dc.labels, FMNIST "%s-labels-idx1-ubyte.gz", ref[r].split);
        sr_dataset *ds = open_ok(&dc);
        CU_ASSERT_EQUAL(ds->count, ref[r].count);
        CU_ASSERT_EQUAL(ds->nclasses, 10);
        CU_ASSERT_EQUAL(sr_dataset_label(ds, ref[r].index), ref[r].label);
        CU_ASSERT_FATAL(sr_dataset_read(ds, ref[r].index, 1, img, err, sizeof err) == 0);
        CU_ASSERT_DOUBLE_EQUAL(image_sum(img, 32 * 32), (double)ref[r].sum, 1e-2);
        /* 28 -> 32 pads 2 on each side: source (14, 14) is (16, 16) */
        CU_ASSERT_DOUBLE_EQUAL(img[16 * 32 + 16] * 255.0, ref[r].centre, 1e-3);
        CU_ASSERT_EQUAL(img[0], 0.0f);
        CU_ASSERT_EQUAL(img[1 * 32 + 31], 0.0f);
        char name[SR_NAME_MAX];
        sr_dataset_name(ds, ref[r].index, name, sizeof name);
        CU_ASSERT_PTR_NOT_NULL(strstr(name, ref[r].split));
        sr_dataset_close(ds);
    }
    /* 24 x 24 crops 2 from each side: (14, 14) is (12, 12); three channels repeat grey */
    sr_dataset_conf dc = base_conf();
    dc.size = 24;
    dc.channels = 3;
    sr_dataset *ds = open_ok(&dc);
    CU_ASSERT_FATAL(sr_dataset_read(ds, 1, 1, img, err, sizeof err) == 0);
    CU_ASSERT_DOUBLE_EQUAL(img[12 * 24 + 12] * 255.0, 234, 1e-3);
    CU_ASSERT_EQUAL(img[2 * 576 + 12 * 24 + 12], img[12 * 24 + 12]);
    sr_dataset_close(ds);
}

static void test_selection(void)
{
    sr_dataset_conf dc = base_conf();
    dc.stride = 100;
    dc.limit = 7;
    sr_dataset *ds = open_ok(&dc);
    CU_ASSERT_EQUAL(ds->count, 7);
    CU_ASSERT_EQUAL(sr_dataset_origin(ds, 6), 600);
    sr_dataset_close(ds);
    snprintf(dc.index_file, sizeof dc.index_file, "%s/indices.txt", dir);
    FILE *f = fopen(dc.index_file, "w");
    fputs("9999\n1\n4242\n", f);
    fclose(f);
    dc.stride = 1;
    dc.limit = 0;
    ds = open_ok(&dc);
    CU_ASSERT_EQUAL(ds->count, 3);
    CU_ASSERT_EQUAL(sr_dataset_label(ds, 0), 5);
    CU_ASSERT_EQUAL(sr_dataset_label(ds, 2), 6);
    float img[2][32 * 32];
    const long order[2] = {2, 0};
    CU_ASSERT_FATAL(sr_dataset_read_list(ds, order, 2, img[0], err, sizeof err) == 0);
    CU_ASSERT_DOUBLE_EQUAL(image_sum(img[0], 1024), 102406, 1e-2);
    CU_ASSERT_DOUBLE_EQUAL(image_sum(img[1], 1024), 24390, 1e-2);
    sr_dataset_close(ds);
    f = fopen(dc.index_file, "w");
    fputs("3\n10000\n", f);
    fclose(f);
    expect_refused(&dc, "indices.txt line 2", "not an image index in 0..9999");
}

static void write_file(const char *path, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "wb");
    CU_ASSERT_FATAL(f != NULL);
    fwrite(bytes, 1, n, f);
    fclose(f);
}

static void test_bad_idx(void)
{
    sr_dataset_conf dc = base_conf();
    dc.labels[0] = '\0';
    char path[512];
    snprintf(path, sizeof path, "%s/wrong-magic.idx", dir);
    const unsigned char magic[16] = {0, 0, 8, 1, 0, 0, 0, 1, 0, 0, 0, 28, 0, 0, 0, 28};
    write_file(path, magic, sizeof magic);
    snprintf(dc.images, sizeof dc.images, "%s", path);
    expect_refused(&dc, "wrong-magic.idx is not an IDX image file", "0x00000801");

    snprintf(path, sizeof path, "%s/short.idx", dir);
    unsigned char shorted[16 + 784 * 2] = {0, 0, 8, 3, 0, 0, 0, 100, 0, 0, 0, 28, 0, 0, 0, 28};
    write_file(path, shorted, sizeof shorted);
    snprintf(dc.images, sizeof dc.images, "%s", path);
    expect_refused(&dc, "short.idx claims 100 images of 28x28", "truncated");

    /* a gzip stream cut in the middle, and one with its middle overwritten */
    const long n = 200000;
    unsigned char *raw = malloc((size_t)n);
    FILE *src = fopen(FMNIST "t10k-images-idx3-ubyte.gz", "rb");
    CU_ASSERT_FATAL(fread(raw, 1, (size_t)n, src) == (size_t)n);
    fclose(src);
    snprintf(path, sizeof path, "%s/cut.idx.gz", dir);
    write_file(path, raw, (size_t)n);
    snprintf(dc.images, sizeof dc.images, "%s", path);
    expect_refused(&dc, "cut.idx.gz: corrupt or truncated gzip stream (unexpected end of file)", NULL);
    memset(raw + 5000, 0x55, 3000);
    snprintf(path, sizeof path, "%s/garbled.idx.gz", dir);
    write_file(path, raw, (size_t)n);
    snprintf(dc.images, sizeof dc.images, "%s", path);
    expect_refused(&dc, "garbled.idx.gz: corrupt or truncated gzip stream", NULL);
    free(raw);

    snprintf(dc.images, sizeof dc.images, "%s/absent.idx", dir);
    expect_refused(&dc, "cannot read", "absent.idx (dataset.images)");

    dc = base_conf();
    snprintf(dc.labels, sizeof dc.labels, FMNIST "train-labels-idx1-ubyte.gz");
    expect_refused(&dc, "holds 60000 labels for 10000 images", NULL);
}

static void test_netcdf(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/arrays.nc", dir);
    int ncid, dims[4], bytes, floats, labels;
    CU_ASSERT_FATAL(nc_create(path, NC_NETCDF4 | NC_CLOBBER, &ncid) == NC_NOERR);
    nc_def_dim(ncid, "image", 3, &dims[0]);
    nc_def_dim(ncid, "channel", 3, &dims[1]);
    nc_def_dim(ncid, "y", 8, &dims[2]);
    nc_def_dim(ncid, "x", 8, &dims[3]);
    nc_def_var(ncid, "bytes", NC_UBYTE, 4, dims, &bytes);
    nc_def_var(ncid, "floats", NC_FLOAT, 4, dims, &floats);
    nc_def_var(ncid, "label", NC_INT, 1, dims, &labels);
    nc_enddef(ncid);
    unsigned char b[3 * 3 * 64];
    float f[3 * 3 * 64];
    for (int i = 0; i < 3 * 3 * 64; i++) b[i] = (unsigned char)(i % 251), f[i] = (float)(i % 251) / 255.0f;
    f[3 * 64 * 2 + 5] = 1.5f; /* image 2 holds a value out of range */
    const int lab[3] = {4, 0, 2};
    nc_put_var_uchar(ncid, bytes, b);
    nc_put_var_float(ncid, floats, f);
    nc_put_var_int(ncid, labels, lab);
    nc_close(ncid);

    sr_dataset_conf dc = base_conf();
    snprintf(dc.kind, sizeof dc.kind, "netcdf");
    snprintf(dc.file, sizeof dc.file, "%s", path);
    snprintf(dc.variable, sizeof dc.variable, "bytes");
    snprintf(dc.label_variable, sizeof dc.label_variable, "label");
    dc.size = 8;
    dc.channels = 3;
    sr_dataset *ds = open_ok(&dc);
    CU_ASSERT_EQUAL(ds->count, 3);
    CU_ASSERT_EQUAL(ds->nclasses, 5);
    CU_ASSERT_EQUAL(sr_dataset_label(ds, 0), 4);
    float img[3 * 64];
    CU_ASSERT_FATAL(sr_dataset_read(ds, 1, 1, img, err, sizeof err) == 0);
    for (int i = 0; i < 3 * 64; i++) CU_ASSERT_DOUBLE_EQUAL(img[i] * 255.0, (3 * 64 + i) % 251, 1e-3);
    sr_dataset_close(ds);
    /* grey from RGB by luma, padded to 16 */
    dc.channels = 1;
    dc.size = 16;
    snprintf(dc.variable, sizeof dc.variable, "floats");
    ds = open_ok(&dc);
    float grey[256];
    CU_ASSERT_FATAL(sr_dataset_read(ds, 0, 1, grey, err, sizeof err) == 0);
    const double want = (0.299 * (9) + 0.587 * (64 + 9) + 0.114 * (128 + 9)) / 255.0; /* pixel (1, 1) */
    CU_ASSERT_DOUBLE_EQUAL(grey[(4 + 1) * 16 + 4 + 1], want, 1e-6);
    CU_ASSERT_EQUAL(grey[0], 0.0f);
    CU_ASSERT_EQUAL(sr_dataset_read(ds, 2, 1, grey, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "image 2 of floats holds 1.5, outside [0, 1]"));
    sr_dataset_close(ds);
    snprintf(dc.variable, sizeof dc.variable, "pixels");
    expect_refused(&dc, "arrays.nc has no variable pixels (dataset.variable)", NULL);
    snprintf(dc.variable, sizeof dc.variable, "label");
    expect_refused(&dc, "label must be (image, channel, y, x)", NULL);
}

/* ---- PNG folders ---------------------------------------------------------- */

static void png_at(const char *folder, const char *name, float value)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", folder, name);
    float px[3 * 16 * 16];
    for (int i = 0; i < 3 * 256; i++) px[i] = value;
    CU_ASSERT_FATAL(sr_png_write(path, px, 3, 16, 16, err, sizeof err) == 0);
}

static void test_png_folder(void)
{
    char root[512], sub[600];
    snprintf(root, sizeof root, "%s/pngs", dir);
    const char *classes[] = {"cat", "dog"};
    for (int c = 0; c < 2; c++) {
        snprintf(sub, sizeof sub, "%s/%s", root, classes[c]);
        CU_ASSERT_FATAL(sr_make_dirs(sub, err, sizeof err) == 0);
    }
    snprintf(sub, sizeof sub, "%s/dog", root);
    png_at(sub, "b.png", 0.2f);
    png_at(sub, "a.PNG", 0.4f);
    snprintf(sub, sizeof sub, "%s/cat", root);
    png_at(sub, "z.png", 0.6f);
    char bad[700];
    snprintf(bad, sizeof bad, "%s/broken.png", sub);
    write_file(bad, "not a png at all", 16);
    sr_dataset_conf dc = png_conf(root);
    expect_refused(&dc, "cat/broken.png", "on_bad_image = \"fail\"");
    snprintf(dc.on_bad_image, sizeof dc.on_bad_image, "skip");
    expect_refused(&dc, "1 of 4 images", "max_bad_share");
    dc.max_bad_share = 0.5;
    sr_dataset *ds = open_ok(&dc);
    /* sorted by path: cat/broken (bad), cat/z, dog/a.PNG, dog/b */
    CU_ASSERT_EQUAL(ds->count, 3);
    CU_ASSERT_EQUAL(ds->skipped, 1);
    CU_ASSERT_EQUAL(ds->nclasses, 2);
    CU_ASSERT_STRING_EQUAL(ds->class_names[1], "dog");
    const int want_label[3] = {0, 1, 1};
    const float want_value[3] = {0.6f, 0.4f, 0.2f};
    float img[3 * 64];
    for (long i = 0; i < 3; i++) {
        CU_ASSERT_EQUAL(sr_dataset_label(ds, i), want_label[i]);
        CU_ASSERT_FATAL(sr_dataset_read(ds, i, 1, img, err, sizeof err) == 0);
        CU_ASSERT_DOUBLE_EQUAL(img[37], want_value[i], 0.5 / 255);
    }
    char name[SR_NAME_MAX];
    sr_dataset_name(ds, 1, name, sizeof name);
    CU_ASSERT_PTR_NOT_NULL(strstr(name, "dog/a.PNG"));
    sr_dataset_close(ds);
    /* The manifest lists the bad file with its reason, and keeps verdicts: a
     * new file is checked, the others are not decoded again (the broken file
     * rewritten in place, same size and time, is checked again: its change
     * time moved; it is still bad). */
    char mpath[1024];
    sr_manifest_path(dir, root, mpath, sizeof mpath);
    sr_manifest m;
    CU_ASSERT_FATAL(sr_manifest_read(mpath, &m, err, sizeof err) == 0);
    CU_ASSERT_EQUAL(m.count, 4);
    CU_ASSERT_STRING_EQUAL(m.entries[0].name, "cat/broken.png");
    CU_ASSERT_PTR_NOT_NULL(strstr(m.entries[0].reason, "not a PNG"));
    sr_manifest_free(&m);
    struct stat st;
    stat(bad, &st);
    write_file(bad, "still not a png!", 16);
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    utimensat(AT_FDCWD, bad, times, 0);
    png_at(sub, "c.png", 0.8f);
    ds = open_ok(&dc);
    CU_ASSERT_EQUAL(ds->count, 4);
    CU_ASSERT_EQUAL(sr_dataset_label(ds, 0), 0);
    CU_ASSERT_FATAL(sr_dataset_read(ds, 0, 1, img, err, sizeof err) == 0);
    CU_ASSERT_DOUBLE_EQUAL(img[0], 0.8f, 0.5 / 255);
    sr_dataset_close(ds);
    /* an empty class folder */
    snprintf(sub, sizeof sub, "%s/empty", root);
    CU_ASSERT_FATAL(sr_make_dirs(sub, err, sizeof err) == 0);
    expect_refused(&dc, "the class folder", "empty holds no PNG file");
    rmdir(sub);
}

/* File names with a tab or a line break are images like any other: the
 * manifest escapes them (\t, \n) and stays readable, with on_bad_image
 * "fail" and "skip" alike; the noise key is the hash of the raw name. */
static void test_png_odd_names(void)
{
    char root[512];
    snprintf(root, sizeof root, "%s/odd", dir);
    CU_ASSERT_FATAL(sr_make_dirs(root, err, sizeof err) == 0);
    png_at(root, "plain.png", 0.2f);
    png_at(root, "tab\there.png", 0.4f);
    png_at(root, "new\nline.png", 0.6f);
    png_at(root, "back\\slash.png", 0.8f);
    sr_dataset_conf dc = png_conf(root);
    /* byte order: back\slash, new\nline, plain, tab\there */
    const char *names[4] = {"back\\slash.png", "new\nline.png", "plain.png", "tab\there.png"};
    const float values[4] = {0.8f, 0.6f, 0.2f, 0.4f};
    for (int policy = 0; policy < 2; policy++) {
        snprintf(dc.on_bad_image, sizeof dc.on_bad_image, policy ? "skip" : "fail");
        for (int again = 0; again < 2; again++) { /* built, then read back */
            sr_dataset *ds = open_ok(&dc);
            CU_ASSERT_EQUAL(ds->count, 4);
            CU_ASSERT_EQUAL(ds->skipped, 0);
            float img[3 * 64];
            for (long i = 0; i < 4 && i < ds->count; i++) {
                char name[SR_NAME_MAX], want[SR_NAME_MAX + 600];
                sr_dataset_name(ds, i, name, sizeof name);
                snprintf(want, sizeof want, "%s/%s", root, names[i]);
                CU_ASSERT_STRING_EQUAL(name, want);
                CU_ASSERT_EQUAL(sr_dataset_noise_key(ds, i), XXH32(names[i], strlen(names[i]), 0) & 0x7fffffffu);
                CU_ASSERT_FATAL(sr_dataset_read(ds, i, 1, img, err, sizeof err) == 0);
                CU_ASSERT_DOUBLE_EQUAL(img[37], values[i], 0.5 / 255);
            }
            sr_dataset_close(ds);
        }
    }
    /* the manifest holds the escapes, one line per file */
    char mpath[1024], text[4096];
    sr_manifest_path(dir, root, mpath, sizeof mpath);
    FILE *f = fopen(mpath, "r");
    CU_ASSERT_PTR_NOT_NULL_FATAL(f);
    const size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "\ttab\\there.png\t"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "\tnew\\nline.png\t"));
    CU_ASSERT_PTR_NOT_NULL(strstr(text, "\tback\\\\slash.png\t"));
    int lines = 0;
    for (const char *p = text; *p; p++) lines += *p == '\n';
    CU_ASSERT_EQUAL(lines, 5 + 4);
    /* a bad file with a line break in its name: named escaped, in one line */
    char bad[700];
    snprintf(bad, sizeof bad, "%s/bad\nname.png", root);
    write_file(bad, "not a png at all", 16);
    snprintf(dc.on_bad_image, sizeof dc.on_bad_image, "fail");
    expect_refused(&dc, "odd/bad\\nname.png: is not a PNG file", "on_bad_image = \"fail\"");
    snprintf(dc.on_bad_image, sizeof dc.on_bad_image, "skip");
    dc.max_bad_share = 0.5;
    sr_dataset *ds = open_ok(&dc);
    CU_ASSERT_EQUAL(ds->count, 4);
    CU_ASSERT_EQUAL(ds->skipped, 1);
    sr_dataset_close(ds);
}

/* Only regular files are read: a FIFO given as any input file is refused by
 * name at once, never waited on (the alarm fails the test if it hangs). */
static void test_special_files(void)
{
    char fifo[512];
    snprintf(fifo, sizeof fifo, "%s/a-fifo", dir);
    CU_ASSERT_FATAL(mkfifo(fifo, 0600) == 0);
    alarm(30);
    sr_dataset_conf dc = base_conf();
    snprintf(dc.images, sizeof dc.images, "%s", fifo);
    expect_refused(&dc, "a-fifo (dataset.images) is a FIFO", "regular files");
    dc = base_conf();
    snprintf(dc.labels, sizeof dc.labels, "%s", fifo);
    expect_refused(&dc, "a-fifo (dataset.labels) is a FIFO", NULL);
    dc = base_conf();
    snprintf(dc.classes, sizeof dc.classes, "%s", fifo);
    expect_refused(&dc, "a-fifo (dataset.classes) is a FIFO", NULL);
    dc = base_conf();
    snprintf(dc.index_file, sizeof dc.index_file, "%s", fifo);
    expect_refused(&dc, "a-fifo (dataset.index_file) is a FIFO", NULL);
    snprintf(dc.kind, sizeof dc.kind, "netcdf");
    snprintf(dc.file, sizeof dc.file, "%s", fifo);
    expect_refused(&dc, "a-fifo (dataset.file) is a FIFO", NULL);
    sr_checkpoint_info info;
    CU_ASSERT_EQUAL(sr_checkpoint_read_info(fifo, &info, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "a-fifo (model.checkpoint) is a FIFO"));
    float px[3 * 64];
    CU_ASSERT_EQUAL(sr_png_load(fifo, 3, 8, 1000, px, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "a-fifo (a PNG image) is a FIFO"));
    semrep_conf conf;
    CU_ASSERT_EQUAL(sr_conf_load(&conf, fifo, 0, NULL, err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "a-fifo (the conf) is a FIFO"));
    CU_ASSERT_EQUAL(sr_check_regular("/dev/null", "dataset.images", err, sizeof err), -1);
    CU_ASSERT_PTR_NOT_NULL(strstr(err, "/dev/null (dataset.images) is a character device"));
    /* a FIFO named like a PNG in a folder is listed as bad, not read */
    char root[512], name[600];
    snprintf(root, sizeof root, "%s/with-fifo", dir);
    CU_ASSERT_FATAL(sr_make_dirs(root, err, sizeof err) == 0);
    png_at(root, "a.png", 0.2f);
    snprintf(name, sizeof name, "%s/b.png", root);
    CU_ASSERT_FATAL(mkfifo(name, 0600) == 0);
    dc = base_conf();
    snprintf(dc.kind, sizeof dc.kind, "png");
    snprintf(dc.path, sizeof dc.path, "%s", root);
    dc.size = 8;
    dc.channels = 3;
    expect_refused(&dc, "b.png: not a regular file", "on_bad_image");
    alarm(0);
    unlink(fifo);
}

/* A gzip bomb: a header claiming 3 images of 28x28, then 8 MB of zeros. The
 * uncompressing stops past the 2368 bytes claimed, and leaves nothing in cache/. */
static void test_gzip_bomb(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/bomb.idx.gz", dir);
    gzFile gz = gzopen(path, "wb9");
    CU_ASSERT_FATAL(gz != NULL);
    const unsigned char head[16] = {0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 28, 0, 0, 0, 28};
    gzwrite(gz, head, sizeof head);
    static unsigned char zeros[1 << 20];
    for (int i = 0; i < 8; i++) gzwrite(gz, zeros, sizeof zeros);
    gzclose(gz);
    struct stat st;
    stat(path, &st);
    CU_ASSERT(st.st_size < 100000);
    sr_dataset_conf dc = base_conf();
    dc.labels[0] = '\0';
    snprintf(dc.images, sizeof dc.images, "%s", path);
    expect_refused(&dc, "bomb.idx.gz (dataset.images) uncompresses to more than the 2368 bytes its IDX header claims",
                   NULL);
    /* labels the same way: a header claiming 10000 labels, then 1 MB */
    snprintf(path, sizeof path, "%s/bomb-labels.gz", dir);
    gz = gzopen(path, "wb9");
    const unsigned char lhead[8] = {0, 0, 8, 1, 0, 0, 0x27, 0x10};
    gzwrite(gz, lhead, sizeof lhead);
    gzwrite(gz, zeros, sizeof zeros);
    gzclose(gz);
    dc = base_conf();
    snprintf(dc.labels, sizeof dc.labels, "%s", path);
    expect_refused(&dc, "bomb-labels.gz (dataset.labels) uncompresses to more than the 10008 bytes", NULL);
    char cache[600];
    snprintf(cache, sizeof cache, "%s/cache", dir);
    DIR *d = opendir(cache);
    for (struct dirent *e; d && (e = readdir(d));) {
        CU_ASSERT_PTR_NULL(strstr(e->d_name, "bomb"));
    }
    if (d) closedir(d);
}

/* A NetCDF file declaring 2^40 images (an unlimited dimension written at
 * its far end, chunked: the file stays small) is refused at once by name. */
static void test_netcdf_huge(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/huge.nc", dir);
    int ncid, dims[4], var;
    CU_ASSERT_FATAL(nc_create(path, NC_NETCDF4 | NC_CLOBBER, &ncid) == NC_NOERR);
    nc_def_dim(ncid, "image", NC_UNLIMITED, &dims[0]);
    nc_def_dim(ncid, "channel", 1, &dims[1]);
    nc_def_dim(ncid, "y", 8, &dims[2]);
    nc_def_dim(ncid, "x", 8, &dims[3]);
    nc_def_var(ncid, "images", NC_UBYTE, 4, dims, &var);
    const size_t chunks[4] = {1, 1, 8, 8};
    nc_def_var_chunking(ncid, var, NC_CHUNKED, chunks);
    nc_enddef(ncid);
    const size_t start[4] = {(size_t)1 << 40, 0, 0, 0}, count[4] = {1, 1, 8, 8};
    unsigned char px[64] = {0};
    CU_ASSERT_FATAL(nc_put_vara_uchar(ncid, var, start, count, px) == NC_NOERR);
    nc_close(ncid);
    struct stat st;
    stat(path, &st);
    CU_ASSERT(st.st_size < 1000000);
    sr_dataset_conf dc = base_conf();
    snprintf(dc.kind, sizeof dc.kind, "netcdf");
    snprintf(dc.file, sizeof dc.file, "%s", path);
    dc.size = 8;
    expect_refused(&dc, "huge.nc: images declares 1099511627777 images", "at most 2147483647");
}

/* A class-name line longer than the reader's line is refused by its line
 * number, instead of being read as several names that shift the rest. */
static void test_long_class_name(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/classes.txt", dir);
    FILE *f = fopen(path, "w");
    CU_ASSERT_FATAL(f != NULL);
    fputs("T-shirt\n", f);
    for (int i = 0; i < 300; i++) fputc('x', f);
    fputs("\nPullover\nDress\nCoat\nSandal\nShirt\nSneaker\nBag\nAnkle boot\n", f);
    fclose(f);
    sr_dataset_conf dc = base_conf();
    snprintf(dc.classes, sizeof dc.classes, "%s", path);
    expect_refused(&dc, "classes.txt line 2: a class name of more than 254 characters", NULL);
    /* at the limit it is kept, cut to what a name holds */
    f = fopen(path, "w");
    fputs("T-shirt\n", f);
    for (int i = 0; i < 254; i++) fputc('y', f);
    fputs("\nPullover\nDress\nCoat\nSandal\nShirt\nSneaker\nBag\nAnkle boot", f);
    fclose(f);
    sr_dataset *ds = open_ok(&dc);
    CU_ASSERT_STRING_EQUAL(ds->class_names[2], "Pullover");
    CU_ASSERT_STRING_EQUAL(ds->class_names[9], "Ankle boot");
    CU_ASSERT_EQUAL(strlen(ds->class_names[1]), SR_CLASS_NAME_MAX - 1);
    sr_dataset_close(ds);
}

/* A data file rewritten with its size and whole-second time kept (touch -d
 * to the same second) is seen as changed: the data set's stamp moves and a
 * gzipped IDX file's uncompressed copy is made again, not reused stale. */
static void test_stale_stamp(void)
{
    char path[512];
    snprintf(path, sizeof path, "%s/same-size.idx.gz", dir);
    unsigned char file[16 + 2 * 64] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 8, 0, 0, 0, 8};
    memset(file + 16, 100, 2 * 64);
    gzFile gz = gzopen(path, "wb0"); /* stored: the size does not depend on the bytes */
    CU_ASSERT_FATAL(gz != NULL);
    gzwrite(gz, file, sizeof file);
    gzclose(gz);
    const struct timespec second[2] = {{1700000000, 0}, {1700000000, 0}};
    CU_ASSERT_FATAL(utimensat(AT_FDCWD, path, second, 0) == 0);
    struct stat before;
    stat(path, &before);
    sr_dataset_conf dc = base_conf();
    dc.labels[0] = '\0';
    dc.size = 8;
    snprintf(dc.images, sizeof dc.images, "%s", path);
    sr_dataset *ds = open_ok(&dc);
    float img[64];
    CU_ASSERT_FATAL(sr_dataset_read(ds, 1, 1, img, err, sizeof err) == 0);
    CU_ASSERT_DOUBLE_EQUAL(img[0] * 255.0, 100.0, 1e-3);
    char stamp[17];
    snprintf(stamp, sizeof stamp, "%s", ds->stamp);
    sr_dataset_close(ds);
    usleep(20000); /* the change time moves on */
    memset(file + 16, 200, 2 * 64);
    gz = gzopen(path, "wb0");
    gzwrite(gz, file, sizeof file);
    gzclose(gz);
    utimensat(AT_FDCWD, path, second, 0);
    struct stat after;
    stat(path, &after);
    CU_ASSERT_EQUAL(after.st_size, before.st_size);
    CU_ASSERT_EQUAL(after.st_mtime, before.st_mtime);
    ds = open_ok(&dc);
    CU_ASSERT_STRING_NOT_EQUAL(ds->stamp, stamp);
    CU_ASSERT_FATAL(sr_dataset_read(ds, 1, 1, img, err, sizeof err) == 0);
    CU_ASSERT_DOUBLE_EQUAL(img[0] * 255.0, 200.0, 1e-3);
    sr_dataset_close(ds);
}

/* ---- pixel scaling ---------------------------------------------------------- */

/* Every byte value 0..255 as one 16x16 image, read as IDX, NetCDF uint8 and
 * an 8-bit grey PNG: bit for bit what docs/datasets.md says. IDX and NetCDF
 * multiply by the float nearest 1/255, which for 126 of the 256 values is
 * one ulp from v / 255 rounded (the division PNG samples get); phi's
 * digests depend on which. */
static void test_pixel_scaling(void)
{
    unsigned char bytes[256];
    for (int v = 0; v < 256; v++) bytes[v] = (unsigned char)v;
    float img[256];
    int product = 0, quotient = 0, differ = 0;
    for (int v = 0; v < 256; v++) differ += v * (1.0f / 255.0f) != (float)v / 255.0f;
    CU_ASSERT_EQUAL(differ, 126);

    char path[1024];
    snprintf(path, sizeof path, "%s/bytes.idx", dir);
    unsigned char idx[16 + 256] = {0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 16, 0, 0, 0, 16};
    memcpy(idx + 16, bytes, 256);
    write_file(path, idx, sizeof idx);
    sr_dataset_conf dc = base_conf();
    snprintf(dc.images, sizeof dc.images, "%s", path);
    dc.labels[0] = dc.classes[0] = '\0';
    dc.size = 16;
    sr_dataset *ds = open_ok(&dc);
    CU_ASSERT_FATAL(sr_dataset_read(ds, 0, 1, img, err, sizeof err) == 0);
    for (int v = 0; v < 256; v++) product += img[v] == v * (1.0f / 255.0f);
    CU_ASSERT_EQUAL(product, 256);
    sr_dataset_close(ds);

    snprintf(path, sizeof path, "%s/bytes.nc", dir);
    int ncid, dims[4], var;
    CU_ASSERT_FATAL(nc_create(path, NC_NETCDF4 | NC_CLOBBER, &ncid) == NC_NOERR);
    nc_def_dim(ncid, "image", 1, &dims[0]);
    nc_def_dim(ncid, "channel", 1, &dims[1]);
    nc_def_dim(ncid, "y", 16, &dims[2]);
    nc_def_dim(ncid, "x", 16, &dims[3]);
    nc_def_var(ncid, "pixels", NC_UBYTE, 4, dims, &var);
    nc_enddef(ncid);
    nc_put_var_uchar(ncid, var, bytes);
    nc_close(ncid);
    dc = base_conf();
    snprintf(dc.kind, sizeof dc.kind, "netcdf");
    snprintf(dc.file, sizeof dc.file, "%s", path);
    snprintf(dc.variable, sizeof dc.variable, "pixels");
    dc.label_variable[0] = dc.classes[0] = '\0';
    dc.size = 16;
    ds = open_ok(&dc);
    CU_ASSERT_FATAL(sr_dataset_read(ds, 0, 1, img, err, sizeof err) == 0);
    product = 0;
    for (int v = 0; v < 256; v++) product += img[v] == v * (1.0f / 255.0f);
    CU_ASSERT_EQUAL(product, 256);
    sr_dataset_close(ds);

    char root[512];
    snprintf(root, sizeof root, "%s/bytes-png", dir);
    CU_ASSERT_FATAL(mkdir(root, 0755) == 0);
    snprintf(path, sizeof path, "%s/all.png", root);
    float px[256];
    for (int v = 0; v < 256; v++) px[v] = (float)v / 255.0f; /* written back as byte v */
    CU_ASSERT_FATAL(sr_png_write(path, px, 1, 16, 16, err, sizeof err) == 0);
    dc = png_conf(root);
    dc.size = 16;
    dc.channels = 1;
    dc.classes[0] = '\0';
    ds = open_ok(&dc);
    CU_ASSERT_FATAL(sr_dataset_read(ds, 0, 1, img, err, sizeof err) == 0);
    for (int v = 0; v < 256; v++) quotient += img[v] == (float)v / 255.0f;
    CU_ASSERT_EQUAL(quotient, 256);
    sr_dataset_close(ds);
}

/* ---- sharding -------------------------------------------------------------- */

static void test_shards(void)
{
    const long counts[] = {1, 63, 64, 1000, 1001};
    for (size_t c = 0; c < sizeof counts / sizeof *counts; c++)
        for (int ranks = 1; ranks <= 7; ranks++) {
            long next = 0;
            for (int r = 0; r < ranks; r++) {
                long first, end;
                sr_shard(counts[c], 64, r, ranks, &first, &end);
                CU_ASSERT_EQUAL(first, next); /* contiguous, in order: each image once */
                CU_ASSERT(first % 64 == 0 || first == counts[c]);
                CU_ASSERT(end >= first);
                next = end;
            }
            CU_ASSERT_EQUAL(next, counts[c]);
        }
    enum { N = 5000 };
    static long a[N], b[N], again[N];
    sr_epoch_order(7, 0, N, a);
    sr_epoch_order(7, 1, N, b);
    sr_epoch_order(7, 0, N, again);
    static char seen[N];
    int moved = 0;
    for (long i = 0; i < N; i++) {
        CU_ASSERT(a[i] >= 0 && a[i] < N && !seen[a[i]]);
        seen[a[i]] = 1;
        moved += a[i] != b[i];
    }
    CU_ASSERT(!memcmp(a, again, sizeof a));
    CU_ASSERT(moved > N - 50);
}

/* Streaming 60,000 images needs no more memory than streaming 6,000. Each
 * count is streamed by a fresh process (this program again, with --stream),
 * which reports its own peak resident memory (VmHWM, which starts afresh at
 * exec), so nothing this suite loaded before counts: a loader that read the
 * whole split (47 MB of bytes, 245 MB of floats) would show it. */
static int stream_child(long limit, const char *work_dir)
{
    semrep_conf c;
    if (sr_conf_load(&c, NULL, 0, NULL, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
    sr_dataset_conf dc = c.dataset;
    sr_conf_free(&c);
    snprintf(dc.images, sizeof dc.images, FMNIST "train-images-idx3-ubyte.gz");
    snprintf(dc.labels, sizeof dc.labels, FMNIST "train-labels-idx1-ubyte.gz");
    dc.limit = limit;
    static float batch[100 * 1024];
    memset(batch, 0, sizeof batch); /* resident in every child alike */
    double total = 1;
    long count = 0;
    if (limit >= 0) { /* -1: the baseline, which opens nothing */
        sr_dataset *ds = NULL;
        if (sr_dataset_open(&ds, &dc, work_dir, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
        total = 0;
        for (long i = 0; i < ds->count; i += 100) {
            const long n = ds->count - i < 100 ? ds->count - i : 100;
            if (sr_dataset_read(ds, i, n, batch, err, sizeof err)) return fprintf(stderr, "%s\n", err), 1;
            total += batch[16 * 32 + 16];
        }
        count = ds->count;
        sr_dataset_close(ds);
    }
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long hwm = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmHWM: %ld kB", &hwm) == 1) break;
    if (f) fclose(f);
    printf("%ld %ld %g\n", count, hwm, total);
    return hwm < 0 || !(total > 0);
}

/* Runs `this --stream limit dir`; its images streamed and peak in KiB. */
static long stream_in_child(long limit, long *count)
{
    char exe[1024], arg[32];
    const ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    CU_ASSERT_FATAL(n > 0);
    exe[n] = '\0';
    snprintf(arg, sizeof arg, "%ld", limit);
    int fds[2];
    CU_ASSERT_FATAL(pipe(fds) == 0);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    char *argv[] = {exe, "--stream", arg, dir, NULL};
    pid_t pid;
    CU_ASSERT_FATAL(posix_spawn(&pid, exe, &fa, NULL, argv, environ) == 0);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    char out[256] = {0};
    size_t got = 0;
    ssize_t r;
    while (got < sizeof out - 1 && (r = read(fds[0], out + got, sizeof out - 1 - got)) > 0) got += (size_t)r;
    close(fds[0]);
    int status = 0;
    CU_ASSERT_FATAL(waitpid(pid, &status, 0) == pid);
    CU_ASSERT_FATAL(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    long hwm = -1;
    CU_ASSERT_FATAL(sscanf(out, "%ld %ld", count, &hwm) == 2);
    return hwm;
}

static void test_streaming_memory(void)
{
    /* the first child uncompresses the split into the cache, as a run's first open does */
    const long limits[3] = {6000, 0, -1};
    long rss[3], count[3];
    for (int t = 0; t < 3; t++) {
        rss[t] = stream_in_child(limits[t], &count[t]);
        if (limits[t] < 0) printf("\n    a fresh process that opened nothing: peak resident %ld KiB", rss[t]);
        else printf("\n    a fresh process streamed %ld images: peak resident %ld KiB", count[t], rss[t]);
    }
    CU_ASSERT_EQUAL(count[0], 6000);
    CU_ASSERT_EQUAL(count[1], 60000);
    /* The whole split is 47 MB as bytes, 245 MB as floats: streaming it may
     * cost no more than 4 MiB over the same program opening nothing (the
     * labels, 0.2 MiB as ints, are read whole), nor over 6,000 images. */
    CU_ASSERT(rss[2] > 0 && rss[1] - rss[2] < 4 * 1024);
    CU_ASSERT(rss[1] - rss[0] < 4 * 1024);
}

int main(int argc, char **argv)
{
    /* the child of test_streaming_memory: no MPI, no CUnit */
    if (argc == 4 && !strcmp(argv[1], "--stream")) return stream_child(atol(argv[2]), argv[3]);
    sr_comm_init(&comm, &argc, &argv);
    sr_test_temp_dir(dir);
    const sr_test tests[] = {
        {"Fashion-MNIST against Python's reading", test_fashion_mnist},
        {"selections: stride, limit, index file", test_selection},
        {"broken IDX files are refused by name", test_bad_idx},
        {"NetCDF arrays", test_netcdf},
        {"a PNG folder: classes, manifest, bad files", test_png_folder},
        {"PNG names with a tab or a line break", test_png_odd_names},
        {"a FIFO or device as an input file is refused at once", test_special_files},
        {"a gzip bomb stops at the size its header claims", test_gzip_bomb},
        {"a NetCDF file of 2^40 images is refused", test_netcdf_huge},
        {"a class-name line over 255 characters is refused", test_long_class_name},
        {"a file changed with its size and second kept is seen", test_stale_stamp},
        {"pixels scaled bit for bit as datasets.md says", test_pixel_scaling},
        {"shards and epoch orders", test_shards},
        {"streaming memory does not grow with the data set", test_streaming_memory},
        {NULL, NULL},
    };
    const int failed = sr_test_run("dataset", tests);
    sr_test_remove_tree(dir);
    sr_comm_finalize(&comm);
    return failed;
}
