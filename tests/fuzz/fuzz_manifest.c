/* The manifest of a PNG folder, as a data set opens it: entries, classes
 * and verdicts read back; every image's label must name a class. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "io/dataset.h"
#include "io/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sr_dataset_conf c = sr_fuzz_defaults()->dataset;
    snprintf(c.kind, sizeof c.kind, "png");
    snprintf(c.path, sizeof c.path, "%s/pngs", sr_fuzz_dir());
    snprintf(c.on_bad_image, sizeof c.on_bad_image, "skip");
    c.max_bad_share = 1.0;
    char path[SR_PATH_MAX * 2], err[2048];
    sr_manifest_path(sr_fuzz_dir(), c.path, path, sizeof path);
    const char *name = strrchr(path, '/') + 1;
    sr_fuzz_file(name, data, size, path, sizeof path);
    sr_dataset *ds;
    if (!sr_dataset_open(&ds, &c, sr_fuzz_dir(), err, sizeof err)) {
        for (long i = 0; i < ds->count; i++) {
            char image[SR_PATH_MAX];
            sr_dataset_name(ds, i, image, sizeof image);
            sr_dataset_noise_key(ds, i);
            const int label = sr_dataset_label(ds, i);
            if (label < -1 || label >= ds->nclasses) abort(); /* a label with no class name */
        }
        sr_dataset_close(ds);
    }
    return 0;
}
