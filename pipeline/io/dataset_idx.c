/* IDX files (the MNIST family): big-endian headers, images of uint8, gzipped
 * or not. A gzipped image file is uncompressed once into the run's cache
 * folder, so that any image can be read at any time with one pread and
 * memory does not grow with the data set. Labels are small and read whole. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>
#include <zlib.h>

#include "core/check.h"
#include "io/dataset.h"
#include "io/files.h"
#include "io/image_ops.h"
#include "io/nc.h"

#define IDX_IMAGES 0x00000803u
#define IDX_LABELS 0x00000801u

typedef struct {
    int fd;
    int rows, cols;
    unsigned char *raw;  /* one image's bytes */
    float *plane, *fit;  /* one image as floats, then padded or cropped */
} idx_impl;

static uint32_t big_endian(const unsigned char *b)
{
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

static int is_gzip(const char *path, const char *what, bool *gzip, char *err, size_t errlen)
{
    unsigned char head[2] = {0};
    const int fd = sr_open_regular(path, what, err, errlen);
    if (fd < 0) return -1;
    const ssize_t n = read(fd, head, 2);
    close(fd);
    *gzip = n == 2 && head[0] == 0x1f && head[1] == 0x8b;
    return 0;
}

/* The bytes an IDX file's header says it holds (magic, sizes, then the
 * product of the sizes in bytes of its type); 0 while the header is not yet
 * all in `have` bytes; -1 when head is no IDX header. It bounds the
 * uncompressing of a gzip stream, which could otherwise fill the disk. */
static long long idx_claimed_bytes(const unsigned char *head, size_t have)
{
    if (have < 4) return 0;
    if (head[0] || head[1] || head[2] != 0x08 || head[3] < 1 || head[3] > 4) return -1;
    const size_t dims = head[3];
    if (have < 4 + 4 * dims) return 0;
    long long bytes = 1;
    for (size_t d = 0; d < dims; d++)
        if (__builtin_mul_overflow(bytes, (long long)big_endian(head + 4 + 4 * d), &bytes)) return LLONG_MAX;
    return bytes > LLONG_MAX - 20 ? LLONG_MAX : bytes + 4 + 4 * (long long)dims;
}

/* Reads all of a (possibly gzipped) IDX stream into `out` or to `to_fd`,
 * no further than its header claims; zlib reads plain files too. */
static int gunzip(const char *path, const char *what, int to_fd, unsigned char **out, size_t *len, char *err,
                  size_t errlen)
{
    const int fd = sr_open_regular(path, what, err, errlen);
    if (fd < 0) return -1;
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        SR_BAD("cannot read %s: %s; check the path", path, strerror(errno));
    }
    size_t cap = 1 << 16, used = 0;
    unsigned char *buf = sr_try_realloc(NULL, cap, 1, path, NULL, 0), head[20];
    long long total = 0, claimed = 0;
    int n;
    while (buf && (n = gzread(gz, buf + (to_fd >= 0 ? 0 : used), (unsigned)(to_fd >= 0 ? cap : cap - used))) > 0) {
        const unsigned char *got = buf + (to_fd >= 0 ? 0 : used);
        const size_t kept = (size_t)total < sizeof head ? (size_t)total : sizeof head; /* header bytes so far */
        memcpy(head + kept, got, (size_t)n < sizeof head - kept ? (size_t)n : sizeof head - kept);
        total += n;
        if (claimed == 0) claimed = idx_claimed_bytes(head, (size_t)total < sizeof head ? (size_t)total : sizeof head);
        if (claimed < 0 || (claimed > 0 && total > claimed)) {
            free(buf);
            gzclose(gz);
            if (claimed < 0) SR_BAD("%s (%s) is not an IDX file (no IDX header of unsigned bytes)", path, what);
            SR_BAD("%s (%s) uncompresses to more than the %lld bytes its IDX header claims; the file is damaged", path,
                   what, claimed);
        }
        if (to_fd >= 0) {
            const ssize_t wrote = write(to_fd, buf, (size_t)n);
            if (wrote != n) {
                if (wrote >= 0) errno = ENOSPC; /* a short write: no room for the rest */
                free(buf);
                gzclose(gz);
                SR_BAD("cannot write the uncompressed copy of %s: %s; check the disk", path, strerror(errno));
            }
            continue;
        }
        used += (size_t)n;
        if (used == cap) {
            unsigned char *grown = sr_try_realloc(buf, cap *= 2, 1, path, NULL, 0);
            if (!grown) free(buf);
            buf = grown;
        }
    }
    int code;
    char why[128]; /* gzclose frees gzerror's text */
    snprintf(why, sizeof why, "%s", gzerror(gz, &code));
    /* gzread's end on a truncated stream is only seen in gzclose's status */
    const int closed = gzclose(gz);
    if (!buf) SR_BAD("out of memory reading %s", path);
    if (code != Z_OK || closed != Z_OK) {
        free(buf);
        /* zlib's text starts with the stream's name, "<fd:N>: " */
        const char *reason = why[0] == '<' && strstr(why, ">: ") ? strstr(why, ">: ") + 3 : why;
        SR_BAD("%s: corrupt or truncated gzip stream (%s); get a fresh copy", path,
               code != Z_OK ? reason : "unexpected end of file");
    }
    if (out) {
        *out = buf;
        *len = used;
    } else {
        free(buf);
    }
    return 0;
}

