#include "core/backend.h"

#include <stdio.h>
#include <string.h>

const sr_backend *sr_backend_select(const char *name, int threads, char *err, size_t errlen)
{
    /* "auto" means a GPU when one is visible; this build has no CUDA backend yet. */
    if (!strcmp(name, "auto") || !strcmp(name, "cpu")) return sr_backend_cpu(threads);
    if (!strcmp(name, "cuda"))
        snprintf(err, errlen, "backend = \"cuda\": this semrep was built without the CUDA backend; use \"auto\" or \"cpu\"");
    else
        snprintf(err, errlen, "backend = \"%s\" is not one of auto, cpu, cuda", name);
    return NULL;
}
