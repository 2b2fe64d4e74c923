#include "core/check.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static void (*abort_hook)(int status);

void sr_set_abort_hook(void (*hook)(int status)) { abort_hook = hook; }

_Noreturn void sr_die(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("semrep: error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (%s:%d)\n", file, line);
    va_end(ap);
    fflush(stderr);
    if (abort_hook) abort_hook(1);
    exit(1);
}

void *sr_malloc_named(size_t bytes, const char *what, const char *file, int line)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        sr_die(file, line, "out of memory allocating %zu bytes for %s; lower the batch size or use a node with more memory",
               bytes, what);
    return p;
}

int sr_report(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}
