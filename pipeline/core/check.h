/* Checks and fatal errors.
 *
 * Every call into a library or the allocator is checked; a failure prints one
 * line naming the source place, the call and what to do, then ends the run.
 * Under MPI the communicator layer installs an abort hook so that one rank's
 * error stops every rank instead of leaving them hung in a collective. */
#ifndef SEMREP_CORE_CHECK_H
#define SEMREP_CORE_CHECK_H

#include <errno.h>
#include <stddef.h>

#ifdef __cplusplus /* the CUDA backend includes this from C++ */
#define SR_NORETURN [[noreturn]]
extern "C" {
#else
#define SR_NORETURN _Noreturn
#endif

/* Prints "semrep: error: <message> (file:line)" to stderr and ends the run. */
SR_NORETURN void sr_die(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Replaces exit(1) after an error, e.g. with MPI_Abort. */
void sr_set_abort_hook(void (*hook)(int status));

/* Temporary files and folders, registered where their name is made and
 * forgotten when committed by rename, so that no failure leaves one behind:
 * sr_die (before the abort hook), exit, SIGTERM (MPI_Abort of another rank,
 * a SLURM time limit) and SIGINT remove what is still registered. Called
 * from the main thread; a path registered twice is held once. */
void sr_temp_add(const char *path);
void sr_temp_forget(const char *path);
/* Removes path (a file or a whole folder) now and forgets it. */
void sr_temp_remove(const char *path);
/* rm -rf; 0, or -1 when something could not be removed. */
int sr_remove_path(const char *path);

/* ENOSPC or EDQUOT: the disk, or the user's quota on it, is full. */
int sr_disk_full(int errnum);
/* Why a write to path failed, for "cannot write PATH: <reason>": on a full
 * disk "the disk is full (FOLDER): free space or choose another output_dir",
 * FOLDER being path's folder; otherwise strerror(errnum), then "; " and hint
 * when hint is not NULL. Into out (len bytes); returns out. */
const char *sr_write_reason(int errnum, const char *path, const char *hint, char *out, size_t len);

/* A write, close, rename or mkdir of path that failed with errnum: dies with
 * "cannot write PATH: " and sr_write_reason. SR_CHECK_WRITE checks one. */
SR_NORETURN void sr_die_write(int errnum, const char *path, const char *file, int line);
#define SR_CHECK_WRITE(cond, path)                                                                                     \
    do {                                                                                                               \
        if (!(cond)) sr_die_write(errno, (path), __FILE__, __LINE__);                                                 \
    } while (0)

#define SR_FAIL(...) sr_die(__FILE__, __LINE__, __VA_ARGS__)
#define SR_CHECK(cond, ...)                                                    \
    do {                                                                       \
        if (!(cond)) sr_die(__FILE__, __LINE__, __VA_ARGS__);                  \
    } while (0)

/* For functions that report a problem instead of ending the run (loaders of
 * user input): writes the one-line message into err (errlen bytes) and
 * returns -1. SR_BAD returns it from a function whose buffer is err, errlen. */
int sr_report(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
#define SR_BAD(...) return sr_report(err, errlen, __VA_ARGS__)

/* malloc, calloc, realloc and strdup that name what they were for and the
 * size when they fail, and end the run through sr_die (the abort hook, the
 * temporary files removed). count * size is checked for overflow; a size of
 * 0 allocates 1 byte, so NULL is never returned. SR_REALLOC, like realloc,
 * keeps the old block's contents. Outside core/ these are the only
 * allocators (tests/lint/raw_alloc.sh), beside sr_try_calloc and
 * sr_try_realloc below. */
void *sr_malloc_named(size_t bytes, const char *what, const char *file, int line);
void *sr_calloc_named(size_t count, size_t size, const char *what, const char *file, int line);
void *sr_realloc_named(void *p, size_t count, size_t size, const char *what, const char *file, int line);
char *sr_strdup_named(const char *s, const char *what, const char *file, int line);
#define SR_MALLOC(bytes, what) sr_malloc_named((bytes), (what), __FILE__, __LINE__)
#define SR_CALLOC(count, size, what) sr_calloc_named((count), (size), (what), __FILE__, __LINE__)
#define SR_REALLOC(p, count, size, what) sr_realloc_named((p), (count), (size), (what), __FILE__, __LINE__)
#define SR_STRDUP(s, what) sr_strdup_named((s), (what), __FILE__, __LINE__)

/* The same for loaders of user input, which return their message instead
 * of ending the run (a file may claim sizes no machine holds): zeroed
 * count * size bytes, or realloc of p to them (p kept on failure, as
 * realloc does); NULL after writing "out of memory allocating N bytes for
 * WHAT" into err (errlen bytes; NULL and 0 for a caller that writes its
 * own) when the allocation or count * size fails. sr_try_realloc(NULL, ...)
 * is malloc: the bytes are not zeroed. */
void *sr_try_calloc(size_t count, size_t size, const char *what, char *err, size_t errlen);
void *sr_try_realloc(void *p, size_t count, size_t size, const char *what, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif

#endif
