#define _GNU_SOURCE /* struct dirent64 */
#include "core/check.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static void (*abort_hook)(int status);

void sr_set_abort_hook(void (*hook)(int status)) { abort_hook = hook; }

/* The registry is a fixed table, not a list, so that the signal handler
 * reads it without locks or the allocator: a slot's path is written before
 * it is marked used. A run holds a few temporaries at once (a report folder
 * and a file inside it). */
enum { TEMP_SLOTS = 32, TEMP_PATH = 4352 };
static struct {
    volatile sig_atomic_t used;
    char path[TEMP_PATH];
} temps[TEMP_SLOTS];

/* rm -rf of name in the folder dirfd, with only async-signal-safe calls
 * (the signal handler uses it too): unlinkat, openat, getdents64. Removing
 * an entry while reading a folder leaves the others to be read (POSIX). */
static int remove_at(int dirfd, const char *name, int depth)
{
    if (unlinkat(dirfd, name, 0) == 0 || errno == ENOENT) return 0;
    if ((errno != EISDIR && errno != EPERM) || depth == 0) return -1;
    const int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -1;
    char buf[4096] __attribute__((aligned(8)));
    long n;
    while ((n = syscall(SYS_getdents64, fd, buf, sizeof buf)) > 0)
        for (long at = 0; at < n;) {
            const struct dirent64 *e = (const struct dirent64 *)(buf + at);
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) remove_at(fd, e->d_name, depth - 1);
            at += e->d_reclen;
        }
    close(fd);
    return unlinkat(dirfd, name, AT_REMOVEDIR) == 0 || errno == ENOENT ? 0 : -1;
}

int sr_remove_path(const char *path) { return remove_at(AT_FDCWD, path, 64); }

static void remove_all_temps(void)
{
    for (int i = 0; i < TEMP_SLOTS; i++)
        if (temps[i].used) {
            sr_remove_path(temps[i].path);
            temps[i].used = 0;
        }
}

static void on_signal(int sig)
{
    remove_all_temps(); /* async-signal-safe: the table, remove_at */
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Once, at the first registration: exit and the usual stop signals remove
 * what is left (a handler another part installed is kept). */
static void install_cleanup(void)
{
    static bool installed;
    if (installed) return;
    installed = true;
    atexit(remove_all_temps);
    const int sigs[] = {SIGTERM, SIGINT};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction old;
        if (sigaction(sigs[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL) signal(sigs[i], on_signal);
    }
}

static int temp_slot(const char *path)
{
    for (int i = 0; i < TEMP_SLOTS; i++)
        if (temps[i].used && !strcmp(temps[i].path, path)) return i;
    return -1;
}

void sr_temp_add(const char *path)
{
    SR_CHECK(strlen(path) < TEMP_PATH, "path too long for a temporary file: %s", path);
    if (temp_slot(path) >= 0) return;
    install_cleanup();
    for (int i = 0; i < TEMP_SLOTS; i++)
        if (!temps[i].used) {
            strcpy(temps[i].path, path);
            atomic_signal_fence(memory_order_seq_cst); /* the path is whole before the handler may read it */
            temps[i].used = 1;
            return;
        }
    SR_FAIL("more than %d temporary files at once (registering %s); this is a bug in semrep: please report it",
            TEMP_SLOTS, path);
}

void sr_temp_forget(const char *path)
{
    const int i = temp_slot(path);
    if (i >= 0) temps[i].used = 0;
}

void sr_temp_remove(const char *path)
{
    sr_remove_path(path);
    sr_temp_forget(path);
}

_Noreturn void sr_die(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("semrep: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (%s:%d)\n", file, line);
    va_end(ap);
    fflush(stderr);
    remove_all_temps(); /* before the hook: MPI_Abort does not return */
    if (abort_hook) abort_hook(1);
    /* not exit(): HDF5's exit handler flushes the files still open, and on
     * a full disk that crashes (the files are temporaries, removed above) */
    fflush(NULL);
    _exit(1);
}

_Noreturn void sr_die_write(int errnum, const char *path, const char *file, int line)
{
    char why[4400];
    sr_die(file, line, "cannot write %s: %s", path, sr_write_reason(errnum, path, "check the output folder", why, sizeof why));
}

int sr_disk_full(int errnum) { return errnum == ENOSPC || errnum == EDQUOT; }

const char *sr_write_reason(int errnum, const char *path, const char *hint, char *out, size_t len)
{
    if (sr_disk_full(errnum)) {
        const char *slash = strrchr(path, '/');
        const int folder = slash == path ? 1 : slash ? (int)(slash - path) : 1;
        snprintf(out, len, "the disk is full (%.*s): free space or choose another output_dir", folder,
                 slash ? path : ".");
    } else {
        snprintf(out, len, "%s%s%s", strerror(errnum), hint ? "; " : "", hint ? hint : "");
    }
    return out;
}

void *sr_malloc_named(size_t bytes, const char *what, const char *file, int line)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        sr_die(file, line, "out of memory allocating %zu bytes for %s; lower the batch size or use a node with more memory",
               bytes, what);
    return p;
}

/* count * size, or SIZE_MAX when it overflows (no allocation succeeds). */
static size_t product(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size) return SIZE_MAX;
    const size_t bytes = count * size;
    return bytes ? bytes : 1;
}

#define OUT_OF_MEMORY "out of memory allocating %zu x %zu bytes for %s"

void *sr_calloc_named(size_t count, size_t size, const char *what, const char *file, int line)
{
    void *p = product(count, size) == SIZE_MAX ? NULL : calloc(product(count, size), 1);
    if (!p) sr_die(file, line, OUT_OF_MEMORY "; lower the batch size or use a node with more memory", count, size, what);
    return p;
}

void *sr_realloc_named(void *p, size_t count, size_t size, const char *what, const char *file, int line)
{
    void *grown = product(count, size) == SIZE_MAX ? NULL : realloc(p, product(count, size));
    if (!grown) sr_die(file, line, OUT_OF_MEMORY "; lower the batch size or use a node with more memory", count, size, what);
    return grown;
}

char *sr_strdup_named(const char *s, const char *what, const char *file, int line)
{
    const size_t len = strlen(s) + 1;
    return memcpy(sr_malloc_named(len, what, file, line), s, len);
}

void *sr_try_calloc(size_t count, size_t size, const char *what, char *err, size_t errlen)
{
    void *p = product(count, size) == SIZE_MAX ? NULL : calloc(product(count, size), 1);
    if (!p) sr_report(err, errlen, OUT_OF_MEMORY, count, size, what);
    return p;
}

void *sr_try_realloc(void *p, size_t count, size_t size, const char *what, char *err, size_t errlen)
{
    void *grown = product(count, size) == SIZE_MAX ? NULL : realloc(p, product(count, size));
    if (!grown) sr_report(err, errlen, OUT_OF_MEMORY, count, size, what);
    return grown;
}

int sr_report(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}
