/* The conf reader: the input as a conf file. */
#include <stdint.h>

#include "fuzz_util.h"
#include "io/conf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[128], err[1024];
    sr_fuzz_file("run.conf", data, size, path, sizeof path);
    semrep_conf conf;
    if (!sr_conf_load(&conf, path, 0, NULL, err, sizeof err)) sr_conf_free(&conf);
    return 0;
}
