#define _GNU_SOURCE /* nftw */
#include "fuzz_util.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/check.h"
#include "io/dataset.h"

static char dir[64];

static void die_loudly(int status)
{
    (void)status;
    fprintf(stderr, "fuzz: a reader ended the process instead of returning an error\n");
    abort();
}

static int remove_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag;
    return ftw->level == 0 ? 0 : remove(path);
}

void sr_fuzz_clean(void)
{
    if (dir[0]) nftw(dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

static void remove_dir(void)
{
    sr_fuzz_clean();
    rmdir(dir);
}

const char *sr_fuzz_dir(void)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/semrep-fuzz-XXXXXX");
        if (!mkdtemp(dir)) {
            perror("fuzz: mkdtemp");
            abort();
        }
        atexit(remove_dir);
        sr_set_abort_hook(die_loudly);
    }
    return dir;
}

void sr_fuzz_file(const char *name, const uint8_t *data, size_t size, char *path, size_t len)
{
    snprintf(path, len, "%s/%s", sr_fuzz_dir(), name);
    const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || (size && write(fd, data, size) != (ssize_t)size) || close(fd)) {
        perror(path);
        abort();
    }
}

const semrep_conf *sr_fuzz_defaults(void)
{
    static semrep_conf conf;
    static int loaded;
    char err[512];
    if (!loaded && sr_conf_load(&conf, NULL, 0, NULL, err, sizeof err)) {
        fprintf(stderr, "fuzz: the default conf does not load: %s\n", err);
        abort();
    }
    loaded = 1;
    return &conf;
}

void sr_fuzz_dataset(const sr_dataset_conf *c, size_t floats)
{
    sr_dataset *ds;
    char err[1024];
    if (sr_dataset_open(&ds, c, sr_fuzz_dir(), err, sizeof err)) return;
    float *images = malloc(sizeof(float) * floats);
    if (!images) abort();
    const long positions[2] = {0, ds->count - 1};
    sr_dataset_read_list(ds, positions, 2, images, err, sizeof err);
    for (long i = 0; i < ds->count; i++) {
        const int label = sr_dataset_label(ds, i);
        if (label < -1 || label >= ds->nclasses) abort(); /* a label with no class name */
    }
    free(images);
    sr_dataset_close(ds);
}
