#include "core/backend.h"

#include <stdio.h>
#include <string.h>

#ifndef SEMREP_WITH_CUDA
/* Built without the CUDA toolkit: no GPU is ever seen. */
int sr_backend_cuda_devices(char *err, size_t errlen)
{
    snprintf(err, errlen, "this semrep was built without the CUDA toolkit");
    return 0;
}

sr_backend *sr_backend_cuda_new(int device, const char *gpu_math, char *err, size_t errlen)
{
    snprintf(err, errlen, "backend = \"cuda\": this semrep was built without the CUDA toolkit; "
                          "rebuild where nvcc is found, or use \"auto\" or \"cpu\"");
    return NULL;
}
#endif

static bool known_math(const char *math)
{
    return !strcmp(math, "fp32") || !strcmp(math, "tf32") || !strcmp(math, "bf16");
}

sr_backend *sr_backend_select(const sr_backend_request *req, char *err, size_t errlen)
{
    const char *math = req->gpu_math && *req->gpu_math ? req->gpu_math : "fp32";
    if (!known_math(math)) {
        snprintf(err, errlen, "gpu_math = \"%s\" is not one of fp32, tf32, bf16", math);
        return NULL;
    }
    const bool gpu = !strcmp(req->name, "cuda"), any = !strcmp(req->name, "auto");
    if (!gpu && !any && strcmp(req->name, "cpu")) {
        snprintf(err, errlen, "backend = \"%s\" is not one of auto, cpu, cuda", req->name);
        return NULL;
    }
    /* "auto": the GPU when this process sees one; a broken driver is an error */
    const int devices = any ? sr_backend_cuda_devices(err, errlen) : 0;
    if (devices < 0) return NULL;
    if (gpu || devices > 0) return sr_backend_cuda_new(req->device, math, err, errlen);
    return sr_backend_cpu_new(req->threads);
}

void sr_backend_free(sr_backend *be)
{
    if (be) be->ops->destroy(be);
}
