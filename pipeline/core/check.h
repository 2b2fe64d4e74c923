/* Checks and fatal errors.
 *
 * Every call into a library or the allocator is checked; a failure prints one
 * line naming the source place, the call and what to do, then ends the run.
 * Under MPI the communicator layer installs an abort hook so that one rank's
 * error stops every rank instead of leaving them hung in a collective. */
#ifndef SEMREP_CORE_CHECK_H
#define SEMREP_CORE_CHECK_H

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

/* malloc that names what it was for and its size when it fails. */
void *sr_malloc_named(size_t bytes, const char *what, const char *file, int line);
#define SR_MALLOC(bytes, what) sr_malloc_named((bytes), (what), __FILE__, __LINE__)

#ifdef __cplusplus
}
#endif

#endif