/* The uncompressed image file: the file itself, or its copy in the cache
 * folder, named by a hash of the source's identity (sr_file_id) so a changed
 * file is redone. */
static int uncompressed_path(const char *path, const char *work_dir, char *out, size_t len, char *err, size_t errlen)
{
    bool gzip;
    if (is_gzip(path, "dataset.images", &gzip, err, errlen)) return -1;
    if (!gzip) return snprintf(out, len, "%s", path), 0;
    sr_file_id id;
    if (sr_file_stamp(path, &id)) SR_BAD("cannot read %s: %s; check the path", path, strerror(errno));
    char dir[SR_PATH_MAX + 16];
    snprintf(dir, sizeof dir, "%s/cache", work_dir);
    if (sr_make_dirs(dir, err, errlen)) return -1;
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    snprintf(out, len, "%s/%.*s.%016llx", dir, (int)(strlen(base) > 3 && !strcmp(base + strlen(base) - 3, ".gz")
                                                          ? strlen(base) - 3 : strlen(base)), base,
             (unsigned long long)XXH3_64bits(&id, sizeof id));
    if (access(out, R_OK) == 0) return 0;
    char tmp[SR_PATH_MAX + 64];
    sr_tmp_path(out, tmp, sizeof tmp);
    const int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    char why[SR_PATH_MAX + 128];
    if (fd < 0) {
        sr_write_reason(errno, tmp, "check the output folder", why, sizeof why);
        sr_temp_forget(tmp);
        SR_BAD("cannot write %s: %s", tmp, why);
    }
    int rc = gunzip(path, "dataset.images", fd, NULL, NULL, err, errlen);
    if (rc && sr_disk_full(errno)) rc = sr_report(err, errlen, "cannot write %s: %s", tmp, sr_write_reason(errno, tmp, NULL, why, sizeof why));
    close(fd);
    if (rc) return sr_temp_remove(tmp), -1;
    sr_commit_file(tmp, out);
    return 0;
}

static int read_labels(sr_dataset *ds, const char *path, long count, char *err, size_t errlen)
{
    unsigned char *buf;
    size_t len;
    if (gunzip(path, "dataset.labels", -1, &buf, &len, err, errlen)) return -1;
    int rc = 0;
    if (len < 8 || big_endian(buf) != IDX_LABELS)
        rc = sr_report(err, errlen, "%s is not an IDX label file (magic number 0x%08x, want 0x%08x)", path,
                      len < 4 ? 0 : big_endian(buf), IDX_LABELS);
    else if ((long)big_endian(buf + 4) != count)
        rc = sr_report(err, errlen, "%s holds %u labels for %ld images", path, big_endian(buf + 4), count);
    else if (len < 8 + (size_t)count)
        rc = sr_report(err, errlen, "%s claims %ld labels but holds only %zu", path, count, len - 8);
    if (!rc) {
        ds->labels = SR_MALLOC(sizeof(int) * (size_t)count, "the labels");
        for (long i = 0; i < count; i++) {
            ds->labels[i] = buf[8 + i];
            if (ds->labels[i] + 1 > ds->nclasses) ds->nclasses = ds->labels[i] + 1;
        }
        ds->class_names = SR_CALLOC((size_t)ds->nclasses, SR_CLASS_NAME_MAX, "the class names");
        for (int c = 0; c < ds->nclasses; c++) snprintf(ds->class_names[c], SR_CLASS_NAME_MAX, "%d", c);
    }
    free(buf);
    return rc;
}

static int idx_read(sr_dataset *ds, const long *index, long count, float *images, char *err, size_t errlen)
{
    idx_impl *im = ds->impl;
    const size_t pixels = (size_t)im->rows * im->cols, out = (size_t)ds->channels * ds->size * ds->size;
    for (long k = 0; k < count; k++) {
        const off_t at = 16 + (off_t)index[k] * (off_t)pixels;
        if (pread(im->fd, im->raw, pixels, at) != (ssize_t)pixels)
            SR_BAD("%s: cannot read image %ld: %s", ds->conf.images, index[k], strerror(errno));
        for (size_t p = 0; p < pixels; p++) im->plane[p] = im->raw[p] * (1.0f / 255.0f);
        sr_image_pad_or_crop(im->plane, 1, im->rows, im->cols, ds->size, im->fit);
        sr_image_channels(im->fit, 1, ds->size * ds->size, ds->channels, images + (size_t)k * out);
    }
    return 0;
}

static void idx_name(const sr_dataset *ds, long index, char *out, size_t len)
{
    snprintf(out, len, "%s:%ld", ds->conf.images, index);
}

static void idx_close(sr_dataset *ds)
{
    idx_impl *im = ds->impl;
    if (!im) return;
    if (im->fd >= 0) close(im->fd);
    free(im->raw);
    free(im->plane);
    free(im->fit);
    free(im);
}

static const sr_dataset_source idx_source = {.read = idx_read, .name = idx_name, .close = idx_close};

int sr_dataset_open_idx(sr_dataset *ds, const char *work_dir, char *err, size_t errlen)
{
    const sr_dataset_conf *c = &ds->conf;
    idx_impl *im = sr_try_calloc(1, sizeof *im, c->images, NULL, 0);
    if (!im) SR_BAD("out of memory opening %s", c->images);
    im->fd = -1;
    ds->source = &idx_source;
    ds->impl = im;
    char plain[SR_PATH_MAX + 128];
    if (access(c->images, R_OK) != 0) SR_BAD("cannot read %s (dataset.images): %s", c->images, strerror(errno));
    if (uncompressed_path(c->images, work_dir, plain, sizeof plain, err, errlen)) return -1;
    im->fd = sr_open_regular(plain, "dataset.images", err, errlen);
    if (im->fd < 0) return -1;
    unsigned char head[16];
    if (pread(im->fd, head, 16, 0) != 16 || big_endian(head) != IDX_IMAGES)
        SR_BAD("%s is not an IDX image file (magic number 0x%08x, want 0x%08x)", c->images, big_endian(head), IDX_IMAGES);
    const long count = big_endian(head + 4);
    if (count > SR_MAX_IMAGES)
        SR_BAD("%s claims %ld images; semrep reads at most %ld from one file: split it", c->images, count, SR_MAX_IMAGES);
    im->rows = (int)big_endian(head + 8);
    im->cols = (int)big_endian(head + 12);
    if (im->rows < 1 || im->cols < 1 || (long)im->rows * im->cols > c->max_pixels)
        SR_BAD("%s: images of %dx%d are empty or exceed dataset.max_pixels = %ld", c->images, im->rows, im->cols,
            c->max_pixels);
    const off_t need = 16 + (off_t)count * im->rows * im->cols, have = lseek(im->fd, 0, SEEK_END);
    if (have < need)
        SR_BAD("%s claims %ld images of %dx%d (%lld bytes) but holds %lld bytes; the file is truncated", c->images, count,
            im->rows, im->cols, (long long)need, (long long)have);
    const size_t pixels = (size_t)im->rows * im->cols, fit = (size_t)ds->conf.size * ds->conf.size;
    im->raw = SR_MALLOC(pixels, "an IDX image");
    im->plane = SR_MALLOC(sizeof(float) * pixels, "an IDX image");
    im->fit = SR_MALLOC(sizeof(float) * fit, "an IDX image");
    ds->source_count = count;
    ds->channels = c->channels;
    ds->size = c->size;
    snprintf(ds->description, sizeof ds->description, "IDX %s (%ld images of %dx%d)", c->images, count, im->rows,
             im->cols);
    if (c->labels[0] && read_labels(ds, c->labels, count, err, errlen)) return -1;
    const char *files[2] = {c->images, c->labels};
    sr_dataset_stamp_files(ds, files, c->labels[0] ? 2 : 1);
    return 0;
}
